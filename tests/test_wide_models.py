"""A model of many properties: its record hash is one function call in the warehouse, and a
call takes at most 127 arguments on SQLite and 100 on PostgreSQL. A destination that
compares value hashes (no ``updated_at``) over 130 properties failed its first plan and
apply on SQLite and PostgreSQL ("too many arguments on function"); now the hash is computed
in parts past those limits. Each warehouse (DuckDB, which has no such limit, too) applies
such a model, says "No changes" after, and plans the one change a user then gets."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from tests.helpers import NOW, cli, copy_example, sql
from tests.test_warehouses_agree import on_postgres, portable_sql, use_warehouse

WIDE = 130  # past SQLite's 127 arguments a call, and PostgreSQL's 100 (2 per value there)


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(port=0)) as emu:
        monkeypatch.setenv("BRAZE_REST_ENDPOINT", emu.url)
        monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
        yield emu


def _wide(project: Path) -> None:
    """No updated_at (so plans compare hashes of the values), and WIDE more properties."""
    sources = project / "sources" / "users.yml"
    sources.write_text("\n".join(line for line in sources.read_text().splitlines()
                                 if not line.startswith("updated_at:")) + "\n")
    (project / "properties" / "wide.yml").write_text("---\n".join(
        f"kind: property\nname: wide_{i}\nsource: users_table\ntype: string\n"
        f"column: {'first_name' if i % 2 else 'last_name'}\n" for i in range(WIDE)))


def _plan(project: Path) -> dict[str, Any]:
    out = cli("plan", str(project), "--now", NOW, "--format", "json")
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)["destinations"][0]  # type: ignore[no-any-return]


def _check(project: Path, change: Callable[[str], None]) -> None:
    out = cli("apply", str(project), "--auto-approve", "--now", NOW)
    assert out.exit_code == 0, out.output
    again = _plan(project)
    assert again["compared"] == "values" and again["counts"]["update"] == 0, again
    # every hash matched: only user 11 is read again (a value not sent keeps no hash)
    assert again["read_by_key"] == 1, again
    change("UPDATE users SET last_name = 'Changed' WHERE id = 3")
    changed = _plan(project)
    assert changed["counts"]["update"] == 1, changed["counts"]
    assert changed["fields_set"] == {"last_name": 1}, changed


def test_a_wide_model_on_sqlite(tmp_path: Path, emulator: Emulator) -> None:
    project = copy_example(tmp_path)
    _wide(project)
    _check(project, lambda statement: sql(project, statement))


def test_a_wide_model_on_duckdb(tmp_path: Path, emulator: Emulator) -> None:
    import duckdb

    project = copy_example(tmp_path)
    db = str(project / "warehouse.duckdb")
    con = duckdb.connect(db)
    for statement in portable_sql(project):
        con.execute(statement)
    con.close()
    use_warehouse(project, "kind: app\nname: warehouse\ntype: duckdb\n"
                           "options: {path: warehouse.duckdb}\n")
    _wide(project)

    def run(statement: str) -> None:
        c = duckdb.connect(db)
        c.execute(statement)
        c.close()
    _check(project, run)


def test_a_wide_model_on_postgres(tmp_path: Path, emulator: Emulator, postgres_url: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    project = copy_example(tmp_path)
    url = on_postgres(project, postgres_url, "wide", monkeypatch)
    _wide(project)

    def run(statement: str) -> None:
        with psycopg.connect(url) as c:
            c.execute("SET search_path TO wide")
            c.execute(statement)
    _check(project, run)
