"""DuckDB picks the most/least recent row with arg_max_null/arg_min_null in the source's
grouped subquery (compile._Builder.pick) instead of a ROW_NUMBER() window: the window's
partitioned rows, joined and sorted, ran out of DuckDB's 256MB at 10M users. Both must give
every record the same values, ties, NULLs, a NOCASE column, filters and several properties
of one window included; hypothesis draws the rows, and each case runs both ways."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from brazecfg.warehouse import compile as compile_module
from brazecfg.warehouse.compile import HASH_COUNTS
from brazecfg.warehouse.connect import connect
from tests.warehouse import build as b
from tests.warehouse.data import NOW

ROW = st.tuples(
    st.sampled_from(["1", "2", "3", "4"]),                               # user_id
    st.sampled_from(["2026-01-01", "2026-01-02", "2026-01-03", None]),   # purchased_at
    st.sampled_from(["pro", "Pro", "PRO", "apple", "b", "", None]),      # product, NOCASE
    st.sampled_from([1.0, 2.5, -3.0, None]),                             # amount
    st.sampled_from(["paid", "refunded", None]),                         # status
)


def the_project(root: Path) -> Any:
    sources = [b.source("users", "users", key="id"), b.source("purchases", "purchases")]
    props = [
        b.prop("user_id", "users", "id"),
        b.prop("last_product", "purchases", "product", aggregate="most_recent",
               sort="purchased_at"),
        b.prop("last_amount", "purchases", "amount", aggregate="most_recent",
               sort="purchased_at", type_="float"),  # the same window as last_product
        b.prop("first_paid", "purchases", "product", aggregate="least_recent",
               sort="purchased_at", filters=[("status", "eq", "paid")]),
        b.prop("first_amount", "purchases", "amount", aggregate="least_recent",
               sort="purchased_at", type_="float"),
        b.prop("spent", "purchases", "amount", aggregate="sum", type_="float"),
    ]
    return b.project(str(root), b.app("duckdb", path="wh.duckdb"), sources, props)


def rows_both_ways(project: Any, monkeypatch: pytest.MonkeyPatch, **kw: Any
                   ) -> tuple[list[Any], list[Any]]:
    out = []
    for picks in (frozenset({"duckdb"}), frozenset()):
        monkeypatch.setattr(compile_module, "PICK_DIALECTS", picks)
        wh = connect(project.apps[b.APP], project)
        try:
            out.append([(r.key, r.values, r.row_hash)
                        for r in wh.stream_model(b.MODEL, now=NOW, **kw)])
        finally:
            wh.close()
    return out[0], out[1]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, max_size=14))
# values the NOCASE column calls equal, on one date: settled by their text in byte order,
# whichever row the scan meets first
@example(rows=[("1", "2026-01-01", "pro", 1.0, "paid"), ("1", "2026-01-01", "Pro", 2.0, "paid")])
@example(rows=[("1", "2026-01-01", "Pro", 1.0, "paid"), ("1", "2026-01-01", "pro", 2.0, "paid")])
@example(rows=[("1", "2026-01-02", None, 1.0, "paid"), ("1", "2026-01-02", "b", 2.0, None),
               ("1", "2026-01-01", "apple", None, "paid")])
def test_the_pick_gives_what_the_window_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              rows: list[tuple[Any, ...]]) -> None:
    db = tmp_path / "wh.duckdb"
    db.unlink(missing_ok=True)
    engine = sa.create_engine(f"duckdb:///{db}")
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE users (id TEXT)")
        c.exec_driver_sql("INSERT INTO users VALUES ('1'), ('2'), ('3'), ('4'), ('5')")
        c.exec_driver_sql("CREATE TABLE purchases (user_id TEXT, purchased_at TEXT, "
                          "product TEXT COLLATE NOCASE, amount DOUBLE, status TEXT)")
        for r in rows:
            c.exec_driver_sql("INSERT INTO purchases VALUES (?, ?, ?, ?, ?)", r)
    engine.dispose()
    project = the_project(tmp_path)
    picked, windowed = rows_both_ways(project, monkeypatch)
    assert picked == windowed
    assert [k for k, *_ in picked] == ["1", "2", "3", "4", "5"]
    # read by key and with the related-row counts, the same again
    picked, windowed = rows_both_ways(project, monkeypatch, only_keys=["2", "4"],
                                      hash_kind=HASH_COUNTS)
    assert picked == windowed and [k for k, *_ in picked] == ["2", "4"]


@pytest.mark.skipif(not compile_module._picks_match_windows(),
                    reason="DuckDB before 2.0 keeps the window")
def test_the_pick_is_one_grouped_subquery_without_a_window(tmp_path: Path) -> None:
    sql = str(compile_module.compile_model_query(the_project(tmp_path), b.MODEL, now=NOW,
                                                 dialect="duckdb")).lower()
    assert "row_number" not in sql and sql.count("group by") == 1
    assert sql.count("arg_max_null(") == 1 and sql.count("arg_min_null(") == 2
