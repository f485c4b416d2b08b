"""The core suite, run against SQLite, DuckDB (file) and PostgreSQL.

Expected values come from tests/warehouse/data.py: hand-written constants or plain Python
over the same fixture rows, never from the generated SQL.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from brazecfg.warehouse.base import ModelRow
from tests.warehouse import build as b
from tests.warehouse import data
from tests.warehouse.conftest import Backend, make_backend

EXPECTED = data.expected_properties()
USER_IDS = [u[0] for u in data.USERS]


def values(rows: list[ModelRow], prop: str) -> dict[str, Any]:
    return {r.key: r.values[prop] for r in rows}


def members(rows: list[ModelRow], group: str) -> set[str]:
    return {r.key for r in rows if group in r.groups}


# -- ordering and plain columns ----------------------------------------------------------

def test_keys_come_in_python_sorted_order(backend: Backend) -> None:
    rows = backend.rows(backend.project())
    assert [r.key for r in rows] == sorted(USER_IDS)
    # byte order, spelled out: digits < upper case < lower case < non-ASCII
    assert [r.key for r in rows] == ["10", "9", "B", "a", "u6", "é"]


def test_plain_columns_of_the_primary_source(backend: Backend) -> None:
    rows = backend.rows(backend.project())
    for prop in ("user_id", "email", "country", "age", "vip", "nickname", "signup_at"):
        got = {k: data.normalise(v) for k, v in values(rows, prop).items()}
        want = {k: data.normalise(EXPECTED[k][prop]) for k in USER_IDS}
        assert got == want, prop
    assert set(rows[0].values) == {p.name for p in data.CORE_PROPERTIES}


# -- aggregates ----------------------------------------------------------------------------

@pytest.mark.parametrize("prop", ["n_purchases", "n_paid", "ltv", "avg_paid", "min_amount",
                                  "max_amount", "first_status", "last_status", "last_amount",
                                  "last_event"])
def test_aggregates_match_plain_python(backend: Backend, prop: str) -> None:
    rows = backend.rows(backend.project())
    got = {k: data.normalise(v) for k, v in values(rows, prop).items()}
    assert got == {k: data.normalise(EXPECTED[k][prop]) for k in USER_IDS}


def test_aggregates_hand_computed(backend: Backend) -> None:
    rows = backend.by_key(backend.project())
    # ltv = sum of paid purchases: "10" paid 10.0 + 20.5 (the 5.0 was refunded)
    assert rows["10"].values["ltv"] == 30.5
    assert rows["a"].values["ltv"] == 100.25
    assert rows["a"].values["avg_paid"] == 50.125
    # no purchases: count is 0, the rest NULL
    assert rows["9"].values["n_purchases"] == 0
    assert rows["9"].values["ltv"] is None
    assert rows["9"].values["last_status"] is None
    # "é": the purchase with no date is ignored by most/least recent, counted by count
    assert rows["é"].values["n_purchases"] == 3
    assert rows["é"].values["first_status"] == "paid"
    assert rows["é"].values["last_status"] == "pending"
    # filters apply before the aggregate: page views are skipped
    assert rows["10"].values["last_event"] == "checkout_start"
    assert rows["u6"].values["last_event"] is None


# -- filter operators (on source rows, before aggregating) ---------------------------------

FILTER_CASES: list[tuple[str, str, Any]] = [
    ("status", "eq", "paid"),
    ("status", "ne", "paid"),
    ("amount", "gt", 10.0),
    ("amount", "gte", 10.0),
    ("amount", "lt", 10.0),
    ("amount", "lte", 10.0),
    ("purchased_at", "gt", "2024-05-15T00:00:00"),  # one purchase is stored at exactly this
    ("purchased_at", "gte", "2024-05-15 00:00:00"),
    ("purchased_at", "lt", "2024-05-15"),
    ("purchased_at", "lte", "2024-05-15T00:00:00"),
    ("status", "contains", "fund"),
    ("status", "not_contains", "fund"),
    ("status", "contains", "%"),  # no LIKE wildcards
    ("status", "starts_with", "pa"),
    ("status", "starts_with", "_aid"),
    ("status", "in", ["paid", "pending"]),
    ("purchased_at", "exists", None),
    ("purchased_at", "not_exists", None),
    ("status", "not_exists", None),
    ("purchased_at", "within", "30 days"),
    ("purchased_at", "not_within", "30 days"),
    ("purchased_at", "within", "2 weeks"),
    ("purchased_at", "within", "1 year"),
    ("purchased_at", "not_within", "12 hours"),
]


@pytest.mark.parametrize(("column", "op", "value"), FILTER_CASES,
                         ids=[f"{c}-{o}-{v}" for c, o, v in FILTER_CASES])
def test_filter_ops(backend: Backend, column: str, op: str, value: Any) -> None:
    project = backend.project([
        b.prop("n", "purchases", aggregate="count", filters=[(column, op, value)]),
        b.prop("total", "purchases", "amount", aggregate="sum", filters=[(column, op, value)]),
    ])
    rows = backend.rows(project)
    purchases = data.rows_as_dicts("purchases")
    for uid in USER_IDS:
        matching = [p for p in purchases
                    if p["user_id"] == uid and data.py_op(p[column], op, value)]
        row = next(r for r in rows if r.key == uid)
        assert row.values["n"] == len(matching), uid
        want_total = sum(p["amount"] for p in matching) if matching else None
        assert row.values["total"] == want_total, uid


def test_filters_combine_with_and(backend: Backend) -> None:
    project = backend.project([
        b.prop("n", "purchases", aggregate="count",
               filters=[("status", "eq", "paid"), ("amount", "gte", 10.0)]),
    ])
    got = values(backend.rows(project), "n")
    assert got == {"10": 2, "9": 0, "a": 1, "B": 0, "é": 0, "u6": 0}


def test_filter_on_a_primary_source_property(backend: Backend) -> None:
    project = backend.project([b.prop("us_email", "users", "email",
                                      filters=[("country", "eq", "US")])])
    got = values(backend.rows(project), "us_email")
    assert got == {"10": "ten@example.com", "9": None, "a": "a@example.org", "B": None,
                   "é": None, "u6": "six@shop.example.com"}


# -- group rules ---------------------------------------------------------------------------

RULE_CASES: list[tuple[str, str, Any]] = [
    ("country", "eq", "US"),
    ("country", "ne", "US"),  # NULL country: false
    ("age", "gt", 34), ("age", "gte", 34), ("age", "lt", 34), ("age", "lte", 34),
    ("ltv", "gt", 30.5), ("ltv", "gte", 30.5),
    ("n_purchases", "eq", 0),
    ("email", "contains", "example.com"),
    ("email", "not_contains", "example.com"),  # NULL email: false
    ("email", "starts_with", "six@"),
    ("country", "in", ["US", "DE"]),
    ("nickname", "exists", None), ("nickname", "not_exists", None),
    ("signup_at", "gt", "2024-05-25T09:00:00"), ("signup_at", "gte", "2024-05-25T09:00:00"),
    ("signup_at", "lt", "2024-05-25 09:00:00"), ("signup_at", "lte", "2024-05-25 09:00:00"),
    ("signup_at", "eq", "2024-05-01 12:00:00"),  # stored as 2024-05-01T12:00:00 in SQLite
    ("signup_at", "within", "30 days"), ("signup_at", "not_within", "30 days"),
    ("signup_at", "within", "31 days"),  # u6 signed up exactly 31 days ago: inclusive
    ("signup_at", "not_within", "31 days"),
    ("signup_at", "within", "12 hours"),
    ("signup_at", "within", "1 day"),
    ("last_status", "ne", "paid"),
]


@pytest.mark.parametrize(("prop", "op", "value"), RULE_CASES,
                         ids=[f"{p}-{o}-{v}" for p, o, v in RULE_CASES])
def test_rule_ops(backend: Backend, prop: str, op: str, value: Any) -> None:
    project = backend.project(groups=[b.group("g", b.rule(prop, op, value))])
    rows = backend.rows(project)
    want = {uid for uid in USER_IDS if data.py_op(EXPECTED[uid][prop], op, value)}
    assert members(rows, "g") == want


def test_relative_dates_hand_computed(backend: Backend) -> None:
    # NOW is 2024-06-01 12:00 UTC; "30 days" reaches back to 2024-05-02 12:00.
    project = backend.project(groups=[
        b.group("new", b.rule("signup_at", "within", "30 days")),
        b.group("old", b.rule("signup_at", "not_within", "30 days")),
        b.group("new31", b.rule("signup_at", "within", "31 days")),
        b.group("bought_recently", b.rule("n_recent", "gte", 1)),
    ], properties=[*data.CORE_PROPERTIES,
                   b.prop("n_recent", "purchases", aggregate="count",
                          filters=[("purchased_at", "within", "30 days")])])
    rows = backend.by_key(project)
    assert {k for k, r in rows.items() if "new" in r.groups} == {"10", "a"}
    assert {k for k, r in rows.items() if "old" in r.groups} == {"9", "é", "u6"}  # not B: NULL
    assert {k for k, r in rows.items() if "new31" in r.groups} == {"10", "a", "u6"}
    assert {k: r.values["n_recent"] for k, r in rows.items()} == {
        "10": 2, "9": 0, "B": 0, "a": 1, "u6": 0, "é": 2}
    assert {k for k, r in rows.items() if "bought_recently" in r.groups} == {"10", "a", "é"}


def test_match_all_any_member_not_member(backend: Backend) -> None:
    groups = [
        b.group("us_buyers", b.rule("country", "eq", "US"), b.rule("n_paid", "gte", 1)),
        b.group("vip_or_big", b.rule("vip", "eq", True), b.rule("max_amount", "gte", 10.0),
                match="any"),
        b.group("both", b.member("us_buyers"), b.member("vip_or_big")),
        b.group("not_us_buyers", b.not_member("us_buyers")),
        b.group("nested", b.member("both"), b.not_member("grey"), match="all"),
        b.group("grey", b.rule("country", "ne", "US")),  # NULL country is not "ne US"
        b.group("not_grey", b.not_member("grey")),
        b.group("everyone"),
        b.group("nobody", match="any"),
    ]
    rows = backend.by_key(backend.project(groups=groups))

    def who(g: str) -> set[str]:
        return {k for k, r in rows.items() if g in r.groups}

    assert who("us_buyers") == {"10", "a"}
    assert who("vip_or_big") == {"10", "a", "é"}
    assert who("both") == {"10", "a"}
    assert who("not_us_buyers") == {"9", "B", "é", "u6"}
    assert who("grey") == {"9", "B"}
    assert who("not_grey") == {"10", "a", "u6", "é"}  # é: NULL country -> not in grey
    assert who("nested") == {"10", "a"}
    assert who("everyone") == set(USER_IDS)
    assert who("nobody") == set()
    assert rows["9"].groups == frozenset({"not_us_buyers", "grey", "everyone"})


# -- values are data, never SQL ------------------------------------------------------------

def test_injection_is_treated_as_data(backend: Backend) -> None:
    project = backend.project(
        [*data.CORE_PROPERTIES,
         b.prop("n", "purchases", aggregate="count", filters=[("status", "eq", data.INJECTION)])],
        groups=[b.group("h", b.rule("nickname", "eq", data.INJECTION)),
                b.group("h2", b.rule("nickname", "in", [data.INJECTION, "nobody"])),
                b.group("pct", b.rule("nickname", "contains", "100%"))])
    rows = backend.rows(project)
    assert members(rows, "h") == {"B"}
    assert members(rows, "h2") == {"B"}
    assert members(rows, "pct") == {"é"}
    assert set(values(rows, "n").values()) == {0}
    # the table is still there with all its rows
    again = backend.rows(backend.project())
    assert len(again) == len(data.USERS)


# -- incremental reads ---------------------------------------------------------------------

def test_changed_since_limits_to_changed_records(backend: Backend) -> None:
    since = data.NOW.replace(month=5, day=15, hour=0)
    project = backend.project(updated_at=True, properties=[
        b.prop("user_id", "users", "id"),
        b.prop("ltv", "purchases", "amount", aggregate="sum", filters=data.PAID)])
    rows = backend.rows(project, changed_since=since)
    # users.updated_at >= May 15: "u6"; purchases.updated_at >= May 15: "a" (and "zz", no user)
    assert [r.key for r in rows] == ["a", "u6"]
    # aggregates still cover every row of the record, changed or not
    assert rows[0].values["ltv"] == 100.25
    assert len(backend.rows(project)) == len(data.USERS)


def test_changed_since_is_ignored_when_a_source_lacks_updated_at(backend: Backend) -> None:
    since = data.NOW.replace(month=5, day=15, hour=0)
    project = backend.project(updated_at=True)  # events has no updated_at
    assert len(backend.rows(project, changed_since=since)) == len(data.USERS)


# -- the same rows everywhere --------------------------------------------------------------

def test_identical_rows_across_backends(tmp_path_factory: pytest.TempPathFactory,
                                        request: pytest.FixtureRequest) -> None:
    groups = [
        b.group("us", b.rule("country", "eq", "US")),
        b.group("new", b.rule("signup_at", "within", "30 days")),
        b.group("spenders", b.rule("ltv", "gte", 30), b.not_member("new"), match="any"),
    ]
    out = {}
    for name in ("sqlite", "duckdb", "postgres"):
        backend = make_backend(name, tmp_path_factory.mktemp(f"x{name}"), request)
        rows = backend.rows(backend.project(groups=groups))
        out[name] = [ModelRow(r.key, {k: data.normalise(v) for k, v in r.values.items()},
                              r.groups) for r in rows]
    assert out["sqlite"] == out["duckdb"] == out["postgres"]
    assert [r.key for r in out["sqlite"]] == sorted(USER_IDS)


def test_sqlite_table_still_exists_after_everything(sqlite_backend: Backend) -> None:
    engine = sa.create_engine(f"sqlite:///{sqlite_backend.root / 'wh.sqlite'}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM users")).scalar() == len(data.USERS)
    engine.dispose()


# -- event sources -------------------------------------------------------------------------

def test_stream_events(backend: Backend) -> None:
    from brazecfg.warehouse.connect import connect

    wh = connect(backend.app, backend.project())
    try:
        all_rows = list(wh.stream_events(b.MODEL, "purchases", key="id", user="user_id",
                                         columns=["amount", "status"]))
        recent = list(wh.stream_events(b.MODEL, "purchases", key="id", user="user_id",
                                       columns=["status"], time_column="purchased_at",
                                       since=data.NOW.replace(month=5, day=15, hour=0)))
    finally:
        wh.close()
    users = {u[0] for u in data.USERS}
    want = sorted(str(p[0]) for p in data.PURCHASES if p[1] in users)  # not "zz"'s purchase
    assert [r.key for r in all_rows] == want
    assert all_rows[0].user == "10" and all_rows[0].values == {"amount": 10.0, "status": "paid"}
    # since compares as datetimes, whatever the stored spelling: ids 1, 3, 4, 8, 9
    assert [(r.key, r.user, r.values["status"]) for r in recent] == [
        ("1", "10", "paid"), ("3", "10", "refunded"), ("4", "a", "paid"), ("8", "é", "paid"),
        ("9", "é", "pending")]
