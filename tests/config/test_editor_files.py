"""Editor support leftovers (issue 11, item 3): the example project and every `brazecfg init`
project carry a yaml-language-server modeline pointing at a schema file that sits in the
project (it resolves offline), and the committed schema files are exactly what
`brazecfg schema` prints, so they cannot go stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import EXAMPLE, cli

MODELINE = "# yaml-language-server: $schema="


def _modeline_target(path: Path) -> Path:
    first = path.read_text().splitlines()[0]
    assert first.startswith(MODELINE), f"{path}: no modeline on its first line"
    return (path.parent / first[len(MODELINE):]).resolve()


@pytest.mark.parametrize(("committed", "args"), [
    (".brazecfg.schema.json", ()), (".brazecfg.project.schema.json", ("project",))])
def test_committed_schemas_are_what_brazecfg_schema_prints(committed: str,
                                                           args: tuple[str, ...]) -> None:
    run = cli("schema", *args)
    assert run.exit_code == 0, run.stderr
    assert (EXAMPLE / committed).read_text() == run.stdout, \
        f"stale: run `brazecfg schema {' '.join(args)} > examples/project/{committed}`"


def _check_modelines(project: Path) -> None:
    files = sorted(p for p in project.rglob("*.yml") if ".brazecfg" not in p.parts)
    assert files
    for path in files:
        want = ".brazecfg.project.schema.json" if path.name == "brazecfg.yml" \
            else ".brazecfg.schema.json"
        assert _modeline_target(path) == (project / want).resolve(), path
        assert (project / want).is_file()


def test_every_example_file_has_a_modeline_that_resolves_in_the_project() -> None:
    _check_modelines(EXAMPLE)


@pytest.mark.parametrize("template", ["sqlite", "duckdb", "postgres"])
def test_init_writes_modelines_their_schemas_and_formatted_files(template: str,
                                                                 tmp_path: Path) -> None:
    project = tmp_path / "crm"
    assert cli("init", str(project), "-t", template).exit_code == 0
    _check_modelines(project)
    assert (project / ".brazecfg.schema.json").read_text() == cli("schema").stdout
    checked = cli("fmt", str(project), "--check")
    assert checked.exit_code == 0, checked.stdout + checked.stderr
    assert cli("validate", str(project)).exit_code == 0
