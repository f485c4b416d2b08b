"""The SQL's shape: bound values, binary ordering, quoting, one subquery per source."""

from __future__ import annotations

import pytest

from brazecfg.model.resources import Project
from brazecfg.warehouse.compile import compile_model_query, get_dialect
from tests.warehouse import build as b
from tests.warehouse import data


def project(table: str = "users") -> Project:
    sources = [b.source("users", table, key="id"), b.source("purchases", "purchases")]
    props = [
        b.prop("user_id", "users", "id"),
        b.prop("n", "purchases", aggregate="count", filters=[("status", "eq", data.INJECTION)]),
        b.prop("ltv", "purchases", "amount", aggregate="sum", filters=data.PAID),
        b.prop("last", "purchases", "status", aggregate="most_recent", sort="purchased_at"),
    ]
    groups = [b.group("g", b.rule("ltv", "gte", 100), b.rule("user_id", "in", ["a", "b"]))]
    return b.project("/nowhere", b.app("sqlite", path="x"), sources, props, groups)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "duckdb", "mysql"])
def test_values_are_bound_parameters(dialect: str) -> None:
    stmt = compile_model_query(project(), "users", now=data.NOW, dialect=dialect)
    compiled = stmt.compile(dialect=get_dialect(dialect))
    assert "DROP" not in str(compiled)
    assert data.INJECTION in compiled.params.values()
    assert "paid" in compiled.params.values()


def test_one_grouped_subquery_per_source_and_a_window_for_most_recent() -> None:
    sql = str(compile_model_query(project(), "users", now=data.NOW, dialect="sqlite"))
    assert sql.count("GROUP BY") == 1
    assert sql.count("row_number() OVER") == 1
    assert sql.count("LEFT OUTER JOIN") == 2


@pytest.mark.parametrize(("dialect", "collation"), [
    ("postgresql", 'COLLATE "C"'), ("sqlite", "COLLATE BINARY"), ("duckdb", 'COLLATE "binary"'),
    ("mysql", "COLLATE utf8mb4_bin"), ("mssql", "COLLATE Latin1_General_BIN2"),
])
def test_every_key_join_and_the_order_name_a_binary_collation(dialect: str, collation: str
                                                              ) -> None:
    sql = str(compile_model_query(project(), "users", now=data.NOW, dialect=dialect)
              .compile(dialect=get_dialect(dialect)))
    order_by = sql[sql.index("ORDER BY"):]
    assert order_by.count(collation) >= 1
    # the related source's key: in its GROUP BY and in the join to the primary key
    start = sql.index("GROUP BY")
    assert collation in sql[start:sql.index(" AS a", start)]
    on = sql.index(" ON ", sql.index("LEFT OUTER JOIN"))
    end = sql.find("LEFT OUTER JOIN", on)  # DuckDB picks the most recent in the same join
    assert sql[on:end if end > 0 else sql.index(") AS r", on)].count(collation) == 2


@pytest.mark.parametrize(("table", "rendered"), [
    ("analytics.users", "analytics.users AS"),
    ('analytics."My Users"', 'analytics."My Users" AS'),
    ('"my-project".analytics.users', '"my-project".analytics.users AS'),
    ('"Odd ""q"""', '"Odd ""q""" AS'),
])
def test_table_names_are_quoted_part_by_part(table: str, rendered: str) -> None:
    sql = str(compile_model_query(project(table), "users", now=data.NOW, dialect="postgresql"))
    assert rendered in sql


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "duckdb", "mysql"])
def test_counts_hashes_count_each_aggregated_source_and_need_a_hash_function(
        dialect: str) -> None:
    """HASH_COUNTS: one GROUP BY per aggregated source in the keys pass, no property; on a
    dialect without record hashes (mysql here) no hash is asked of the warehouse at all
    (the plan reads in full and says why), rather than an md5 it may not have."""
    from brazecfg.warehouse.compile import HASH_COUNTS, build_hashes_query, build_model_query

    keys = build_hashes_query(project(), "users", now=data.NOW, dialect=dialect,
                              kind=HASH_COUNTS)
    sql = str(keys.select.compile(dialect=get_dialect(dialect)))
    # SQLite groups twice: by the raw key column (its index's order), then by key text,
    # adding those counts (the one sum); the others once, by key text
    twice = dialect == "sqlite"
    assert sql.count("GROUP BY") == (2 if twice else 1) and "row_number" not in sql.lower()
    assert sql.lower().count("sum(") == (1 if twice else 0)  # no property computed
    full = build_model_query(project(), "users", now=data.NOW, dialect=dialect,
                             hash_kind=HASH_COUNTS)
    text = str(full.select.compile(dialect=get_dialect(dialect))).lower()
    if dialect == "mysql":
        assert not full.hashed and "md5" not in text
    else:
        # the aggregates and the counts in one GROUP BY: the source's rows are counted
        # where they are aggregated, not grouped a second time
        assert full.hashed and text.count("group by") == 1 and "count(*) as n" in text
