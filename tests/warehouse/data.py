"""The fixture data set, how to load it into SQLite / DuckDB / PostgreSQL, and the core
project over it. Expected values in the tests are computed from these rows in plain Python.

SQLite keeps datetimes as ISO text, deliberately mixing "T" and space forms; DuckDB and
PostgreSQL get real TIMESTAMP columns.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

from tests.warehouse import build as b

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
INJECTION = "x'; DROP TABLE users; --"

USERS_COLS = [("id", "text"), ("email", "text"), ("country", "text"), ("age", "int"),
              ("signup_at", "ts"), ("vip", "bool"), ("nickname", "text"), ("updated_at", "ts")]
USERS: list[tuple[Any, ...]] = [
    ("10", "ten@example.com", "US", 34, "2024-05-25 09:00:00", True, "tenny",
     "2024-05-01 00:00:00"),
    ("9", "nine@example.com", "FR", 19, "2023-01-10T08:30:00", False, None,
     "2024-01-01 00:00:00"),
    ("a", "a@example.org", "US", None, "2024-05-31T23:00:00", True, "Alpha",
     "2024-01-01 00:00:00"),
    ("B", None, "DE", 51, None, False, INJECTION, "2024-01-01 00:00:00"),
    ("é", "e@example.com", None, 27, "2024-03-01 00:00:00", None, "100% eacute",
     "2024-01-01 00:00:00"),
    # signed up exactly 31 days before NOW: on the edge of "within 31 days"
    ("u6", "six@shop.example.com", "US", 45, "2024-05-01T12:00:00", False, "Sixx",
     "2024-05-20T00:00:00"),
]

PURCHASES_COLS = [("id", "int"), ("user_id", "text"), ("amount", "float"), ("status", "text"),
                  ("purchased_at", "ts"), ("updated_at", "ts")]
PURCHASES: list[tuple[Any, ...]] = [
    (1, "10", 10.0, "paid", "2024-05-30 10:00:00", "2024-01-01 00:00:00"),
    (2, "10", 20.5, "paid", "2024-04-01T10:00:00", "2024-01-01 00:00:00"),
    (3, "10", 5.0, "refunded", "2024-05-31 08:00:00", "2024-01-01 00:00:00"),
    (4, "a", 100.0, "paid", "2024-05-15T00:00:00", "2024-05-25 00:00:00"),
    (5, "a", 0.25, "paid", "2023-12-01 00:00:00", "2024-01-01 00:00:00"),
    (6, "B", 7.5, "refunded", "2024-01-01 00:00:00", "2024-01-01 00:00:00"),
    (7, "é", 12.0, None, None, "2024-01-01 00:00:00"),
    (8, "é", 3.0, "paid", "2024-05-20 00:00:00", "2024-01-01 00:00:00"),
    (9, "é", 1.0, "pending", "2024-05-21T00:00:00", "2024-01-01 00:00:00"),
    (10, "zz", 50.0, "paid", "2024-05-01 00:00:00", "2024-05-30 00:00:00"),  # no such user
]

EVENTS_COLS = [("user_id", "text"), ("name", "text"), ("at", "ts")]
EVENTS: list[tuple[Any, ...]] = [
    ("10", "page_view", "2024-05-31 10:00:00"),
    ("10", "checkout_start", "2024-05-30 09:00:00"),
    ("a", "app_open", "2024-05-01 00:00:00"),
    ("a", "page_view", "2024-05-02T00:00:00"),
    ("9", "checkout_done", "2024-02-01 00:00:00"),
    ("u6", "page_view", "2024-05-10 00:00:00"),
]

TABLES = {"users": (USERS_COLS, USERS), "purchases": (PURCHASES_COLS, PURCHASES),
          "events": (EVENTS_COLS, EVENTS)}


def ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def rows_as_dicts(name: str) -> list[dict[str, Any]]:
    cols, rows = TABLES[name]
    return [dict(zip([c for c, _ in cols], r, strict=True)) for r in rows]


def load(engine: sa.Engine, backend: str, schema: str | None) -> None:
    """Create and fill the three tables (in ``schema``) with the backend's column types."""
    typed: dict[str, Any] = {
        "text": sa.Text(), "int": sa.Integer(), "float": sa.Double(),
        "ts": sa.Text() if backend == "sqlite" else sa.DateTime(),
        "bool": sa.Integer() if backend == "sqlite" else sa.Boolean(),
    }
    meta = sa.MetaData(schema=schema)
    with engine.begin() as conn:
        if schema and backend != "sqlite":
            conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        for name, (cols, rows) in TABLES.items():
            table = sa.Table(name, meta, *(sa.Column(c, typed[t], quote=True) for c, t in cols))
            table.create(conn)
            values = []
            for row in rows:
                value = {}
                for (c, t), v in zip(cols, row, strict=True):
                    if t == "ts" and backend != "sqlite":
                        v = ts(v)
                    elif t == "bool" and backend == "sqlite" and v is not None:
                        v = int(v)
                    value[c] = v
                values.append(value)
            conn.execute(table.insert(), values)


# -- the core project ---------------------------------------------------------------------

def core_sources(prefix: str, *, updated_at: bool = False) -> list[Any]:
    upd = "updated_at" if updated_at else None
    return [
        b.source("users", f"{prefix}users", key="id", updated_at=upd),
        b.source("purchases", f"{prefix}purchases", updated_at=upd),
        b.source("events", f"{prefix}events"),
    ]


PAID = [("status", "eq", "paid")]
CORE_PROPERTIES = [
    b.prop("user_id", "users", "id"),
    b.prop("email", "users"),
    b.prop("country", "users"),
    b.prop("age", "users"),
    b.prop("vip", "users"),
    b.prop("nickname", "users"),
    b.prop("signup_at", "users"),
    b.prop("n_purchases", "purchases", aggregate="count"),
    b.prop("n_paid", "purchases", "id", aggregate="count", filters=PAID),
    b.prop("ltv", "purchases", "amount", aggregate="sum", filters=PAID),
    b.prop("avg_paid", "purchases", "amount", aggregate="avg", filters=PAID),
    b.prop("min_amount", "purchases", "amount", aggregate="min"),
    b.prop("max_amount", "purchases", "amount", aggregate="max"),
    b.prop("first_status", "purchases", "status", aggregate="least_recent", sort="purchased_at"),
    b.prop("last_status", "purchases", "status", aggregate="most_recent", sort="purchased_at"),
    b.prop("last_amount", "purchases", "amount", aggregate="most_recent", sort="purchased_at"),
    b.prop("last_event", "events", "name", aggregate="most_recent", sort="at",
           filters=[("name", "ne", "page_view")]),
]


# -- expected values, computed in plain Python --------------------------------------------

def expected_properties() -> dict[str, dict[str, Any]]:
    """user id -> property -> value, for CORE_PROPERTIES, from the rows above."""
    purchases = rows_as_dicts("purchases")
    events = rows_as_dicts("events")
    out: dict[str, dict[str, Any]] = {}
    for u in rows_as_dicts("users"):
        mine = [p for p in purchases if p["user_id"] == u["id"]]
        paid = [p for p in mine if p["status"] == "paid"]
        dated = sorted((p for p in mine if p["purchased_at"] is not None),
                       key=lambda p: ts(p["purchased_at"]))  # type: ignore[arg-type,return-value]
        evs = sorted((e for e in events if e["user_id"] == u["id"] and e["name"] != "page_view"),
                     key=lambda e: ts(e["at"]))  # type: ignore[arg-type,return-value]
        amounts = [p["amount"] for p in mine]
        out[u["id"]] = {
            "user_id": u["id"], "email": u["email"], "country": u["country"], "age": u["age"],
            "vip": u["vip"], "nickname": u["nickname"], "signup_at": u["signup_at"],
            "n_purchases": len(mine),
            "n_paid": len(paid),
            "ltv": sum(p["amount"] for p in paid) if paid else None,
            "avg_paid": sum(p["amount"] for p in paid) / len(paid) if paid else None,
            "min_amount": min(amounts) if amounts else None,
            "max_amount": max(amounts) if amounts else None,
            "first_status": dated[0]["status"] if dated else None,
            "last_status": dated[-1]["status"] if dated else None,
            "last_amount": dated[-1]["amount"] if dated else None,
            "last_event": evs[-1]["name"] if evs else None,
        }
    return out


DELTAS = {"30 days": timedelta(days=30), "31 days": timedelta(days=31),
          "2 weeks": timedelta(days=14), "1 year": timedelta(days=365),
          "12 hours": timedelta(hours=12), "1 day": timedelta(days=1)}


def py_op(value: Any, op: str, arg: Any) -> bool:
    """The documented operator semantics, in Python, over raw fixture values."""
    if op == "exists":
        return value is not None
    if op == "not_exists":
        return value is None
    if value is None:
        return False
    if op in ("within", "not_within"):
        since = NOW.replace(tzinfo=None) - DELTAS[arg]
        return ts(value) >= since if op == "within" else ts(value) < since  # type: ignore[operator]
    if isinstance(arg, str) and isinstance(value, str) and arg[:4].isdigit() and "-" in arg:
        value, arg = ts(value), ts(arg)  # ISO dates compare as datetimes
    match op:
        case "eq":
            return bool(value == arg)
        case "ne":
            return bool(value != arg)
        case "gt":
            return bool(value > arg)
        case "gte":
            return bool(value >= arg)
        case "lt":
            return bool(value < arg)
        case "lte":
            return bool(value <= arg)
        case "contains":
            return arg in str(value)
        case "not_contains":
            return arg not in str(value)
        case "starts_with":
            return str(value).startswith(arg)
        case "in":
            return value in arg
    raise AssertionError(op)


def normalise(value: Any) -> Any:
    """Driver-typed values in one spelling, to compare backends (values are raw by design)."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str) and len(value) == 19 and value[10] == "T":
        return value.replace("T", " ")
    if isinstance(value, bool):
        return int(value)
    if hasattr(value, "as_integer_ratio") or type(value).__name__ == "Decimal":
        return float(value)
    return value
