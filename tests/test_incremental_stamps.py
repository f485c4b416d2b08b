"""Incremental reads and the warehouse's time stamps (issue 8, item 6): epoch numbers in
SQLite, stamps that cannot be read, and a PostgreSQL server whose sessions are not in UTC.
Each case once silently read nothing, so an update never reached Braze."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from brazecfg.config.loader import load_project
from brazecfg.emulator import Emulator, EmulatorConfig
from brazecfg.warehouse.connect import connect
from tests.helpers import EXAMPLE as EXAMPLE_ROOT
from tests.helpers import NOW, cli, copy_example, emulator_get, plan_json, unhashed


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(port=0)) as emu:
        monkeypatch.setenv("BRAZE_REST_ENDPOINT", emu.url)
        monkeypatch.delenv("BRAZE_API_KEY", raising=False)
        monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
        yield emu



def apply(project: Path) -> None:
    out = cli("apply", str(project), "--auto-approve", "--now", NOW)
    assert out.exit_code == 0, out.output


def stamped_project(tmp_path: Path, stamp: Any) -> Path:
    """The example with every ``updated_at`` replaced by ``stamp`` (and no triggers)."""
    project = copy_example(tmp_path)
    con = sqlite3.connect(project / "warehouse.db")
    con.executescript((project / "warehouse.sql").read_text())
    with con:
        for table in ("users", "purchases"):
            con.execute(f"DROP TRIGGER IF EXISTS {table}_touch")
            con.execute(f"UPDATE {table} SET updated_at = ?", (stamp,))
        con.execute("DROP TRIGGER purchases_stamp")
    con.close()
    return project


def newest(project: Path, statement: str, params: tuple[Any, ...] = ()) -> None:
    """Give one untouched row the newest stamp: the watermark is the warehouse's own newest
    stamp (minus an overlap), so rows stamped a day before it are not read again, which is
    how these tests prove that a read is incremental."""
    con = sqlite3.connect(project / "warehouse.db")
    with con:
        con.execute(statement, params)
    con.close()


def change_user(project: Path, stamp: Any) -> None:
    con = sqlite3.connect(project / "warehouse.db")
    with con:
        con.execute("UPDATE users SET last_name = 'Byron', updated_at = ? WHERE id = 1", (stamp,))
    con.close()


@pytest.mark.parametrize("unit", [1, 1000], ids=["epoch-seconds", "epoch-milliseconds"])
def test_sqlite_epoch_updated_at_is_read(tmp_path: Path, emulator: Emulator, unit: int) -> None:
    old = int(datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp()) * unit
    project = stamped_project(tmp_path, old)
    newest(project, "UPDATE users SET updated_at = ? WHERE id = 12", (old + 86400 * unit,))
    apply(project)
    change_user(project, int(datetime.now(timezone.utc).timestamp()) * unit)
    d = plan_json(project)
    assert d["read_since"] is not None  # an incremental read ...
    assert d["counts"]["update"] == 1, d  # ... that sees the change (before: nothing, ever)
    assert d["fields_set"] == {"last_name": 1}
    # with the records the state holds no record hash for yet, read by key
    assert d["read_by_key"] == len(unhashed(project) - {"1"})
    assert d["counts"]["unchanged"] == 11
    apply(project)
    users = {u["external_id"]: u for u in emulator_get(emulator.url, "users")["users"]}
    assert users["1"]["attributes"]["last_name"] == "Byron"


def test_a_stamp_that_cannot_be_read_never_hides_a_change(tmp_path: Path,
                                                         emulator: Emulator) -> None:
    project = stamped_project(tmp_path, "2026-01-05 09:00:00")
    apply(project)
    change_user(project, "last Tuesday")  # no time the warehouse can read
    d = plan_json(project)
    assert d["read_since"] is not None
    assert d["counts"]["update"] == 1, d


def test_a_sqlalchemy_postgres_app_sees_fresh_updates_on_a_server_not_in_utc(
        tmp_path: Path, emulator: Emulator, postgres_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    from tests.test_warehouses_agree import portable_sql

    plain = postgres_url.replace("postgresql+psycopg", "postgresql")
    project = copy_example(tmp_path)
    with psycopg.connect(plain) as conn:
        conn.execute("DROP SCHEMA IF EXISTS stamps CASCADE")
        conn.execute("CREATE SCHEMA stamps")
        conn.execute("SET search_path TO stamps")
        for statement in portable_sql(project):
            conn.execute(statement.replace("updated_at TEXT", "updated_at TIMESTAMPTZ"))  # type: ignore[arg-type]
        conn.execute("ALTER ROLE CURRENT_USER SET TimeZone = 'Asia/Tokyo'")
    try:
        (project / "apps" / "warehouse.yml").write_text(
            "kind: app\nname: warehouse\ntype: sqlalchemy\noptions:\n"
            "  url: \"{{ env('BRAZECFG_TEST_STAMPS_PG_URL') }}\"\n")
        sources = project / "sources" / "users.yml"
        sources.write_text(sources.read_text().replace("table: users", "table: stamps.users")
                           .replace("table: purchases", "table: stamps.purchases"))
        monkeypatch.setenv("BRAZECFG_TEST_STAMPS_PG_URL", postgres_url)
        apply(project)
        with psycopg.connect(plain) as conn:
            conn.execute("UPDATE stamps.users SET last_name = 'Byron', updated_at = now() "
                         "WHERE id = 1")
        d = plan_json(project)
        assert d["read_since"] is not None
        assert d["counts"]["update"] == 1, d  # before: read as Tokyo time, 9 hours "old"
        loaded = load_project(project)
        wh = connect(loaded.apps["warehouse"], loaded)
        try:
            newest = wh.max_updated_at("users")
        finally:
            wh.close()
        assert newest is not None and newest.tzinfo is not None
        assert abs(newest - datetime.now(timezone.utc)) < timedelta(minutes=5)
    finally:
        with psycopg.connect(plain) as conn:
            conn.execute("ALTER ROLE CURRENT_USER RESET TimeZone")


@pytest.mark.parametrize(("stamp", "expected"), [
    (1767225600, datetime(2026, 1, 1, tzinfo=timezone.utc)),
    (1767225600000, datetime(2026, 1, 1, tzinfo=timezone.utc)),
    ("2026-01-01T02:00:00+02:00", datetime(2026, 1, 1, tzinfo=timezone.utc)),
    ("2026-01-01 00:00:00", datetime(2026, 1, 1, tzinfo=timezone.utc)),
])
def test_max_updated_at_is_the_warehouses_own_newest_stamp_in_utc(
        tmp_path: Path, stamp: Any, expected: datetime) -> None:
    project = stamped_project(tmp_path, "2025-06-01 00:00:00")
    con = sqlite3.connect(project / "warehouse.db")
    with con:
        con.execute("UPDATE purchases SET updated_at = ? WHERE id = 3", (stamp,))
    con.close()
    loaded = load_project(project)
    wh = connect(loaded.apps["warehouse"], loaded)
    try:
        assert wh.max_updated_at("users") == expected
    finally:
        wh.close()


def _epoch_tables(run: Any, int_type: str) -> None:
    """The example's tables with ``updated_at`` as epoch seconds of type ``int_type``."""
    from tests.test_warehouses_agree import portable_sql

    old = int(datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp())
    for statement in portable_sql(EXAMPLE_ROOT):
        statement = statement.replace("updated_at TEXT NOT NULL DEFAULT '2026-10-01 00:00:00'",
                                      f"updated_at {int_type}")
        statement = statement.replace("updated_at TEXT NOT NULL", f"updated_at {int_type}")
        statement = statement.replace("'2026-01-05 09:00:00'", str(old))
        run(statement)
    run(f"UPDATE purchases SET updated_at = {old}")
    run(f"UPDATE users SET updated_at = {old + 86400} WHERE id = 12")  # see newest()


def test_duckdb_epoch_updated_at_is_read(tmp_path: Path, emulator: Emulator) -> None:
    import duckdb

    project = copy_example(tmp_path)
    con = duckdb.connect(str(project / "warehouse.duckdb"))
    _epoch_tables(con.execute, "BIGINT")
    con.close()
    (project / "apps" / "warehouse.yml").write_text(
        "kind: app\nname: warehouse\ntype: duckdb\noptions: {path: warehouse.duckdb}\n")
    apply(project)
    con = duckdb.connect(str(project / "warehouse.duckdb"))
    now = int(datetime.now(timezone.utc).timestamp()) * 1000  # milliseconds this time
    con.execute(f"UPDATE users SET last_name = 'Byron', updated_at = {now} WHERE id = 1")
    con.close()
    d = plan_json(project)  # before: a cast error on every incremental run
    assert d["read_since"] is not None
    assert d["fields_set"] == {"last_name": 1}, d


def test_postgres_epoch_updated_at_is_read(tmp_path: Path, emulator: Emulator,
                                           postgres_url: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    plain = postgres_url.replace("postgresql+psycopg", "postgresql")
    project = copy_example(tmp_path)
    with psycopg.connect(plain) as conn:
        conn.execute("DROP SCHEMA IF EXISTS epochs CASCADE")
        conn.execute("CREATE SCHEMA epochs")
        conn.execute("SET search_path TO epochs")
        _epoch_tables(lambda q: conn.execute(q), "BIGINT")
    (project / "apps" / "warehouse.yml").write_text(
        "kind: app\nname: warehouse\ntype: postgres\noptions:\n"
        "  url: \"{{ env('BRAZECFG_TEST_EPOCHS_PG_URL') }}\"\n")
    sources = project / "sources" / "users.yml"
    sources.write_text(sources.read_text().replace("table: users", "table: epochs.users")
                       .replace("table: purchases", "table: epochs.purchases"))
    monkeypatch.setenv("BRAZECFG_TEST_EPOCHS_PG_URL", postgres_url)
    apply(project)
    with psycopg.connect(plain) as conn:
        conn.execute("UPDATE epochs.users SET last_name = 'Byron', "
                     "updated_at = extract(epoch from now())::bigint WHERE id = 1")
    d = plan_json(project)
    assert d["read_since"] is not None
    assert d["fields_set"] == {"last_name": 1}, d
    loaded = load_project(project)
    wh = connect(loaded.apps["warehouse"], loaded)
    try:
        newest = wh.max_updated_at("users")
    finally:
        wh.close()
    assert newest is not None
    assert abs(newest - datetime.now(timezone.utc)) < timedelta(minutes=5)


@pytest.mark.parametrize("change", [
    "UPDATE purchases SET user_id = 2, updated_at = {now} WHERE id = 2",  # re-parented
    "DELETE FROM purchases WHERE id = 2",  # hard-deleted: nothing stamps it
], ids=["re-parented", "hard-deleted"])
def test_duckdb_a_related_row_that_leaves_its_user_updates_the_old_owner(
        tmp_path: Path, emulator: Emulator, change: str) -> None:
    """DuckDB computes record hashes with md5: user 1's purchase 2 (15.50) moves to user 2
    or is deleted, user 1's rows carry no new stamp, and its ltv still becomes 120."""
    import duckdb

    project = copy_example(tmp_path)
    con = duckdb.connect(str(project / "warehouse.duckdb"))
    _epoch_tables(con.execute, "BIGINT")
    con.close()
    (project / "apps" / "warehouse.yml").write_text(
        "kind: app\nname: warehouse\ntype: duckdb\noptions: {path: warehouse.duckdb}\n")
    apply(project)
    con = duckdb.connect(str(project / "warehouse.duckdb"))
    con.execute(change.format(now=int(datetime.now(timezone.utc).timestamp())))
    con.close()
    d = plan_json(project)
    assert d["read_since"] is not None and d["hashes_compared"] == 12
    assert d["fields_set"].get("lifetime_value") == (  # type: ignore[attr-defined]
        2 if "UPDATE" in change else 1), d
    apply(project)
    got = {u["external_id"]: u for u in emulator_get(emulator.url, "users")["users"]}
    assert got["1"]["attributes"]["lifetime_value"] == 120
    assert "No changes." in cli("plan", str(project), "--now", NOW).output


def test_postgres_a_re_parented_related_row_updates_the_old_owner(
        tmp_path: Path, emulator: Emulator, postgres_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    plain = postgres_url.replace("postgresql+psycopg", "postgresql")
    project = copy_example(tmp_path)
    with psycopg.connect(plain) as conn:
        conn.execute("DROP SCHEMA IF EXISTS reparent CASCADE")
        conn.execute("CREATE SCHEMA reparent")
        conn.execute("SET search_path TO reparent")
        _epoch_tables(lambda q: conn.execute(q), "BIGINT")
    (project / "apps" / "warehouse.yml").write_text(
        "kind: app\nname: warehouse\ntype: postgres\noptions:\n"
        "  url: \"{{ env('BRAZECFG_TEST_REPARENT_PG_URL') }}\"\n")
    sources = project / "sources" / "users.yml"
    sources.write_text(sources.read_text().replace("table: users", "table: reparent.users")
                       .replace("table: purchases", "table: reparent.purchases"))
    monkeypatch.setenv("BRAZECFG_TEST_REPARENT_PG_URL", postgres_url)
    apply(project)
    with psycopg.connect(plain) as conn:
        conn.execute("UPDATE reparent.purchases SET user_id = 2, "
                     "updated_at = extract(epoch from now())::bigint WHERE id = 2")
    d = plan_json(project)
    assert d["read_since"] is not None and d["hashes_compared"] == 12
    assert d["fields_set"].get("lifetime_value") == 2, d  # type: ignore[attr-defined]
    apply(project)
    got = {u["external_id"]: u for u in emulator_get(emulator.url, "users")["users"]}
    assert got["1"]["attributes"]["lifetime_value"] == 120


@pytest.mark.parametrize("unreadable", ["2025/06/01 00:00", "2025-13-01 00:00:00",
                                        "2025-06-01 00:00:00-15:00", "+025-06-01 00:00:00",
                                        "2O25-06-01 00:00:00", 2461046.5, "02461046.5"],
                         ids=["no-date", "month-13", "offset-beyond-14h", "sign-for-a-digit",
                              "letter-for-a-digit", "julian-day-number", "julian-day-text"])
def test_an_unreadable_stamp_among_iso_text_is_read_on_every_incremental_run(
        tmp_path: Path, emulator: Emulator, unreadable: str | float) -> None:
    """300 more users with ISO stamps and one whose stamp no warehouse reads as a time,
    past the first rows the SQLite probe looks at and between its smallest and greatest
    stamps. Its text sorts below the range the index would seek, so that seek would skip it;
    with no value hash to fall back on (incremental reads compare counts), its change was
    missed. Every value is checked to be a time SQLite reads (not only text that starts with
    a date: month 13 and an offset past 14 hours do too) before the seek is used, so the
    exact filter reads it (an unreadable stamp: read every time). The last two are stamps
    SQLite does read, as the Julian day of 2026-01-06 (the newest stamp, which the exact
    filter reads again): as a number it sorts below every text, and as the text
    "02461046.5" below "2026", so the seek would skip it too. The column's smallest value
    (no longer ISO text) and the survey's count of values not shaped like a date each keep
    the seek off."""
    project = stamped_project(tmp_path, "2026-01-05 09:00:00")
    con = sqlite3.connect(project / "warehouse.db")
    with con:
        con.executemany("INSERT INTO users (id, email, first_name, last_name, country, "
                        "updated_at) VALUES (?, ?, 'F', 'L', 'GB', '2026-01-05 09:00:00')",
                        [(i, f"u{i}@example.com") for i in range(100, 400)])
        con.execute("UPDATE users SET updated_at = ? WHERE id = 399", (unreadable,))
        con.execute("UPDATE users SET updated_at = '2025-01-01 00:00:00' WHERE id = 1")
    con.close()
    newest(project, "UPDATE users SET updated_at = '2026-01-06 00:00:00' WHERE id = 12")
    apply(project)
    newest(project, "UPDATE users SET last_name = 'Byron' WHERE id = 399")  # stamp unchanged
    d = plan_json(project)
    assert d["read_since"] is not None  # still an incremental read ...
    assert d["fields_set"] == {"last_name": 1}, d  # ... that reads the unreadable stamp
