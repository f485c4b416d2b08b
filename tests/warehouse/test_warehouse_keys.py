"""keys.key_text and keys.bad_key evaluated by each real warehouse on typed key columns: the
canonical key text must be the same on SQLite, DuckDB and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import column, select, table

from brazecfg.warehouse.keys import bad_key, key_text

# column type per backend, rows (value, canonical text, bad-key text)
CASES: list[tuple[dict[str, str], list[tuple[Any, str | None, str | None]]]] = [
    ({"sqlite": "INTEGER", "duckdb": "BIGINT", "postgres": "BIGINT"},
     [(1, "1", None), (-3, "-3", None), (0, "0", None)]),
    ({"sqlite": "REAL", "duckdb": "DOUBLE", "postgres": "DOUBLE PRECISION"},
     [(1.0, "1", None), (-0.0, "0", None), (1e15, "1000000000000000", None),
      (2.5, None, "2.5")]),
    ({"sqlite": "TEXT", "duckdb": "VARCHAR", "postgres": "TEXT"},
     [("01", "01", None), ("1.0", "1.0", None), ("Bob", "Bob", None), ("", "", None)]),
    ({"duckdb": "DECIMAL(20,3)", "postgres": "NUMERIC(20,3)"},
     [(1, "1", None), (-4, "-4", None), (12345678901234567, "12345678901234567", None)]),
]


PARAMS = [(name, types[name], rows) for types, rows in CASES
          for name in ("sqlite", "duckdb", "postgres") if name in types]


def make_engine(name: str, request: pytest.FixtureRequest) -> sa.Engine:
    if name == "sqlite":
        return sa.create_engine("sqlite://")
    if name == "duckdb":
        return sa.create_engine("duckdb:///:memory:")
    return sa.create_engine(request.getfixturevalue("postgres_url"))


@pytest.mark.parametrize(("name", "type_", "rows"), PARAMS)
def test_key_text_is_canonical_on_every_warehouse(
        name: str, type_: str, rows: list[tuple[Any, str | None, str | None]],
        request: pytest.FixtureRequest) -> None:
    eng = make_engine(name, request)
    try:
        with eng.connect() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS key_cases")
            conn.exec_driver_sql(f"CREATE TABLE key_cases (n INTEGER, k {type_})")
            conn.execute(sa.text("INSERT INTO key_cases VALUES (:n, :k)"),
                         [{"n": i, "k": v} for i, (v, _, _) in enumerate(rows)])
            t = table("key_cases", column("n"), column("k"))
            got = conn.execute(select(t.c.n, key_text(t.c.k, eng.dialect),
                                      bad_key(t.c.k, eng.dialect)).order_by(t.c.n)).all()
            conn.exec_driver_sql("DROP TABLE key_cases")
            conn.commit()
    finally:
        eng.dispose()
    assert [(text, bad) for _, text, bad in got] == [(text, bad) for _, text, bad in rows]
