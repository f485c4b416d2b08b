"""Rows stream: memory stays flat however many records a model has."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import duckdb
import pytest

from brazecfg.model.resources import App
from brazecfg.warehouse.connect import connect
from tests.warehouse import build as b
from tests.warehouse import data

N = 50_000
QUERIES = {
    # a query source with a ":" inside a string literal, which must not become a parameter
    "sqlite": f"""WITH RECURSIVE n(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM n WHERE id < {N})
                  SELECT id, 'a:b' AS tag, id % 7 AS bucket FROM n""",
    "duckdb": f"SELECT range + 1 AS id, 'a:b' AS tag, (range + 1) % 7 AS bucket FROM range({N})",
    "postgres": f"SELECT g AS id, 'a:b'::text AS tag, g % 7 AS bucket "
                f"FROM generate_series(1, {N}) AS g",
}


def make_app(kind: str, root: Path, request: pytest.FixtureRequest) -> App:
    if kind == "postgres":
        url = request.getfixturevalue("pg_warehouse_url")
        return b.app("postgres", host=url.host, port=url.port, database=url.database,
                     user=url.username, password=url.password)
    if kind == "sqlite":
        import sqlite3

        sqlite3.connect(root / "empty.db").close()
        return b.app("sqlite", path="empty.db")
    duckdb.connect(str(root / "empty.duckdb")).close()
    return b.app("duckdb", path="empty.duckdb")


@pytest.mark.parametrize("kind", ["sqlite", "duckdb", "postgres"])
def test_a_large_model_streams_in_flat_memory(tmp_path: Path, kind: str,
                                              request: pytest.FixtureRequest) -> None:
    the_app = make_app(kind, tmp_path, request)
    project = b.project(str(tmp_path), the_app,
                        [b.source("users", query=QUERIES[kind], key="id")],
                        [b.prop("user_id", "users", "id"), b.prop("tag", "users"),
                         b.prop("bucket", "users")],
                        [b.group("zero", b.rule("bucket", "eq", 0))])
    wh = connect(the_app, project)
    try:
        rows = wh.stream_model(b.MODEL, now=data.NOW, batch_size=1000)
        gc.collect()
        tracemalloc.start()
        count = members = 0
        previous = ""
        sample = {}
        for row in rows:
            assert row.key > previous
            previous = row.key
            count += 1
            members += "zero" in row.groups
            if row.key == "42":
                sample = dict(row.values)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        wh.close()
    assert count == N
    assert members == N // 7
    assert sample == {"user_id": 42, "tag": "a:b", "bucket": 0}
    # the whole result as ModelRows would take tens of MB; one batch takes a few hundred kB
    assert peak < 4 * 1024 * 1024, peak
