"""How brazecfg sets up each warehouse session, seen through the CLI (issue 8, items 6 and 14):
DuckDB gets a memory limit and a private temporary directory (removed afterwards), SQLite a
small page cache and a soft heap limit (issue 9), and every session reads time stamps in UTC
whatever the app's type."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from tests.helpers import NOW, cli, copy_example, emulator_get


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(port=0)) as emu:
        monkeypatch.setenv("BRAZE_REST_ENDPOINT", emu.url)
        monkeypatch.delenv("BRAZE_API_KEY", raising=False)
        monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
        yield emu


def settings_project(tmp_path: Path, app: str, source: str) -> Path:
    """A one-table project whose users carry the session's settings as attributes."""
    project = copy_example(tmp_path)
    for sub in ("properties", "groups", "sources"):
        for f in (project / sub).iterdir():
            f.unlink()
    (project / "apps" / "warehouse.yml").write_text(app)
    (project / "sources" / "users.yml").write_text(source)
    (project / "properties" / "users.yml").write_text("\n---\n".join(
        f"kind: property\nname: {name}\nsource: users_table\ntype: string\ncolumn: {name}"
        for name in ("user_id", "setting_a", "setting_b")) + "\n")
    (project / "destinations" / "braze_users.yml").write_text(
        "kind: destination\nname: braze_users\napp: braze\nmodel: users\nmode: sync\n"
        "mapping: {external_id: user_id}\n"
        "custom_attributes: {setting_a: setting_a, setting_b: setting_b}\n")
    return project


def attributes(project: Path, emulator: Emulator) -> dict[str, Any]:
    out = cli("apply", str(project), "--auto-approve", "--now", NOW)
    assert out.exit_code == 0, out.output
    users = emulator_get(emulator.url, "users")["users"]
    assert len(users) == 1
    return users[0]["attributes"]  # type: ignore[no-any-return]


DUCK_SOURCE = """kind: source
name: users_table
app: warehouse
model: users
query: >
  SELECT '1' AS user_id, current_setting('memory_limit') AS setting_a,
         current_setting('temp_directory') AS setting_b
key: user_id
"""


def test_duckdb_runs_with_a_memory_limit_and_a_temp_dir_removed_after(
        tmp_path: Path, emulator: Emulator) -> None:
    import duckdb

    duckdb.connect(str(tmp_path / "w.duckdb")).close()
    app = ("kind: app\nname: warehouse\ntype: duckdb\n"
           f"options: {{path: {tmp_path / 'w.duckdb'}}}\n")
    got = attributes(settings_project(tmp_path, app, DUCK_SOURCE), emulator)
    assert got["setting_a"] in ("244.1 MiB", "256.0 MiB", "256MB")  # the default, not 80% of RAM
    temp = Path(got["setting_b"])
    assert temp.name.startswith("brazecfg-duckdb-")
    assert not temp.exists()  # removed when the command finished


def test_duckdb_memory_limit_is_an_option(tmp_path: Path, emulator: Emulator) -> None:
    app = "kind: app\nname: warehouse\ntype: duckdb\noptions: {memory_limit: 1GB}\n"
    got = attributes(settings_project(tmp_path, app, DUCK_SOURCE), emulator)
    assert got["setting_a"] in ("953.6 MiB", "1.0 GiB", "1GB")


THREADS_SOURCE = DUCK_SOURCE.replace("current_setting('temp_directory')",
                                    "CAST(current_setting('threads') AS VARCHAR)")


@pytest.mark.parametrize(("options", "threads"), [
    ("{}", 1),  # the default 256MB: one thread (two ran out of it at 10M users)
    ("{memory_limit: 1GB}", min(os.cpu_count() or 1, 3)),  # one per 256MB, up to the cores
    ("{memory_limit: 64MB, threads: 2}", 2),  # said: as said
])
def test_duckdb_runs_one_thread_per_256mb_of_its_memory_limit(
        tmp_path: Path, emulator: Emulator, options: str, threads: int) -> None:
    app = f"kind: app\nname: warehouse\ntype: duckdb\noptions: {options}\n"
    got = attributes(settings_project(tmp_path, app, THREADS_SOURCE), emulator)
    assert got["setting_b"] == str(threads)


def test_a_bad_duckdb_threads_is_a_located_config_error(tmp_path: Path) -> None:
    app = "kind: app\nname: warehouse\ntype: duckdb\noptions:\n  threads: 0\n"
    out = cli("validate", str(settings_project(tmp_path, app, DUCK_SOURCE)))
    assert out.exit_code == 1
    assert "apps/warehouse.yml:5" in out.output and "threads" in out.output, out.output


def test_a_bad_duckdb_memory_limit_is_a_located_config_error(tmp_path: Path) -> None:
    app = "kind: app\nname: warehouse\ntype: duckdb\noptions: {memory_limit: lots}\n"
    project = settings_project(tmp_path, app, DUCK_SOURCE)
    out = cli("validate", str(project))
    assert out.exit_code == 1
    assert "apps/warehouse.yml:4" in out.output and "memory_limit" in out.output
    assert "256MB" in out.output


def test_a_sqlalchemy_postgres_app_reads_in_utc(tmp_path: Path, emulator: Emulator,
                                                postgres_url: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    with psycopg.connect(postgres_url.replace("postgresql+psycopg", "postgresql")) as conn:
        # a server whose own zone is not UTC: the default every new session starts in
        conn.execute("ALTER ROLE CURRENT_USER SET TimeZone = 'America/New_York'")
    try:
        monkeypatch.setenv("BRAZECFG_TEST_SESSIONS_PG_URL", postgres_url)
        app = ("kind: app\nname: warehouse\ntype: sqlalchemy\noptions:\n"
               "  url: \"{{ env('BRAZECFG_TEST_SESSIONS_PG_URL') }}\"\n")
        source = DUCK_SOURCE.replace(
            "current_setting('memory_limit')", "current_setting('TimeZone')").replace(
            "current_setting('temp_directory')",
            "CAST(TIMESTAMPTZ '2026-01-01 10:00:00+00' AS TIMESTAMP)")
        got = attributes(settings_project(tmp_path, app, source), emulator)
        assert got["setting_a"] == "UTC"
        assert got["setting_b"] == "2026-01-01T10:00:00"
    finally:
        with psycopg.connect(postgres_url.replace("postgresql+psycopg", "postgresql")) as conn:
            conn.execute("ALTER ROLE CURRENT_USER RESET TimeZone")


def test_plan_json_is_unchanged_by_the_session_setup(tmp_path: Path, emulator: Emulator) -> None:
    # the example on DuckDB plans its 12 users as on SQLite
    import duckdb

    from tests.test_warehouses_agree import portable_sql

    project = copy_example(tmp_path)
    con = duckdb.connect(str(project / "warehouse.duckdb"))
    for statement in portable_sql(project):
        con.execute(statement)
    con.close()
    (project / "apps" / "warehouse.yml").write_text(
        "kind: app\nname: warehouse\ntype: duckdb\n"
        "options: {path: warehouse.duckdb, memory_limit: 64MB}\n")
    out = cli("plan", str(project), "--now", NOW, "--format", "json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["destinations"][0]["counts"]["create"] == 12


def test_a_model_too_big_for_the_duckdb_memory_limit_says_which_option_to_raise(
        tmp_path: Path) -> None:
    import duckdb

    db = tmp_path / "big.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE users AS SELECT i AS user_id, 'user' || i || '@example.com' "
                "AS setting_a, repeat('x', 40) || i AS setting_b FROM range(300000) t(i)")
    con.close()
    app = f"kind: app\nname: warehouse\ntype: duckdb\noptions: {{path: {db}, memory_limit: 4MB}}\n"
    source = DUCK_SOURCE.replace(DUCK_SOURCE[DUCK_SOURCE.index("query:"):
                                             DUCK_SOURCE.index("key:")], "table: users\n")
    out = cli("plan", str(settings_project(tmp_path, app, source)), "--now", NOW)
    assert out.exit_code == 1
    assert "Out of Memory" in out.output
    assert "Raise options.memory_limit of app/warehouse" in out.output
    assert "SET memory_limit" not in out.output  # DuckDB's advice is not for our users


SQLITE_APP = "kind: app\nname: warehouse\ntype: sqlite\noptions: {path: w.db}\n"
SQLITE_SOURCE = DUCK_SOURCE.replace(
    "current_setting('memory_limit')",
    "CAST((SELECT cache_size FROM pragma_cache_size) AS TEXT)").replace(
    "current_setting('temp_directory')",
    "CAST((SELECT soft_heap_limit FROM pragma_soft_heap_limit) AS TEXT)")


def soft_heap_limit() -> int:
    """SQLite's soft heap limit in this process (one for every connection)."""
    with sqlite3.connect(":memory:") as con:
        return int(con.execute("PRAGMA soft_heap_limit").fetchone()[0])


@pytest.fixture
def no_soft_heap_limit() -> Iterator[None]:
    with sqlite3.connect(":memory:") as con:
        con.execute("PRAGMA soft_heap_limit = 0")  # as a fresh process starts
    yield
    with sqlite3.connect(":memory:") as con:
        con.execute("PRAGMA soft_heap_limit = 0")


def test_sqlite_reads_with_a_small_page_cache_and_heap(
        tmp_path: Path, emulator: Emulator, no_soft_heap_limit: None) -> None:
    # issue 9 (peak memory): SQLite's default page cache is 2,000 KiB per database, per
    # connection, and a sort gets as much again before it spills
    project = settings_project(tmp_path, SQLITE_APP, SQLITE_SOURCE)
    sqlite3.connect(project / "w.db").close()
    got = attributes(project, emulator)
    assert (got["setting_a"], got["setting_b"]) == ("-256", "4000000")


def test_the_local_state_sets_the_soft_heap_limit_whatever_the_warehouse(
        tmp_path: Path, emulator: Emulator, no_soft_heap_limit: None) -> None:
    # a DuckDB warehouse: only the local state's SQLite file opens SQLite connections
    app = "kind: app\nname: warehouse\ntype: duckdb\n"
    attributes(settings_project(tmp_path, app, DUCK_SOURCE), emulator)
    assert soft_heap_limit() == 4_000_000


def test_a_state_file_attached_to_a_sqlite_read_gets_the_same_small_cache(
        tmp_path: Path) -> None:
    # the incremental read joins the local state's file, attached: SQLite gives an attached
    # file its default cache, not the connection's
    import sqlalchemy as sa

    from brazecfg.config.loader import load_project
    from brazecfg.warehouse.compile import STATE_ALIAS, ModelQuery
    from brazecfg.warehouse.connect import connect
    from brazecfg.warehouse.engine import SqlWarehouse

    project = settings_project(tmp_path, SQLITE_APP, SQLITE_SOURCE)
    sqlite3.connect(project / "w.db").close()
    state = tmp_path / "state.sqlite"
    with sqlite3.connect(state) as con:
        con.execute("CREATE TABLE t (x)")
    loaded = load_project(project)
    wh = connect(loaded.apps["warehouse"], loaded)
    assert isinstance(wh, SqlWarehouse)
    try:
        caches = [sa.select(sa.text("cache_size"))
                  .select_from(sa.text(f"{schema}pragma_cache_size"))
                  for schema in ("", f"{STATE_ALIAS}.")]
        got = [list(wh._stream("test", ModelQuery(select=q, properties=(), groups=()), 10,
                               tuple, attach=state)) for q in caches]
    finally:
        wh.close()
    assert got == [[(-256,)], [(-256,)]]
