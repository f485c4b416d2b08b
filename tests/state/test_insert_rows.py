"""The state's multi-row INSERTs on SQLite: statements of at most SQLITE_PARAMETERS values
(every SQLite before 3.32 refuses more), every row stored as given, a later row of a key
replacing an earlier one (INSERT OR REPLACE) within a statement and across statements."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    create_engine,
    event,
    text,
)

from brazecfg.state.ledger import SQLITE_PARAMETERS, _insert_rows


def _table() -> Table:
    return Table("records", MetaData(), Column("destination", Integer, primary_key=True),
                 Column("external_id", Text, primary_key=True), Column("fields", LargeBinary),
                 Column("row_hash", LargeBinary))


def test_rows_go_in_statements_within_sqlites_parameter_limit(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'state.sqlite'}")
    table = _table()
    table.metadata.create_all(engine)
    sent: list[int] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.startswith("INSERT"):
            sent.append(len(parameters))

    event.listen(engine, "before_cursor_execute", seen)
    # 1,000 rows, then 600 more that replace 500 of them (a key twice in one statement too)
    first = [{"destination": 1, "external_id": str(i), "fields": bytes([i % 256]) * 8,
              "row_hash": None} for i in range(1000)]
    again = [{"external_id": str(i), "destination": 1, "fields": b"new", "row_hash": b"h"}
             for i in range(500, 1000)] + [
        {"external_id": "7", "destination": 1, "fields": b"once", "row_hash": None},
        {"external_id": "7", "destination": 1, "fields": b"twice", "row_hash": None}] + [
        {"external_id": f"n{i}", "destination": 2, "fields": b"", "row_hash": None}
        for i in range(98)]
    with engine.begin() as conn:
        _insert_rows(conn, table, first)
        _insert_rows(conn, table, again, or_replace=True)
    per = SQLITE_PARAMETERS // 4
    assert sent == [per * 4] * (1000 // per) + [1000 % per * 4] + (
        [per * 4] * (600 // per) + [600 % per * 4]), sent
    assert max(sent) <= SQLITE_PARAMETERS
    with engine.connect() as conn:
        got = {(d, k): (f, h) for d, k, f, h in conn.execute(text(
            "SELECT destination, external_id, fields, row_hash FROM records"))}
    want = {(1, str(i)): (bytes([i % 256]) * 8, None) for i in range(500)}
    want |= {(1, str(i)): (b"new", b"h") for i in range(500, 1000)}
    want[(1, "7")] = (b"twice", None)
    want |= {(2, f"n{i}"): (b"", None) for i in range(98)}
    assert got == want
