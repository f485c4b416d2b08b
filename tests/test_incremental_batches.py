"""An incremental read on SQLite reads its changed records a bounded batch of keys at a time
(issue 9: memory flat up to 10M users), through the CLI.

One query over every changed key held, per source whose key column SQLite seeks with an OR
of IN lists, a RowSet of every rowid it met: 17 MB at 10M users, growing with the records
read again. Now the changed keys are read first, in byte order, and the records a batch of
them at a time, in one read transaction. These tests check what the batches bind (each at
most the batch's size, together every changed key once, in byte order) and that the plan is
the one a single batch, and a full read, give, over keys whose orders differ by collation,
case and type.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from brazecfg.config.loader import load_project
from brazecfg.warehouse import engine as engine_module
from brazecfg.warehouse.compile import HASH_COUNTS, HASH_NONE, KEY_SLOT
from brazecfg.warehouse.connect import connect
from tests.helpers import NOW, cli, plan_json
from tests.test_key_identity import (
    apply,
    assert_no_changes,
    braze_users,
    emulator,  # noqa: F401  (the fixture)
    purchase,
    purchases_ddl,
    sqlite_project,
    user,
    users_ddl,
)

# Keys whose byte order differs from NOCASE's, from a locale's and from numbers' (10 < 9 as
# text), stored as text and as integers in an untyped column
KEYS: list[Any] = ["Bob", "bob", "BOB", "alice", "é", "e", "Z", 10, "9", "😀", "ﬀ", "a b",
                   7, "07"]
CHANGED_USERS = ["bob", "é", "9", "😀", "07"]
CHANGED_PURCHASE_OF = [10, "Z"]  # a related row changes: its user is read again
NEW_STAMP = "2026-11-30 00:00:00"


def key_text(key: Any) -> str:
    return key if isinstance(key, str) else str(key)


@pytest.fixture
def project(tmp_path: Path, emulator: Any) -> Path:  # noqa: F811
    users = [user(k, f"U{i}") for i, k in enumerate(KEYS)]
    # two purchases per key, the second stored as text where the key is a number
    purchases = [purchase(2 * i + j, k if j == 0 else key_text(k), float(i + j))
                 for i, k in enumerate(KEYS) for j in (0, 1)]
    proj = sqlite_project(tmp_path, users_ddl(""), users, purchases_ddl(""), purchases)
    apply(proj)
    con = sqlite3.connect(proj / "warehouse.db")
    with con:
        for k in CHANGED_USERS:
            con.execute("UPDATE users SET first_name = 'Changed', updated_at = ? WHERE id = ?",
                        (NEW_STAMP, k))
        for k in CHANGED_PURCHASE_OF:
            con.execute("UPDATE purchases SET amount = amount + 100, updated_at = ? "
                        "WHERE user_id = ? AND id % 2 = 0", (NEW_STAMP, k))
    con.close()
    return proj


@pytest.fixture
def batches() -> Iterator[list[tuple[int, list[str]]]]:
    """Every statement that binds changed keys (compile.KEY_SLOT): (its slots, its keys)."""
    seen: list[tuple[int, list[str]]] = []

    def before(conn: Any, clause: Any, multiparams: Any, params: Any, options: Any) -> None:
        for p in [params, *multiparams]:
            for d in (p if isinstance(p, list) else [p]):
                if isinstance(d, dict) and KEY_SLOT.format(0) in d:
                    slots = [v for n, v in d.items() if n.startswith(KEY_SLOT.format(""))]
                    seen.append((len(slots), [v for v in slots if v is not None]))

    event.listen(Engine, "before_execute", before)
    yield seen
    event.remove(Engine, "before_execute", before)


def byte_order(keys: list[str]) -> bool:
    encoded = [k.encode() for k in keys]
    return encoded == sorted(encoded) and len(set(encoded)) == len(encoded)


def check_batches(seen: list[tuple[int, list[str]]], size: int) -> list[str]:
    assert seen, "the incremental read bound no batch of changed keys"
    assert all(slots == size for slots, _ in seen), seen
    assert all(0 < len(keys) <= size for _, keys in seen), seen
    read = [k for _, keys in seen for k in keys]
    assert byte_order(read), read  # each key once, the batches in byte order
    assert {key_text(k) for k in CHANGED_USERS + CHANGED_PURCHASE_OF} <= set(read)
    return read


def test_an_incremental_read_binds_bounded_batches_of_keys_and_plans_as_one_read(
        project: Path, batches: list[tuple[int, list[str]]], emulator: Any,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "SQLITE_CHANGED_BATCH", 2)
    inc = plan_json(project)
    assert inc["read_since"] is not None and inc["compared"] == "counts", inc
    read = check_batches(batches, 2)
    assert len(batches) == (len(read) + 1) // 2
    assert inc["counts"]["update"] == len(CHANGED_USERS) + len(CHANGED_PURCHASE_OF), inc
    assert inc["fields_set"] == {"first_name": len(CHANGED_USERS),
                                 "lifetime_value": len(CHANGED_PURCHASE_OF)}, inc
    batches.clear()
    monkeypatch.setattr(engine_module, "SQLITE_CHANGED_BATCH", 1000)
    one = plan_json(project)
    assert [k for _, keys in batches for k in keys] == read and len(batches) == 1
    full = plan_json(project, "--full-refresh")
    assert full["read_since"] is None
    assert inc["digest"] == one["digest"] == full["digest"], (inc, one, full)
    monkeypatch.setattr(engine_module, "SQLITE_CHANGED_BATCH", 2)
    apply(project)
    got = braze_users(emulator)
    assert {k for k, u in got.items() if u["attributes"]["first_name"] == "Changed"} == set(
        CHANGED_USERS)
    assert got["10"]["attributes"]["lifetime_value"] == 2 * KEYS.index(10) + 1 + 100
    assert_no_changes(project)


def test_a_batch_holds_fewer_keys_where_sqlite_takes_fewer_parameters(
        project: Path, batches: list[tuple[int, list[str]]]) -> None:
    """SQLite takes at most SQLITE_LIMIT_VARIABLE_NUMBER parameters a statement (999 before
    3.32): a batch binds as many keys as fit beside the query's other parameters, a rule's
    list of values counted value by value."""
    if not hasattr(sqlite3.Connection, "setlimit"):
        pytest.skip("Python before 3.11 cannot lower SQLite's limit")
    countries = [f"C{i}" for i in range(40)] + ["GB"]
    (project / "groups" / "listed.yml").write_text(
        "kind: group\nname: listed\nmodel: users\nmatch: all\nrules:\n"
        f"  - {{property: country, op: in, value: [{', '.join(countries)}]}}\n")
    loaded = load_project(project)
    wh = connect(loaded.apps["warehouse"], loaded)
    try:
        # parameters beside one key: `brazecfg plan` reads without a record hash (nothing
        # stores it, HASH_NONE), `plan --out` and apply with the related-row counts' hash
        others = {kind: len(wh.query(
            "users", now=datetime.fromisoformat(NOW), hash_kind=kind, key_slots=1
        ).select.compile(dialect=wh.engine.dialect,
                         compile_kwargs={"render_postcompile": True}).positiontup or ()) - 1
            for kind in (HASH_NONE, HASH_COUNTS)}
    finally:
        wh.close()
    assert others[HASH_NONE] > len(countries)  # the list's values are parameters each
    assert others[HASH_COUNTS] > others[HASH_NONE]
    warehouse = str((project / "warehouse.db").resolve())
    plans = {}
    for kind, extra in ((HASH_NONE, ()), (HASH_COUNTS, ("--out", str(project / "p.json")))):
        limit = others[kind] + 3

        def lower(dbapi_connection: Any, _record: Any, limit: int = limit) -> None:
            files = [r[2] for r in dbapi_connection.execute("PRAGMA database_list")]
            if warehouse in files:
                dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)

        batches.clear()
        event.listen(Engine, "connect", lower)
        try:
            plans[kind] = plan_json(project, *extra)
        finally:
            event.remove(Engine, "connect", lower)
        check_batches(batches, 3)
    full = plan_json(project, "--full-refresh")
    assert plans[HASH_NONE]["digest"] == plans[HASH_COUNTS]["digest"] == full["digest"], (
        plans, full)
    out = cli("apply", str(project), "--auto-approve", "--now", NOW)
    assert out.exit_code == 0, out.output
    assert_no_changes(project)
