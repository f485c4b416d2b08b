"""Key identity through the CLI: a key is one canonical text on every side of a read, compared
and sorted in byte order whatever the column's collation or type (issue 8, items 1 to 3).

Each test builds the example project's two tables with the column types or collations of the
case, plans, applies against the emulator, and checks what Braze received and that a second
plan with no warehouse change says "No changes".
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from brazecfg.warehouse.engine import SqlWarehouse
from tests.helpers import NOW, cli, copy_example, emulator_get, plan_json

USERS = ("id, email, first_name, last_name, country, updated_at")
PURCHASES = ("id, user_id, product, amount, status, created_at, updated_at")
STAMP = "2026-01-05 09:00:00"
EVENTS = """events:
  - name: purchase_made
    source: purchases
    key: id
    time: created_at
    properties: {product: product}
"""


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(port=0)) as emu:
        monkeypatch.setenv("BRAZE_REST_ENDPOINT", emu.url)
        monkeypatch.delenv("BRAZE_API_KEY", raising=False)
        monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
        yield emu


def user(key: Any, first: str = "A") -> tuple[Any, ...]:
    return (key, f"{first.lower()}@example.com", first, "L", "GB", STAMP)


def purchase(pid: Any, user_id: Any, amount: float = 10.0) -> tuple[Any, ...]:
    return (pid, user_id, f"p{pid}", amount, "paid", "2026-02-01 10:00:00", STAMP)


def sqlite_project(tmp_path: Path, users_ddl: str, users: list[tuple[Any, ...]],
                   purchases_ddl: str, purchases: list[tuple[Any, ...]],
                   *, events: bool = False) -> Path:
    """The example project over a SQLite file with the given column declarations."""
    project = copy_example(tmp_path)
    con = sqlite3.connect(project / "warehouse.db")
    with con:
        con.execute(f"CREATE TABLE users ({users_ddl})")
        con.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)", users)
        con.execute(f"CREATE TABLE purchases ({purchases_ddl})")
        con.executemany("INSERT INTO purchases VALUES (?, ?, ?, ?, ?, ?, ?)", purchases)
    con.close()
    if events:
        add_events(project)
    return project


def add_events(project: Path) -> None:
    dest = project / "destinations" / "braze_users.yml"
    dest.write_text(dest.read_text() + EVENTS)


def users_ddl(key: str) -> str:
    return (f"id {key}, email TEXT, first_name TEXT, last_name TEXT, country TEXT, "
            "updated_at TEXT")


def purchases_ddl(key: str) -> str:
    return (f"id INTEGER, user_id {key}, product TEXT, amount REAL, status TEXT, "
            "created_at TEXT, updated_at TEXT")


def apply(project: Path) -> str:
    out = cli("apply", str(project), "--auto-approve", "--now", NOW)
    assert out.exit_code == 0, out.output
    return out.output



def assert_no_changes(project: Path) -> None:
    """No changes, on the incremental read (keys-only stream) and on a full read."""
    for extra in ((), ("--full-refresh",)):
        again = cli("plan", str(project), "--now", NOW, "--detailed-exitcode", *extra)
        assert again.exit_code == 0, again.output
        assert "No changes" in again.output


def braze_users(emulator: Emulator) -> dict[str, dict[str, Any]]:
    return {u["external_id"]: u for u in emulator_get(emulator.url, "users")["users"]}


def sent_events(emulator: Emulator) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for r in emulator_get(emulator.url, "requests")["requests"]:
        if r["path"] == "/users/track" and r["body"]:
            out += r["body"].get("events", []) + r["body"].get("purchases", [])
    return out


CASE_KEYS = [user("Bob", "Bob"), user("bob", "bobby"), user("alice", "Alice"),
             user("BOB", "Upper")]
CASE_PURCHASES = [purchase(1, "Bob", 100.0), purchase(2, "bob", 1.0), purchase(3, "bob", 2.0),
                  purchase(4, "alice", 5.0)]


def check_case_keys(project: Path, emulator: Emulator) -> None:
    first = plan_json(project)
    assert first["counts"]["create"] == 4, first
    apply(project)
    got = braze_users(emulator)
    assert sorted(got) == ["BOB", "Bob", "alice", "bob"]
    assert got["Bob"]["attributes"]["first_name"] == "Bob"
    assert got["bob"]["attributes"]["first_name"] == "bobby"
    # each key gets its own purchases, not those of a key equal to it but for case
    assert got["Bob"]["attributes"]["lifetime_value"] == 100
    assert got["bob"]["attributes"]["lifetime_value"] == 3
    assert got["bob"]["attributes"]["purchase_count"] == 2
    assert got["BOB"]["attributes"]["purchase_count"] == 0
    assert_no_changes(project)  # sync mode: before the fix, 'Bob' was planned for deletion
    assert sorted(braze_users(emulator)) == ["BOB", "Bob", "alice", "bob"]


def test_sqlite_nocase_keys_are_distinct_users_and_stay(tmp_path: Path,
                                                       emulator: Emulator) -> None:
    project = sqlite_project(tmp_path, users_ddl("TEXT COLLATE NOCASE"), CASE_KEYS,
                             purchases_ddl("TEXT COLLATE NOCASE"), CASE_PURCHASES, events=True)
    check_case_keys(project, emulator)
    by_user: dict[str, int] = {}
    for e in sent_events(emulator):
        by_user[e["external_id"]] = by_user.get(e["external_id"], 0) + 1
    assert by_user == {"Bob": 1, "bob": 2, "alice": 1}
    # an incremental second read (keys-only stream, events merge) changes nothing either
    apply(project)
    assert len(sent_events(emulator)) == 4


def test_duckdb_nocase_keys_are_distinct_users_and_stay(tmp_path: Path,
                                                       emulator: Emulator) -> None:
    import duckdb

    project = copy_example(tmp_path)
    con = duckdb.connect(str(project / "warehouse.duckdb"))
    con.execute(f"CREATE TABLE users ({users_ddl('VARCHAR COLLATE NOCASE')})")
    con.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)", CASE_KEYS)
    con.execute("CREATE TABLE purchases (id INTEGER, user_id VARCHAR COLLATE NOCASE, "
                "product VARCHAR, amount DOUBLE, status VARCHAR, created_at VARCHAR, "
                "updated_at VARCHAR)")
    con.executemany("INSERT INTO purchases VALUES (?, ?, ?, ?, ?, ?, ?)", CASE_PURCHASES)
    con.close()
    (project / "apps" / "warehouse.yml").write_text(
        "kind: app\nname: warehouse\ntype: duckdb\noptions: {path: warehouse.duckdb}\n")
    add_events(project)
    check_case_keys(project, emulator)
    assert len(sent_events(emulator)) == 4


def test_postgres_icu_case_insensitive_keys_are_distinct_users_and_stay(
        tmp_path: Path, emulator: Emulator, postgres_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    schema = "keys_icu"
    with psycopg.connect(postgres_url.replace("postgresql+psycopg", "postgresql")) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE COLLATION {schema}.ci (provider = icu, locale = 'und-u-ks-level2', "
                     "deterministic = false)")
        conn.execute(f"CREATE TABLE {schema}.users (id TEXT COLLATE {schema}.ci, email TEXT, "
                     "first_name TEXT, last_name TEXT, country TEXT, updated_at TEXT)")
        conn.execute(f"CREATE TABLE {schema}.purchases (id INTEGER, user_id TEXT COLLATE "
                     f"{schema}.ci, product TEXT, amount DOUBLE PRECISION, status TEXT, "
                     "created_at TEXT, updated_at TEXT)")
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {schema}.users VALUES (%s, %s, %s, %s, %s, %s)",
                            CASE_KEYS)
            cur.executemany(f"INSERT INTO {schema}.purchases VALUES (%s, %s, %s, %s, %s, %s, %s)",
                            CASE_PURCHASES)
        # the trap is real: the column's own collation takes 'Bob' and 'bob' for one key
        one = conn.execute(f"SELECT count(DISTINCT id) FROM {schema}.users").fetchone()
        assert one is not None and one[0] == 2
    project = copy_example(tmp_path)
    (project / "apps" / "warehouse.yml").write_text(
        "kind: app\nname: warehouse\ntype: postgres\noptions:\n"
        "  url: \"{{ env('BRAZECFG_TEST_KEYS_PG_URL') }}\"\n")
    sources = project / "sources" / "users.yml"
    sources.write_text(sources.read_text().replace("table: users", f"table: {schema}.users")
                       .replace("table: purchases", f"table: {schema}.purchases"))
    monkeypatch.setenv("BRAZECFG_TEST_KEYS_PG_URL", postgres_url)
    add_events(project)
    check_case_keys(project, emulator)
    assert len(sent_events(emulator)) == 4


def test_sqlite_text_keys_never_match_an_integer_foreign_key_by_affinity(
        tmp_path: Path, emulator: Emulator) -> None:
    # '1', '01' and '001' are three users; purchases.user_id INTEGER 1 belong to '1' only
    project = sqlite_project(
        tmp_path, users_ddl("TEXT"), [user("1"), user("01"), user("001")],
        purchases_ddl("INTEGER"), [purchase(1, 1), purchase(2, 1), purchase(3, 1)],
        events=True)
    apply(project)
    got = braze_users(emulator)
    assert sorted(got) == ["001", "01", "1"]
    assert got["1"]["attributes"]["purchase_count"] == 3
    assert got["01"]["attributes"]["purchase_count"] == 0
    assert got["001"]["attributes"]["purchase_count"] == 0
    assert {e["external_id"] for e in sent_events(emulator)} == {"1"}
    assert_no_changes(project)


def test_sqlite_integer_keys_never_match_padded_text_foreign_keys(
        tmp_path: Path, emulator: Emulator) -> None:
    # the types reversed: users.id INTEGER 1, purchases.user_id TEXT '1', '01', '001'
    project = sqlite_project(
        tmp_path, users_ddl("INTEGER"), [user(1), user(2, "B")],
        purchases_ddl("TEXT"), [purchase(1, "1"), purchase(2, "01"), purchase(3, "001")],
        events=True)
    first = plan_json(project)
    assert first["issues"]["count"] == 0  # no false "duplicate primary key"
    apply(project)
    got = braze_users(emulator)
    assert sorted(got) == ["1", "2"]  # no ghost user '01'
    assert got["1"]["attributes"]["purchase_count"] == 1
    assert {e["external_id"] for e in sent_events(emulator)} == {"1"}
    assert_no_changes(project)


def test_an_event_user_stored_as_real_goes_to_the_user_not_a_phantom(
        tmp_path: Path, emulator: Emulator) -> None:
    project = sqlite_project(
        tmp_path, users_ddl("INTEGER"), [user(1), user(2, "B")],
        purchases_ddl("REAL"), [purchase(1, 1.0), purchase(2, 2.0), purchase(3, 3.0)],
        events=True)
    apply(project)
    got = braze_users(emulator)
    assert sorted(got) == ["1", "2"]  # before: a phantom user "1.0" got the event
    assert sorted(e["external_id"] for e in sent_events(emulator)) == ["1", "2"]
    assert got["1"]["attributes"]["purchase_count"] == 1
    assert_no_changes(project)


def test_reloading_the_key_column_as_real_changes_no_key(tmp_path: Path,
                                                        emulator: Emulator) -> None:
    project = sqlite_project(
        tmp_path, users_ddl("INTEGER"), [user(1), user(2, "B"), user(3, "C")],
        purchases_ddl("INTEGER"), [purchase(1, 1), purchase(2, 2)])
    apply(project)
    con = sqlite3.connect(project / "warehouse.db")
    with con:  # a loader rewrites both tables with REAL keys
        con.execute("ALTER TABLE users RENAME TO old_users")
        con.execute(f"CREATE TABLE users ({users_ddl('REAL')})")
        con.execute(f"INSERT INTO users SELECT {USERS} FROM old_users")
        con.execute("DROP TABLE old_users")
        con.execute("ALTER TABLE purchases RENAME TO old_purchases")
        con.execute(f"CREATE TABLE purchases ({purchases_ddl('REAL')})")
        con.execute(f"INSERT INTO purchases SELECT {PURCHASES} FROM old_purchases")
        con.execute("DROP TABLE old_purchases")
        assert con.execute("SELECT typeof(id) FROM users").fetchone() == ("real",)
    con.close()
    for extra in ((), ("--full-refresh",)):
        d = plan_json(project, *extra)
        assert d["counts"]["delete"] == 0 and d["counts"]["create"] == 0, d
    assert_no_changes(project)


def test_a_fractional_key_is_refused_with_a_located_error(tmp_path: Path,
                                                         emulator: Emulator) -> None:
    project = sqlite_project(tmp_path, users_ddl("REAL"), [user(1.0), user(1.5, "B")],
                             purchases_ddl("INTEGER"), [])
    out = cli("plan", str(project), "--now", NOW)
    assert out.exit_code == 1
    assert "key column 'id' of source/users_table holds 1.5" in out.output
    assert "whole number" in out.output
    assert "Traceback" not in out.output


def test_duplicate_primary_keys_keep_the_same_row_whatever_the_physical_order(
        tmp_path: Path, emulator: Emulator) -> None:
    rows = [user(1, "Zed"), user(1, "Amy"), user(2, "B")]
    project = sqlite_project(tmp_path, users_ddl("INTEGER"), rows,
                             purchases_ddl("INTEGER"), [])
    d = plan_json(project)
    assert any("duplicate primary key" in i["reason"] for i in d["issues"]["first"]), d["issues"]
    apply(project)
    assert braze_users(emulator)["1"]["attributes"]["first_name"] == "Amy"
    con = sqlite3.connect(project / "warehouse.db")
    with con:  # the loader rewrites the table with the rows in the other order
        con.execute("DELETE FROM users")
        con.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)", list(reversed(rows)))
    con.close()
    d = plan_json(project, "--full-refresh")
    assert d["counts"]["update"] == 0, d
    assert braze_users(emulator)["1"]["attributes"]["first_name"] == "Amy"


def test_nocase_event_keys_are_sent_once_each_however_often_apply_runs(
        tmp_path: Path, emulator: Emulator) -> None:
    ddl = ("id TEXT COLLATE NOCASE, user_id INTEGER, product TEXT, amount REAL, status TEXT, "
           "created_at TEXT, updated_at TEXT")
    rows = [purchase("ord-B", 1), purchase("ord-a", 1), purchase("ord-A", 2),
            purchase("Ord-a", 2), purchase("ord-b", 1)]
    project = sqlite_project(tmp_path, users_ddl("INTEGER"), [user(1), user(2, "B")],
                             ddl, rows, events=True)
    for _ in range(3):
        apply(project)
    keys = sorted(e["properties"]["product"] for e in sent_events(emulator))
    assert keys == sorted(f"p{r[0]}" for r in rows)  # each row once, none twice
    assert_no_changes(project)


def test_most_recent_ties_equal_but_for_case_always_pick_the_same_value(
        tmp_path: Path, emulator: Emulator) -> None:
    ddl = ("id INTEGER, user_id INTEGER, product TEXT COLLATE NOCASE, amount REAL, "
           "status TEXT, created_at TEXT, updated_at TEXT")
    rows = [(1, 1, "Pro", 1.0, "paid", "2026-02-01 10:00:00", STAMP),
            (2, 1, "pro", 1.0, "paid", "2026-02-01 10:00:00", STAMP)]
    seen = []
    for order in (rows, list(reversed(rows))):
        project = sqlite_project(tmp_path / str(len(seen)), users_ddl("INTEGER"), [user(1)],
                                 ddl, order)
        d = plan_json(project)
        assert d["counts"]["create"] == 1
        out = cli("plan", str(project), "--now", NOW)
        seen.append("last_product=\"pro\"" in out.output)
    assert seen == [True, True]  # the greatest in byte order, whatever the row order


@pytest.mark.parametrize("key_ddl", ["", "INTEGER", "TEXT", "REAL"],
                         ids=["untyped", "integer", "text", "real"])
def test_an_incremental_read_aggregates_every_row_of_a_changed_key_whatever_its_type(
        tmp_path: Path, emulator: Emulator, key_ddl: str) -> None:
    """An incremental read finds the related rows of the changed keys through the raw key
    column first (an index on it seeks them, SQLite), then the key text: a row whose key is
    stored as 3, '3' or 3.0 (one key, '3') is aggregated with the others, in every column
    type, so the incremental plan is the full read's."""
    users = [user(1, "One"), user(3, "Three")]
    purchases = [purchase(1, 3, 1.0), purchase(2, "3", 2.0), purchase(3, 3.0, 4.0),
                 purchase(4, 1, 8.0)]
    project = sqlite_project(tmp_path, users_ddl("INTEGER PRIMARY KEY"), users,
                             purchases_ddl(key_ddl), purchases)
    apply(project)
    con = sqlite3.connect(project / "warehouse.db")
    with con:  # one of user 3's rows changes, with a new stamp
        con.execute("UPDATE purchases SET amount = 16.0, updated_at = '2026-11-30 00:00:00' "
                    "WHERE id = 1")
    con.close()
    inc, full = plan_json(project), plan_json(project, "--full-refresh")
    assert inc["read_since"] is not None and full["read_since"] is None
    assert inc["counts"]["update"] == 1 and inc["fields_set"] == {"lifetime_value": 1}, inc
    assert inc["digest"] == full["digest"], (inc, full)
    # The counts the diff in the warehouse computes, joined on the raw values for a column
    # of numbers, are those apply stored (a GROUP BY on key text): as many rows leave it as
    # with that join turned off (a counts hash that differed would add every key)
    assert inc["compared_in"] == "warehouse", inc
    with pytest.MonkeyPatch.context() as m:
        m.setattr(SqlWarehouse, "_numeric_keys", lambda self, model: frozenset())
        assert plan_json(project)["rows_read"] == inc["rows_read"], inc
    apply(project)
    # 16 + 2 + 4; a TEXT column stores 3.0 as the text '3.0', another key (no such user)
    want = 18 if key_ddl == "TEXT" else 22
    assert braze_users(emulator)["3"]["attributes"]["lifetime_value"] == want
