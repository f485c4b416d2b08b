from brazecfg.cli.main import main

main()
