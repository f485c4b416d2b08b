"""The diff of an incremental read run in the warehouse (README "How it works"): a SQLite
warehouse attaches the local state's file, and a warehouse keeping the state in its own
database reads it there, so the related-row counts of every record are compared with the
state's in one query and only the keys whose hashes differ leave the warehouse.

What it must never change is the plan: each test plans the same project both ways (the
join in the warehouse, and the merge of every key in brazecfg) and requires the same plan,
digest included, across the cases the join must get right: a deleted user, a row that
arrived late with an old stamp, a related row moved between users without a stamp, a
changed row whose counts did not change, a record Braze rejected last time, create intents
left by a crash (with and without a confirmed record), group members, and additive mode.

A model that cannot read incrementally (no ``updated_at``) compares the hashes of every
record's values on each full read; that diff runs in the warehouse the same way (the last
tests here)."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from brazecfg.config.loader import load_project
from brazecfg.state.ledger import Ledger
from brazecfg.warehouse.connect import connect
from brazecfg.warehouse.engine import SqlWarehouse
from tests.helpers import NOW, cli, emulated_example, plan_json, settle_stamps, sql, unhashed


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from emulated_example(tmp_path, monkeypatch)


def _plan(project: Path) -> tuple[dict[str, object], str]:
    out = cli("plan", str(project), "--now", NOW, "--format", "json")
    assert out.exit_code in (0, 2), out.output
    text = cli("plan", str(project), "--now", NOW)
    assert text.exit_code in (0, 2), text.output
    return json.loads(out.stdout)["destinations"][0], text.stdout


def both_ways(project: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """The plan with the diff in the warehouse, checked equal to the merge in brazecfg."""
    joined, joined_text = _plan(project)
    with monkeypatch.context() as m:
        m.setattr(SqlWarehouse, "joins_state", lambda self, state, kind="counts": False)
        merged, merged_text = _plan(project)
    assert joined["compared_in"] == "warehouse", joined
    assert merged["compared_in"] == "brazecfg", merged
    same = {"compared_in": None, "rows_read": None}
    assert {**joined, **same} == {**merged, **same}
    # only the keys whose hash differs left the warehouse, not every key
    assert joined["rows_read"] < merged["rows_read"], (joined, merged)  # type: ignore[operator]
    assert joined_text.replace("with the state's in the warehouse", "in the warehouse") == (
        merged_text)
    return joined


def apply(project: Path) -> None:
    out = cli("apply", str(project), "--auto-approve", "--now", NOW)
    assert out.exit_code == 0, out.output


def ledger_sql(project: Path, statement: str, params: tuple[object, ...] = ()) -> None:
    con = sqlite3.connect(project / ".brazecfg" / "ledger.sqlite")
    with con:
        con.execute(statement, params)
    con.close()


@pytest.mark.parametrize("index", [False, True], ids=["counts-grouped", "counts-seeked"])
def test_the_join_in_the_warehouse_plans_what_the_merge_plans(
        project: Path, monkeypatch: pytest.MonkeyPatch, index: bool) -> None:
    """With an index on the related rows' key column, each user's purchases are counted by
    one seek of it (a correlated count); without, all of them are grouped once."""
    if index:
        sql(project, "CREATE INDEX purchases_user ON purchases (user_id)")
    p = load_project(project)
    wh = connect(p.apps["warehouse"], p)
    assert isinstance(wh, SqlWarehouse)
    assert wh._indexed_keys("users") == ({"purchases"} if index else frozenset())
    wh.close()
    settle_stamps(project)
    apply(project)
    assert both_ways(project, monkeypatch)["counts"]["unchanged"] == 12  # type: ignore[index]

    sql(project, "DELETE FROM users WHERE id = 2")  # gone: a deletion
    sql(project, "INSERT INTO users VALUES (13, 'ken@example.com', 'Ken', 'Thompson', 'US', "
                 "'2026-01-01 00:00:00')")  # late: an old stamp, found by its key
    sql(project, "UPDATE purchases SET user_id = 3 WHERE id = 6")  # moved, stamp kept
    sql(project, "UPDATE users SET last_name = 'Liskov-Smith', updated_at = datetime('now') "
                 "WHERE id = 5")  # changed row, same counts: its state record is loaded
    d = both_ways(project, monkeypatch)
    counts = d["counts"]
    assert counts["delete"] == 1 and counts["create"] == 1, d  # type: ignore[index]
    assert counts["update"] == 3, d  # type: ignore[index]  # 3 and 4 (moved), 5 (renamed)
    assert d["fields_set"]["last_name"] == 2, d  # type: ignore[index]  # 5, and 13 created
    apply(project)
    assert both_ways(project, monkeypatch)["counts"]["unchanged"] == 12  # type: ignore[index]


@pytest.mark.parametrize("blob", [False, True], ids=["text", "a-blob-among-them"])
def test_a_text_primary_key_is_joined_as_an_integer_one_is(
        project: Path, monkeypatch: pytest.MonkeyPatch, blob: bool) -> None:
    """A primary table whose key is its one primary key column (an INTEGER PRIMARY KEY, as
    above, or text NOT NULL) is read in the order of that key's index, and joined in two
    halves on SQLite: its keys against the state, and the state's keys that no row has, each
    found by seeking the table's key. A key stored as a BLOB (text affinity keeps one) has
    the key text of its bytes, but SQLite orders BLOBs after every text: with one, every
    plan failed ("rows out of key order ('4' after '9')"); the table is now read as any
    other, and the BLOB-keyed user is one user, not one deleted and one created."""
    settle_stamps(project)
    four = "CAST('4' AS BLOB)" if blob else "'4'"
    sql(project, "ALTER TABLE users RENAME TO old_users")
    sql(project, "CREATE TABLE users (id TEXT NOT NULL PRIMARY KEY, email TEXT, "
                 "first_name TEXT, last_name TEXT, country TEXT, updated_at TEXT NOT NULL)")
    sql(project, "INSERT INTO users SELECT CAST(id AS TEXT), email, first_name, last_name, "
                 "country, updated_at FROM old_users WHERE id != 4")
    sql(project, f"INSERT INTO users SELECT {four}, email, first_name, last_name, "
                 "country, updated_at FROM old_users WHERE id = 4")
    sql(project, "DROP TABLE old_users")
    apply(project)
    assert both_ways(project, monkeypatch)["counts"]["unchanged"] == 12  # type: ignore[index]

    sql(project, "DELETE FROM users WHERE id = '2'")
    sql(project, "INSERT INTO users VALUES ('13', 'ken@example.com', 'Ken', 'Thompson', 'US', "
                 "'2026-01-01 00:00:00')")
    sql(project, "UPDATE purchases SET user_id = 4 WHERE id = 9")  # from 6 to the user "4"
    d = both_ways(project, monkeypatch)
    counts = d["counts"]
    assert (counts["delete"], counts["create"]) == (1, 1), d  # type: ignore[index]
    assert counts["update"] == 2, d  # type: ignore[index]  # 4, and the user 6 left
    apply(project)
    assert both_ways(project, monkeypatch)["counts"]["unchanged"] == 12  # type: ignore[index]
    full = cli("plan", str(project), "--now", NOW, "--full-refresh", "--format", "json")
    assert full.exit_code == 0, full.output  # nothing changed, read in full


@pytest.mark.parametrize("column", ["purchases.user_id", "users.id"])
def test_a_key_stored_as_a_blob_is_read_as_its_text_by_the_incremental_read(
        project: Path, monkeypatch: pytest.MonkeyPatch, column: str) -> None:
    """A key whose value SQLite keeps as a BLOB (no affinity converts one) has the key text
    of its bytes, as a full read computes it. The incremental read finds the rows of the
    changed keys by seeking their text and whole number first; a BLOB is neither, so a
    purchase moved to user 4 as the BLOB '4' was left out of user 4's aggregates (the plan
    said nothing of its new purchase count) and, read by key, a user keyed by the BLOB '4'
    was not read at all. The incremental plan now says what a full read says."""
    settle_stamps(project)
    if column == "users.id":  # a column of no affinity keeps the BLOB as a BLOB
        sql(project, "ALTER TABLE users RENAME TO old_users")
        sql(project, "CREATE TABLE users (id NOT NULL, email TEXT, first_name TEXT, "
                     "last_name TEXT, country TEXT, updated_at TEXT NOT NULL)")
        sql(project, "INSERT INTO users SELECT CASE id WHEN 4 THEN CAST('4' AS BLOB) "
                     "ELSE id END, email, first_name, last_name, country, updated_at "
                     "FROM old_users")
        sql(project, "DROP TABLE old_users")
    apply(project)
    if column == "users.id":
        sql(project, "UPDATE purchases SET user_id = 4, updated_at = '2026-11-30 00:00:00' "
                     "WHERE id = 9")
    else:
        sql(project, "UPDATE purchases SET user_id = CAST('4' AS BLOB), "
                     "updated_at = '2026-11-30 00:00:00' WHERE id = 9")
    d = both_ways(project, monkeypatch)
    full = plan_json(project, "--full-refresh")
    assert d["counts"]["update"] == 2, d  # type: ignore[index]  # 4 gained what 6 lost
    for key in ("counts", "fields_set", "fields_removed", "group_joins", "group_leaves"):
        assert d[key] == full[key], (key, d[key], full[key])


def test_rejected_records_and_create_intents_are_read_again_when_their_hash_is_the_same(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record Braze rejected last time and an intent left by a crash are both read by key
    though their counts did not change; an intent for a user the state has confirmed is no
    create (the record is the truth)."""
    settle_stamps(project)
    apply(project)
    ledger_sql(project, "INSERT INTO failures VALUES ('braze_users', '7', 'rejected', "
                        "'2026-11-30T00:00:00Z')")
    sql(project, "INSERT INTO users VALUES (14, 'dennis@example.com', 'Dennis', 'Ritchie', "
                 "'US', '2026-01-01 00:00:00')")
    with Ledger(project / ".brazecfg" / "ledger.sqlite", writable=True) as led:
        led.add_intents("braze_users", ["14", "1"])  # 1 is confirmed
    d = both_ways(project, monkeypatch)
    assert d["counts"]["create"] == 1, d  # type: ignore[index]  # 14, once
    # 14 and the rejected 7, and those the state keeps no hash of (1 is confirmed: not read)
    assert d["read_by_key"] == len(unhashed(project) | {"14", "7"}), d


def test_group_members_and_additive_mode(project: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    """Members of a synced group are counted from the state's group sets (the plan shows
    them, the leave guardrail divides by them), and additive mode keeps what left."""
    settle_stamps(project)
    apply(project)
    # purchases moved without a stamp: user 7 leaves high_value, user 8 joins it
    sql(project, "UPDATE purchases SET user_id = 8 WHERE id = 11")
    d = both_ways(project, monkeypatch)
    assert d["group_joins"] == {"high_value": 1} and d["group_leaves"] == {"high_value": 1}, d
    dest = project / "destinations" / "braze_users.yml"
    dest.write_text(re.sub(r"mode: sync\b", "mode: additive", dest.read_text()))
    apply(project)  # the config changed: a full read, which records it
    sql(project, "DELETE FROM users WHERE id = 10")
    d = both_ways(project, monkeypatch)
    assert d["counts"]["kept"] == 1 and d["counts"]["delete"] == 0, d  # type: ignore[index]


def test_a_key_that_repeats_is_read_by_key_on_every_run(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A query source can repeat a key (no primary key constrains it): the join keeps such a
    key as changed, so it is read by key every time (which of its rows wins is settled
    there), as the merge does; and the plan reports the duplicate as a full read does."""
    settle_stamps(project)
    src = project / "sources" / "users.yml"
    text = src.read_text()
    assert "table: users" in text
    src.write_text(text.replace("table: users", "query: SELECT * FROM users"))
    apply(project)
    sql(project, "CREATE TABLE extra AS SELECT * FROM users WHERE id = 6")
    src.write_text(src.read_text().replace("query: SELECT * FROM users",
                                           "query: SELECT * FROM users UNION ALL "
                                           "SELECT * FROM extra"))
    apply(project)  # the config changed: a full read
    d = both_ways(project, monkeypatch)
    assert d["read_by_key"] == len(unhashed(project) | {"6"}), d  # 6: every time
    # reported and skipped as a full read reports it (read by key, it used to go unsaid)
    out = cli("plan", str(project), "--now", NOW, "--format", "json", "--full-refresh")
    full = json.loads(out.stdout)["destinations"][0]
    for plan in (d, full):
        assert plan["counts"]["skipped"] == 1, plan  # type: ignore[index]
        assert any(i["external_id"] == "6" and "duplicate primary key" in i["reason"]
                   for i in plan["issues"]["first"]), plan  # type: ignore[index]


STAMPS = ["UPDATE purchases SET updated_at = '2026-01-05 09:00:00'",
          "UPDATE users SET updated_at = '2026-01-06 00:00:00' WHERE id = 12"]
CHANGES = ["DELETE FROM users WHERE id = 2",
           "INSERT INTO users VALUES (13, 'ken@example.com', 'Ken', 'Thompson', 'US', "
           "'2026-01-01 00:00:00')",
           "UPDATE purchases SET user_id = 3 WHERE id = 6",
           "UPDATE users SET last_name = 'Liskov-Smith', updated_at = '2026-11-30 00:00:00' "
           "WHERE id = 5"]


def _state_in_the_warehouse(project: Path) -> None:
    settings = project / "brazecfg.yml"
    settings.write_text(settings.read_text() + "state:\n  backend: warehouse\n  app: warehouse\n")


def _warehouse(project: Path, warehouse: str, monkeypatch: pytest.MonkeyPatch,
               request: pytest.FixtureRequest) -> Callable[[list[str]], None]:
    """The example's tables in ``warehouse`` (sqlite: its own file, stamps settled; duckdb:
    a DuckDB file; postgres: schema ``joined`` of the test server), the project pointed at
    it; returns what runs SQL statements there."""
    from tests.test_warehouses_agree import portable_sql, use_warehouse

    if warehouse == "sqlite":
        def run(statements: list[str]) -> None:
            for statement in statements:
                sql(project, statement)
        settle_stamps(project)
    elif warehouse == "duckdb":
        import duckdb

        def run(statements: list[str]) -> None:
            con = duckdb.connect(str(project / "warehouse.duckdb"))
            for statement in statements:
                con.execute(statement)
            con.close()
        run(portable_sql(project))
        use_warehouse(project, "kind: app\nname: warehouse\ntype: duckdb\n"
                               "options: {path: warehouse.duckdb}\n")
    else:
        import psycopg

        url: str = request.getfixturevalue("postgres_url")

        def run(statements: list[str]) -> None:
            with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
                conn.execute("SET search_path TO joined")
                for statement in statements:
                    conn.execute(statement)  # type: ignore[arg-type]
        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
            conn.execute("DROP SCHEMA IF EXISTS joined CASCADE")
            conn.execute("DROP SCHEMA IF EXISTS brazecfg CASCADE")
            conn.execute("CREATE SCHEMA joined")
        run(portable_sql(project))
        use_warehouse(project, "kind: app\nname: warehouse\ntype: postgres\noptions:\n"
                               "  url: \"{{ env('BRAZECFG_JOINED_PG_URL') }}\"\n")
        monkeypatch.setenv("BRAZECFG_JOINED_PG_URL", url)
        sources = project / "sources" / "users.yml"
        sources.write_text(sources.read_text().replace("table: users", "table: joined.users")
                           .replace("table: purchases", "table: joined.purchases"))
    return run


@pytest.mark.parametrize("warehouse", ["sqlite", "duckdb", "postgres"])
def test_a_state_kept_in_the_warehouse_itself_is_joined_there(
        project: Path, monkeypatch: pytest.MonkeyPatch, warehouse: str,
        request: pytest.FixtureRequest) -> None:
    """SQLite attaches its own file (the state's tables are in it, prefixed); DuckDB and
    PostgreSQL read the state's schema in their own database."""
    run = _warehouse(project, warehouse, monkeypatch, request)
    _state_in_the_warehouse(project)
    monkeypatch.setenv("BRAZECFG_HASH_KEY", "a-shared-hash-key-for-this-test")
    run(STAMPS)
    apply(project)
    assert both_ways(project, monkeypatch)["counts"]["unchanged"] == 12  # type: ignore[index]
    run(CHANGES)
    d = both_ways(project, monkeypatch)
    counts = d["counts"]
    assert counts["delete"] == 1 and counts["create"] == 1, d  # type: ignore[index]
    assert counts["update"] == 3, d  # type: ignore[index]
    apply(project)
    assert both_ways(project, monkeypatch)["counts"]["unchanged"] == 12  # type: ignore[index]


def test_apply_joins_a_snapshot_of_its_local_state_and_a_plan_the_file_itself(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Apply holds the lease and renews it in the state's own file. Had the joined query read
    that file, its shared lock would hold each renewal's commit for as long as the query
    runs, and past the lock wait (30 s, a query of a few million records here) the renewal
    fails and the lease expires, so apply stops at its next write. Apply's join reads a copy
    of the file, taken inside a read transaction (no commit lands during the copy; only this
    process writes the state, under the lease); a plan reads the file itself. This checks
    which file each joined; the race itself needs a query longer than the lock wait."""
    settle_stamps(project)
    apply(project)
    real = SqlWarehouse.stream_hash_changes
    attached: list[Path | None] = []

    def spy(self: SqlWarehouse, *args: object, **kwargs: object) -> Iterator[object]:
        attached.append(kwargs["state"].attach)  # type: ignore[attr-defined]
        return real(self, *args, **kwargs)  # type: ignore[arg-type]
    monkeypatch.setattr(SqlWarehouse, "stream_hash_changes", spy)
    sql(project, "UPDATE users SET last_name = 'Liskov-Smith', updated_at = datetime('now') "
                 "WHERE id = 5")
    ledger_file = (project / ".brazecfg" / "ledger.sqlite").resolve()
    assert cli("plan", str(project), "--now", NOW).exit_code == 0
    assert [a.resolve() for a in attached if a] == [ledger_file], attached
    apply(project)
    assert len(attached) == 2 and attached[1] is not None, attached
    assert attached[1].resolve() != ledger_file and not attached[1].exists()  # removed after
    assert "No changes" in cli("plan", str(project), "--now", NOW).stdout


def test_apply_merges_in_brazecfg_when_the_state_cannot_be_copied(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No room for the copy of the state (the temporary directory full): apply does not stop
    with an OSError, it compares the hashes in brazecfg instead, and plans the same."""
    import brazecfg.state.ledger as ledger_mod

    settle_stamps(project)
    apply(project)

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")
    sql(project, "UPDATE users SET last_name = 'Liskov-Smith', updated_at = datetime('now') "
                 "WHERE id = 5")
    with monkeypatch.context() as m:
        m.setattr(ledger_mod.shutil, "copyfile", full)
        out = cli("apply", str(project), "--auto-approve", "--now", NOW)
    assert out.exit_code == 0, out.output
    assert "1 updated" in out.stdout, out.stdout
    assert "No changes" in cli("plan", str(project), "--now", NOW).stdout


def _no_stamps(project: Path) -> None:
    """No source declares updated_at: every plan is a full read, comparing value hashes."""
    src = project / "sources" / "users.yml"
    src.write_text("\n".join(line for line in src.read_text().splitlines()
                             if not line.strip().startswith("updated_at:")) + "\n")


VALUE_CHANGES = [
    "DELETE FROM users WHERE id = 2",  # gone
    "INSERT INTO users VALUES (13, 'ken@example.com', 'Ken', 'Thompson', 'US', "
    "'2026-01-01 00:00:00')",  # new
    "UPDATE users SET last_name = 'Liskov-Smith' WHERE id = 5",  # a value, no stamp needed
    "UPDATE purchases SET user_id = 3 WHERE id = 6",  # moved: both users' aggregates
    "UPDATE purchases SET amount = amount + 1000 WHERE id = 12",  # 9's ltv: joins high_value
]


@pytest.mark.parametrize("warehouse", ["duckdb", "postgres"])
def test_a_full_read_compares_value_hashes_in_the_warehouse(
        project: Path, monkeypatch: pytest.MonkeyPatch, warehouse: str,
        request: pytest.FixtureRequest) -> None:
    """Without updated_at, each plan reads in full and compares every record's value hash
    (values and group flags) with the state's. In the warehouse only the keys whose hash
    differs leave it, and the plan is the merge's, digest included: a deletion, a new user,
    a changed value, aggregates moved between users, a user joining a group; then no change
    at all, where nothing leaves the warehouse. DuckDB and PostgreSQL with the state in
    their own database (SQLite merges value hashes in brazecfg: the next test)."""
    _no_stamps(project)
    run = _warehouse(project, warehouse, monkeypatch, request)
    _state_in_the_warehouse(project)
    monkeypatch.setenv("BRAZECFG_HASH_KEY", "a-shared-hash-key-for-this-test")
    apply(project)  # the first run: reads everything, records every value hash
    apply(project)  # records the hashes of records confirmed before they had one, if any
    quiet = both_ways(project, monkeypatch)
    assert quiet["compared"] == "values" and quiet["read_since"] is None, quiet
    assert quiet["counts"]["unchanged"] == 12, quiet  # type: ignore[index]
    # only user 11 leaves the warehouse, twice (its key, then its row): its email is not
    # valid, so it keeps no hash and is read by key on every run
    assert (quiet["read_by_key"], quiet["rows_read"]) == (1, 2), quiet
    run(VALUE_CHANGES)
    d = both_ways(project, monkeypatch)
    counts = d["counts"]
    assert (counts["delete"], counts["create"]) == (1, 1), d  # type: ignore[index]
    assert counts["update"] == 4, d  # type: ignore[index]  # 3 and 4 (moved), 5, 9
    assert counts["unchanged"] == 12 - 1 - 4, d  # type: ignore[index]
    assert d["group_joins"] == {"high_value": 1}, d
    # what left the warehouse: the 7 keys whose hash differs (2, 3, 4, 5, 9, 13, and 11
    # without a hash), then the 6 of them still in the model, read by key; not the other 6
    assert (d["read_by_key"], d["rows_read"]) == (6, 7 + 6), d
    apply(project)
    after = both_ways(project, monkeypatch)
    assert after["counts"]["unchanged"] == 12, after  # type: ignore[index]
    assert (after["read_by_key"], after["rows_read"]) == (1, 2), after


def test_sqlite_merges_value_hashes_in_brazecfg_and_joins_counts(project: Path) -> None:
    """SQLite joins the attached state for related-row counts (incremental reads) but not for
    value hashes: that join was measured slower than the merge at 1M users (the file is read
    in this process either way, and computing every record's values and hash is most of
    the time). The same local state and warehouse, with and without updated_at."""
    settle_stamps(project)
    apply(project)
    sql(project, "UPDATE users SET last_name = 'Liskov-Smith', updated_at = '2026-11-30 "
                 "00:00:00' WHERE id = 5")
    incremental = plan_json(project)
    assert (incremental["compared"], incremental["compared_in"]) == ("counts", "warehouse")
    _no_stamps(project)
    apply(project)  # the config changed: a full read, recording value hashes
    sql(project, "UPDATE users SET last_name = 'Hopper-Smith' WHERE id = 3")
    full = plan_json(project)
    assert (full["compared"], full["compared_in"]) == ("values", "brazecfg"), full
    assert full["counts"]["update"] == 1 and full["read_by_key"] == 2, full  # 3, and 11


def test_progress_counts_the_rows_that_leave_the_warehouse_without_the_state_s_total(
        project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A diff in the warehouse sends only the keys that differ, so the rows read have no
    total. The state's record count was given as one, so a plan of 20 s at a million users
    showed "1,000 of ~1,000,000 rows read (89/s, about 3:06:31 left)". The progress counts
    (as --log-file records them) say so; the merge in brazecfg, which reads one hash a
    record, keeps the estimate."""
    import brazecfg.cli.progress

    monkeypatch.setattr(brazecfg.cli.progress, "LOG_EVERY", 0)  # a progress line a count
    settle_stamps(project)
    apply(project)
    sql(project, "UPDATE users SET last_name = 'Liskov-Smith', updated_at = datetime('now') "
                 "WHERE id = 5")

    def plan(log: Path) -> tuple[str, list[dict[str, object]]]:
        out = cli("--log-file", str(log), "plan", str(project), "--now", NOW,
                  "--format", "json")
        assert out.exit_code in (0, 2), out.output
        dest = json.loads(out.stdout)["destinations"][0]
        assert dest["counts"]["update"] == 1, dest
        entries = [json.loads(line) for line in log.read_text().splitlines()]
        return dest["compared_in"], [e for e in entries if e["event"] == "progress"
                                     and (e["phase"], e["kind"]) == ("plan", "records")]

    compared_in, counts = plan(tmp_path / "joined.jsonl")
    assert compared_in == "warehouse" and counts, counts
    assert {e["total"] for e in counts} == {None}, counts
    with monkeypatch.context() as m:
        m.setattr(SqlWarehouse, "joins_state", lambda self, state, kind="counts": False)
        compared_in, counts = plan(tmp_path / "merged.jsonl")
    assert compared_in == "brazecfg" and counts, counts
    assert {e["total"] for e in counts} == {12}, counts
