"""DuckDB sources that are data files: CSV and Parquet, named plainly or by a reader call."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb

from brazecfg.warehouse.connect import connect
from tests.warehouse import build as b
from tests.warehouse import data


def write_files(root: Path) -> None:
    (root / "data").mkdir()
    with (root / "data" / "users.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "country"])
        for u in data.USERS:
            w.writerow([u[0], u[2] or ""])
    with duckdb.connect() as con:
        con.execute("CREATE TABLE p (user_id VARCHAR, amount DOUBLE, status VARCHAR)")
        con.executemany("INSERT INTO p VALUES (?, ?, ?)",
                        [(p[1], p[2], p[3]) for p in data.PURCHASES])
        con.execute(f"COPY p TO '{root / 'data' / 'purchases.parquet'}' (FORMAT parquet)")


def test_csv_and_parquet_sources(tmp_path: Path) -> None:
    write_files(tmp_path)
    for users_table, purchases_table in [
        ("'data/users.csv'", "data/purchases.parquet"),
        ("data/users.csv", "read_parquet('data/purchases.parquet')"),
    ]:
        the_app = b.app("duckdb", path=":memory:")
        project = b.project(
            str(tmp_path), the_app,
            [b.source("users", users_table, key="id"),
             b.source("purchases", purchases_table)],
            [b.prop("user_id", "users", "id"), b.prop("country", "users"),
             b.prop("ltv", "purchases", "amount", aggregate="sum", filters=data.PAID)],
            [b.group("us", b.rule("country", "eq", "US"))])
        wh = connect(the_app, project)
        try:
            rows = list(wh.stream_model(b.MODEL, now=data.NOW))
        finally:
            wh.close()
        assert [r.key for r in rows] == sorted(u[0] for u in data.USERS)
        expected = data.expected_properties()
        assert {r.key: r.values["ltv"] for r in rows} == {k: v["ltv"] for k, v in expected.items()}
        assert {r.key for r in rows if "us" in r.groups} == {"10", "a", "u6"}
