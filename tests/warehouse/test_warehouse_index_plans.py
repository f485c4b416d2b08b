"""The model query uses the warehouse's indexes (issue 9, "SQL that defeats the indexes"):
on a real SQLite file, ``EXPLAIN QUERY PLAN`` of the incremental read, the hash read and the
keys read, before (``datetime(updated_at) >= ?`` and ``ORDER BY`` the computed key text) and
after (a seekable range on the raw ``updated_at``, ``ORDER BY`` a text key column itself)."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from brazecfg.config.loader import load_project
from brazecfg.emulator import Emulator, EmulatorConfig
from brazecfg.warehouse.compile import build_hashes_query, build_model_query
from brazecfg.warehouse.connect import connect
from brazecfg.warehouse.engine import SqlWarehouse, _register_sqlite_hash
from tests.helpers import NOW as CLI_NOW
from tests.helpers import cli, copy_example, emulator_get

SINCE = datetime(2026, 3, 1, 12, 0, 0)
NOW = datetime(2026, 11, 1)


def text_keyed_project(tmp_path: Path, stamps: list[Any] | None = None) -> Path:
    """The example with ``users.id`` a TEXT NOT NULL primary key and an index on every
    ``updated_at``; ``stamps``: the users' stamps, in id order (else the example's)."""
    project = copy_example(tmp_path)
    script = (project / "warehouse.sql").read_text().replace(
        "CREATE TABLE users (\n  id INTEGER PRIMARY KEY,",
        "CREATE TABLE users (\n  id TEXT NOT NULL PRIMARY KEY,")
    assert "id TEXT NOT NULL PRIMARY KEY" in script
    con = sqlite3.connect(project / "warehouse.db")
    con.executescript(script)
    with con:
        con.execute("CREATE INDEX users_updated ON users (updated_at)")
        con.execute("CREATE INDEX purchases_updated ON purchases (updated_at)")
        for i, stamp in enumerate(stamps or []):
            con.execute("DROP TRIGGER IF EXISTS users_touch")
            con.execute("UPDATE users SET updated_at = ? WHERE id = ?", (stamp, str(i + 1)))
    con.close()
    return project


def explain(wh: SqlWarehouse, stmt: Any) -> list[str]:
    """The query plan's lines; those of the outermost query start with "top: "."""
    compiled = stmt.compile(dialect=wh.engine.dialect)
    params = tuple(compiled.params[k] for k in compiled.positiontup or ())
    with wh.engine.connect() as conn:
        _register_sqlite_hash(conn)
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params).all()
    return [("top: " if r[1] == 0 else "") + str(r[-1]) for r in rows]


def explain_with_state(wh: SqlWarehouse, stmt: Any, state_file: Path) -> list[str]:
    """The query plan's lines of ``stmt``, the state's file attached as the engine does."""
    from brazecfg.warehouse.compile import STATE_ALIAS

    compiled = stmt.compile(dialect=wh.engine.dialect)
    params = tuple(compiled.params[k] for k in compiled.positiontup or ())
    with wh.engine.connect() as conn:
        _register_sqlite_hash(conn)
        conn.exec_driver_sql(f"ATTACH DATABASE ? AS {STATE_ALIAS}", (str(state_file),))
        plan = [str(r[-1]) for r in conn.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {compiled}", params).all()]
        conn.exec_driver_sql(f"DETACH DATABASE {STATE_ALIAS}")
    return plan


def open_warehouse(project: Path) -> SqlWarehouse:
    p = load_project(project)
    wh = connect(p.apps["warehouse"], p)
    assert isinstance(wh, SqlWarehouse)
    return wh


def test_the_incremental_read_seeks_the_updated_at_index_and_the_key_order(
        tmp_path: Path) -> None:
    wh = open_warehouse(text_keyed_project(tmp_path))
    try:
        before = explain(wh, build_model_query(wh.project, "users", now=NOW, dialect="sqlite",
                                               changed_since=SINCE).select)
        after = explain(wh, wh.query("users", now=NOW, changed_since=SINCE).select)
        print("before:", *before, "after:", *after, sep="\n  ")
        # before: the stamps converted row by row (a scan), the key text sorted afterwards
        assert not any("USING INDEX users_updated" in s or "USING COVERING INDEX users_updated"
                       in s for s in before)
        assert "top: USE TEMP B-TREE FOR ORDER BY" in before
        # after: both stamp indexes seek a range, the changed keys seek the primary key,
        # whose order is the order wanted (no sort)
        assert any(s.startswith("top: SCAN p") for s in before), before
        assert any(s.startswith("top: SEARCH p") and s.endswith(
            "USING INDEX sqlite_autoindex_users_1 (id=?)") for s in after), after
        for index in ("users_updated", "purchases_updated"):
            assert any(s.startswith("SEARCH") and index in s and "(updated_at>?)" in s
                       for s in after), after
        assert not any(s.startswith("top:") and "TEMP B-TREE" in s for s in after), after
    finally:
        wh.close()


def test_the_hash_and_keys_reads_take_the_primary_key_order(tmp_path: Path) -> None:
    wh = open_warehouse(text_keyed_project(tmp_path))
    try:
        before = explain(wh, build_hashes_query(wh.project, "users", now=NOW,
                                                dialect="sqlite").select)
        after = explain(wh, build_hashes_query(wh.project, "users", now=NOW, dialect="sqlite",
                                               text_key=wh._text_key("users")).select)
        assert "top: USE TEMP B-TREE FOR ORDER BY" in before
        assert not any(s.startswith("top:") and "TEMP B-TREE" in s for s in after), after
    finally:
        wh.close()


@pytest.mark.parametrize("stamps", [
    ["2026-01-05T09:00:00Z", 1767603600],        # an epoch number among the text
    ["2026-01-05 09:00:00", "last Tuesday"],     # a stamp that is no time
], ids=["epoch", "no-time"])
def test_stamps_in_more_than_one_format_keep_the_exact_read(tmp_path: Path,
                                                            stamps: list[Any]) -> None:
    wh = open_warehouse(text_keyed_project(tmp_path, stamps))
    try:
        assert wh._text_stamps("users") == frozenset({"purchases.updated_at"})
    finally:
        wh.close()


def test_the_seek_reads_what_the_exact_filter_reads(tmp_path: Path) -> None:
    """ISO text with 'T' or ' ', with and without zone, and a fraction: the same keys with
    and without the range on the raw column, around a watermark at the day's edges."""
    stamps = ["2026-03-01 12:00:00", "2026-03-01T11:59:59Z", "2026-03-02T01:00:00+14:00",
              "2026-02-28T23:00:00-14:00", "2026-02-28 12:00:00", "2026-03-01T12:00:00.5",
              "2026-02-27T23:59:59-00:00", "2026-03-01", "2026-03-02", "2026-02-29T12:00:00Z",
              "2026-03-01T12:30:00+00:30", "2027-01-01 00:00:00"]
    wh = open_warehouse(text_keyed_project(tmp_path, stamps))
    try:
        assert "users_table.updated_at" in wh._text_stamps("users")
        for since in (SINCE, datetime(2026, 3, 1), datetime(2026, 3, 2, 0, 0, 1)):
            exact = build_model_query(wh.project, "users", now=NOW, dialect="sqlite",
                                      changed_since=since).select
            seek = wh.query("users", now=NOW, changed_since=since).select
            with wh.engine.connect() as conn:
                _register_sqlite_hash(conn)
                want = [r[0] for r in conn.execute(exact)]
                got = [r[0] for r in conn.execute(seek)]
            assert got == want and want, since
    finally:
        wh.close()


def test_through_the_cli_a_text_keyed_warehouse_reads_incrementally_by_index(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same project through plan and apply: the seeking read finds the one change, in
    key order, and Braze gets it."""
    project = text_keyed_project(tmp_path)
    con = sqlite3.connect(project / "warehouse.db")
    with con:
        con.execute("DROP TRIGGER users_touch")
        con.execute("UPDATE users SET updated_at = '2026-01-05 09:00:00'")
        con.execute("UPDATE users SET updated_at = '2026-01-06T09:00:00Z' WHERE id = '12'")
    con.close()
    with Emulator(EmulatorConfig(port=0)) as emu:
        monkeypatch.setenv("BRAZE_REST_ENDPOINT", emu.url)
        monkeypatch.delenv("BRAZE_API_KEY", raising=False)
        monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
        assert cli("apply", str(project), "--auto-approve", "--now", CLI_NOW).exit_code == 0
        con = sqlite3.connect(project / "warehouse.db")
        with con:
            con.execute("UPDATE users SET last_name = 'Byron', updated_at = "
                        "'2026-12-01T10:00:00+01:00' WHERE id = '1'")
        con.close()
        out = cli("plan", str(project), "--now", CLI_NOW, "--format", "json")
        assert out.exit_code == 0, out.output
        d = json.loads(out.stdout)["destinations"][0]
        assert d["read_since"] is not None
        assert d["counts"]["update"] == 1 and d["fields_set"] == {"last_name": 1}, d
        assert cli("apply", str(project), "--auto-approve", "--now", CLI_NOW).exit_code == 0
        users = {u["external_id"]: u for u in emulator_get(emu.url, "users")["users"]}
        assert users["1"]["attributes"]["last_name"] == "Byron" and len(users) == 12


def test_the_diff_in_the_warehouse_seeks_the_state_by_key_and_counts_in_index_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The join of the counts with the state's records seeks the state's primary key
    (destination, external_id) once per key, in two halves: the first version joined a subquery of the
    records, which SQLite scanned once per key (68.6 s for 20,000 records, against 0.29 s).
    The related rows are counted in the order of the index on their key column, not sorted
    by key text."""
    from brazecfg.state.ledger import Ledger
    from brazecfg.warehouse.compile import build_hash_changes_query

    with Emulator(EmulatorConfig(port=0)) as emu:
        monkeypatch.setenv("BRAZE_REST_ENDPOINT", emu.url)
        project = copy_example(tmp_path)
        out = cli("apply", str(project), "--auto-approve", "--now", CLI_NOW)
        assert out.exit_code == 0, out.output
    con = sqlite3.connect(project / "warehouse.db")
    with con:
        con.execute("CREATE INDEX purchases_user ON purchases (user_id)")
    con.close()
    wh = open_warehouse(project)
    with Ledger(project / ".brazecfg" / "ledger.sqlite", writable=False) as led:
        state = led.joinable("braze_users")
    assert state is not None and state.attach is not None
    try:
        numeric = wh._numeric_keys("users")
        assert numeric == {"purchases"}  # user_id: INTEGER, numbers only
        stmt = build_hash_changes_query(wh.project, "users", now=NOW, dialect="sqlite",
                                        state=state, unique_key=wh._unique_key("users"),
                                        numeric_keys=numeric)
        compiled = stmt.compile(dialect=wh.engine.dialect)
        plan = explain_with_state(wh, stmt, state.attach)
    finally:
        wh.close()
    print(*plan, sep="\n  ")
    assert any(s.startswith("SEARCH s USING PRIMARY KEY (destination=? AND external_id=?)")
               for s in plan), plan
    assert not any(s.startswith("SCAN s") and "LEFT-JOIN" in s for s in plan), plan
    assert any("COVERING INDEX purchases_user" in s for s in plan), plan
    # An INTEGER PRIMARY KEY cannot repeat: no FULL JOIN, which copies every key of the
    # model to a temporary table first (1M users, interleaved: 7.4 to 8.0 s for the query,
    # against 5.2 to 5.6 s); the state's keys the table lacks are each one seek of its rowid.
    assert not any(s.startswith("MATERIALIZE wc") or s.startswith("RIGHT-JOIN")
                   for s in plan), plan
    assert any(s.startswith("SEARCH x USING INTEGER PRIMARY KEY (rowid=?)") for s in plan), plan
    # A key column of numbers only, joined to a rowid: the counts grouped once, in the
    # index's order, and joined on the raw values (no GROUP BY on key text: 1.8 s against
    # 3.5 s for this part at 1M users)
    assert not any("TEMP B-TREE FOR GROUP BY" in s for s in plan), plan
    assert any("AUTOMATIC COVERING INDEX (rk=?)" in s for s in plan), plan
    # The record's hash is tested once per record: SQLite computes a subquery's column at
    # each reference to it (1M users: 3.6 to 4.1 s for the diff with `h IS NULL` and the
    # hex of each side compared, 3.0 to 3.4 s with the BLOBs compared NULL-safe)
    where = str(compiled).split(" AS wc ", 1)[1].split(" UNION ALL ", 1)[0]
    assert where.count("wc.h") == 1 and "wc.h IS NOT s.row_hash" in where, where
    # With the index, the engine has each user's purchases counted by one seek of it
    # instead: nothing grouped, materialised and indexed again
    wh = open_warehouse(project)
    try:
        assert wh._indexed_keys("users") == {"purchases"}
        stmt = build_hash_changes_query(wh.project, "users", now=NOW, dialect="sqlite",
                                        state=state, unique_key=True, numeric_keys=numeric,
                                        indexed_keys=wh._indexed_keys("users"))
        plan = explain_with_state(wh, stmt, state.attach)
    finally:
        wh.close()
    assert any(s.startswith("SEARCH n") and "USING COVERING INDEX purchases_user (user_id=?)"
               in s for s in plan), plan
    assert not any("AUTOMATIC" in s or s.startswith("SCAN n") for s in plan), plan


@pytest.mark.parametrize("index", [
    "", "ON purchases (user_id) WHERE user_id > 0", "ON purchases (user_id COLLATE NOCASE)",
    "ON purchases (product, user_id)"], ids=["none", "partial", "nocase", "not-first"])
def test_counts_seek_only_an_index_that_leads_with_the_key(tmp_path: Path, index: str) -> None:
    """Each record's related rows are counted by a seek only when an index holds every row
    in the key's byte order: without one SQLite would scan the table once per record (a
    20,000-user test did not finish in 60 s), so the rows are grouped once instead."""
    project = copy_example(tmp_path)
    con = sqlite3.connect(project / "warehouse.db")
    con.executescript((project / "warehouse.sql").read_text())
    if index:
        con.execute(f"CREATE INDEX purchases_x {index}")
    con.execute("CREATE INDEX users_email ON users (email)")
    con.close()
    wh = open_warehouse(project)
    try:
        assert wh._numeric_keys("users") == {"purchases"}
        assert wh._indexed_keys("users") == frozenset()
    finally:
        wh.close()


def test_no_subquery_of_an_incremental_read_is_scanned_once_per_record(tmp_path: Path) -> None:
    """The incremental read joins one subquery per related source to the changed records;
    each must be read once (materialised, then seeked by key), never scanned again for every
    record: in an earlier form of this query (55e642d), the raw key column's superset filter
    inside the most_recent window made SQLite flatten that window and scan it per record (1M
    users, 1% changed: 182 s for the query, against 4.5 s). Each must also read its source
    through the key column's index, not scan it whole."""
    project = copy_example(tmp_path)
    con = sqlite3.connect(project / "warehouse.db")
    con.executescript((project / "warehouse.sql").read_text())
    with con:
        con.execute("CREATE INDEX purchases_user ON purchases (user_id)")
    con.close()
    wh = open_warehouse(project)
    try:
        plan = explain(wh, wh.query("users", now=NOW, changed_since=SINCE,
                                    hash_kind="counts").select)
    finally:
        wh.close()
    print(*plan, sep="\n  ")
    scanned = [s for s in plan if s.endswith("LEFT-JOIN") and s.startswith(("SCAN", "top: SCAN"))]
    assert not scanned, plan
    assert any("USING INDEX purchases_user (user_id=?)" in s for s in plan), plan
    # Every subquery reads its source through the key column's index, the most_recent
    # window's included: its exact key-text test alone scanned all purchases (1M users, 1%
    # changed: the changed records' query 2.4 to 2.7 s, with the superset 1.35 to 1.6 s).
    tables = [s for s in plan if re.match(r"(top: )?SCAN [spn]\d+\b", s)]
    assert not tables, plan
    assert any(re.match(r"SEARCH s\d+ USING INDEX purchases_user", s) for s in plan), plan


def _order_by(wh: SqlWarehouse, stmt: Any) -> str:
    return str(stmt.compile(dialect=wh.engine.dialect)).rsplit("ORDER BY", 1)[1]


def _rows(wh: SqlWarehouse, stmt: Any) -> list[tuple[Any, ...]]:
    with wh.engine.connect() as conn:
        _register_sqlite_hash(conn)
        return [tuple(r) for r in conn.execute(stmt)]


def test_a_unique_key_orders_the_model_by_the_key_alone(tmp_path: Path) -> None:
    """An INTEGER PRIMARY KEY cannot repeat, so the values that order duplicates of a key
    (the same row always wins) are left out of the model's sort: the same rows, in the same
    order, from a sort of the key alone."""
    project = copy_example(tmp_path)
    con = sqlite3.connect(project / "warehouse.db")
    con.executescript((project / "warehouse.sql").read_text())
    con.close()
    wh = open_warehouse(project)
    try:
        assert wh._unique_key("users")
        ties = build_model_query(wh.project, "users", now=NOW, dialect="sqlite").select
        alone = wh.query("users", now=NOW).select
        assert "r.v0" in _order_by(wh, ties)
        assert "r.v" not in _order_by(wh, alone), _order_by(wh, alone)
        want = _rows(wh, ties)
        assert len(want) > 5 and _rows(wh, alone) == want
    finally:
        wh.close()


def test_a_key_that_can_repeat_keeps_the_values_in_its_order(tmp_path: Path) -> None:
    """A key column with no constraint: two rows of one key, and the tie is settled by the
    values, whichever row the table holds first."""
    project = copy_example(tmp_path)
    script = (project / "warehouse.sql").read_text().replace(
        "CREATE TABLE users (\n  id INTEGER PRIMARY KEY,", "CREATE TABLE users (\n  id INTEGER,")
    assert "  id INTEGER,\n  email" in script
    con = sqlite3.connect(project / "warehouse.db")
    con.executescript(script)
    with con:
        con.execute("DROP TRIGGER IF EXISTS users_touch")
        con.execute("INSERT INTO users SELECT id, 'a' || email, first_name, last_name, "
                    "country, updated_at FROM users WHERE id = 1")
    con.close()
    wh = open_warehouse(project)
    try:
        assert not wh._unique_key("users")
        query = wh.query("users", now=NOW)
        order = _order_by(wh, query.select)
        assert "r.v0" in order and "r.v1" in order
        email = 1 + query.properties.index("email")
        ones = [r[email] for r in _rows(wh, query.select) if r[0] == "1"]
        # the copy, inserted last, sorts first by its value ('aada@' < 'ada@')
        assert ones == ["aada@example.com", "ada@example.com"], ones
    finally:
        wh.close()
