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


def on_postgres(project: Path, postgres_url: str, schema: str,
                monkeypatch: pytest.MonkeyPatch) -> str:
    """The example's tables and rows in a fresh ``schema`` of the test server, and the
    project's warehouse app and sources pointed there (the URL through an env() template).
    Returns the URL psycopg takes."""
    import psycopg

    url = postgres_url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(url) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path TO {schema}")
        for statement in portable_sql(project):
            conn.execute(statement)
    env = f"BRAZECFG_{schema.upper()}_PG_URL"
    use_warehouse(project, "kind: app\nname: warehouse\ntype: postgres\noptions:\n"
                           f"  url: \"{{{{ env('{env}') }}}}\"\n")
    tables = project / "sources" / "users.yml"
    tables.write_text(tables.read_text().replace("table: users", f"table: {schema}.users")
                      .replace("table: purchases", f"table: {schema}.purchases"))
    monkeypatch.setenv(env, postgres_url)
    return url


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
    on_postgres(pg, postgres_url, "example", monkeypatch)
    plans["postgres"] = plan(pg)

    assert plans["sqlite"]["destinations"][0]["counts"]["create"] == 12  # type: ignore[index]
    assert plans["duckdb"] == plans["sqlite"]
    assert plans["postgres"] == plans["sqlite"]
