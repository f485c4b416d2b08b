"""examples/project on SQLite, DuckDB and PostgreSQL: only the warehouse app differs, and the
three plans are identical, down to the digest of every change."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from tests.helpers import NOW, cli, copy_example

TABLES_AND_ROWS = re.compile(r"(CREATE TABLE .*?;|INSERT INTO .*?;)", re.S)


def portable_sql(project: Path) -> list[str]:
    """The example's tables and rows without SQLite's triggers, in SQL all three accept."""
    text = (project / "warehouse.sql").read_text()
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    statements = TABLES_AND_ROWS.findall(text)
    return [s.replace(" REAL ", " DOUBLE PRECISION ") for s in statements]


def use_warehouse(project: Path, app_yaml: str) -> None:
    (project / "apps" / "warehouse.yml").write_text(app_yaml)


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(port=0)) as emu:
        monkeypatch.setenv("BRAZE_REST_ENDPOINT", emu.url)
        monkeypatch.setenv("BRAZECFG_HASH_KEY", "the-same-key-for-all-three-runs")
        yield emu


def plan(project: Path) -> dict[str, object]:
    out = cli("plan", str(project), "--now", NOW, "--format", "json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    doc.pop("config_fingerprint")  # the warehouse app differs on purpose
    doc.pop("config_changes")
    return doc  # type: ignore[no-any-return]


def test_sqlite_duckdb_postgres_give_identical_plans(tmp_path: Path, emulator: Emulator,
                                                    postgres_url: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import duckdb
    import psycopg

    sqlite_project = copy_example(tmp_path / "sqlite")
    plans = {"sqlite": plan(sqlite_project)}

    duck = copy_example(tmp_path / "duckdb")
    con = duckdb.connect(str(duck / "warehouse.duckdb"))
    for statement in portable_sql(duck):
        con.execute(statement)
    con.close()
    use_warehouse(duck, "kind: app\nname: warehouse\ntype: duckdb\noptions: {path: warehouse.duckdb}\n")
    plans["duckdb"] = plan(duck)

    pg = copy_example(tmp_path / "postgres")
    with psycopg.connect(postgres_url.replace("postgresql+psycopg", "postgresql")) as conn:
        conn.execute("DROP SCHEMA IF EXISTS example CASCADE")
        conn.execute("CREATE SCHEMA example")
        conn.execute("SET search_path TO example")
        for statement in portable_sql(pg):
            conn.execute(statement)  # type: ignore[arg-type]
    use_warehouse(pg, "kind: app\nname: warehouse\ntype: postgres\noptions:\n"
                      "  url: \"{{ env('BRAZECFG_EXAMPLE_PG_URL') }}\"\n")
    pg_tables = pg / "sources" / "users.yml"
    pg_tables.write_text(pg_tables.read_text().replace("table: users", "table: example.users")
                         .replace("table: purchases", "table: example.purchases"))
    monkeypatch.setenv("BRAZECFG_EXAMPLE_PG_URL", postgres_url)
    plans["postgres"] = plan(pg)

    assert plans["sqlite"]["destinations"][0]["counts"]["create"] == 12  # type: ignore[index]
    assert plans["duckdb"] == plans["sqlite"]
    assert plans["postgres"] == plans["sqlite"]
