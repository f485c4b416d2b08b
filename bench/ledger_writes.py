"""What apply's ledger writes cost per record: create intents, then the confirmed records,
in batches of 3,000 (apply's FLUSH_RECORDS), into a fresh state of each backend.

    .venv/bin/python bench/ledger_writes.py                         # local, 100,000 records
    .venv/bin/python bench/ledger_writes.py --backend postgres --records 60000
    .venv/bin/python bench/ledger_writes.py --backend duckdb --records 20000

Records have 7 field hashes, half of them a group, and a record hash, as a first apply
writes them. postgres: the state in a throwaway server's database (tests/pg.py, initdb and
pg_ctl). To compare two commits, run each with its checkout first on PYTHONPATH. Prints
seconds and microseconds per record; checks that the state holds every record.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# appended: a checkout first on PYTHONPATH provides brazecfg (the tests' helpers come from here)
sys.path.append(str(Path(__file__).resolve().parent.parent))

from brazecfg.state.base import LedgerRecord  # noqa: E402
from brazecfg.state.ledger import Ledger  # noqa: E402
from tests.state.backends import backend  # noqa: E402

BATCH = 3000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--backend", choices=("local", "duckdb", "postgres"), default="local")
    args = ap.parse_args()
    n = args.records
    records = [LedgerRecord(str(i), {f"f{j}": f"{i * 7 + j:016x}" for j in range(7)},
                            frozenset({"vip"} if i % 2 else ()), os.urandom(8))
               for i in range(n)]
    root = Path(tempfile.mkdtemp(prefix="brazecfg-ledger-bench-"))
    server = None
    try:
        kind = {"local": "local", "duckdb": "warehouse-duckdb",
                "postgres": "warehouse-postgres"}[args.backend]
        url = None
        if args.backend == "postgres":
            from tests.pg import start_postgres

            server = start_postgres()
            url = server.url
        with Ledger(backend=backend(kind, root, url), writable=True) as led:
            t0 = time.perf_counter()
            for i in range(0, n, BATCH):
                led.add_intents("d", [r.external_id for r in records[i:i + BATCH]])
                led.commit("d", upserts=records[i:i + BATCH])
            seconds = time.perf_counter() - t0
            held = led.count("d")
        import brazecfg

        print(f"{args.backend}: {n:,} records in {seconds:.2f} s, "
              f"{seconds / n * 1e6:.0f} us a record (brazecfg from {Path(brazecfg.__file__).parent})")
        if held != n:
            print(f"FAIL: the state holds {held:,} records, not {n:,}")
            sys.exit(1)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
