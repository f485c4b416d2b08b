"""What PostgreSQL makes of the state's writes by id, on a table that grew since it was last
analyzed (a first apply: every record is new, autovacuum has not caught up). An IN list of
500 ids was answered through the destination's part of the primary key only, every record
of the destination read and compared with the list: each confirmed batch cost more than the
one before (20,000 records committed in 7.8 s, 60,000 in 51 s). The deletes by id are one
equality on the whole primary key per id now: an index lookup whatever the statistics."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Connection

from brazecfg.state.ledger import Ledger, LedgerRecord
from tests.state.backends import backend


@contextmanager
def _ledger(kind: str, tmp_path: Path, url: str) -> Iterator[tuple[Ledger, Connection, str]]:
    """A fresh state of ``kind`` in its own schema, autovacuum off for its records table (so
    only brazecfg analyzes it), with the ledger's connection and the table's quoted name."""
    with Ledger(backend=backend(kind, tmp_path, url, schema=f"s_{uuid.uuid4().hex[:10]}"),
                writable=True) as led:
        conn = led._conn
        assert conn is not None
        table = conn.dialect.identifier_preparer.format_table(led.t.records)
        conn.exec_driver_sql(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        conn.commit()
        yield led, conn, table


@pytest.mark.parametrize("kind", ["postgres", "warehouse-postgres"])
def test_deletes_by_id_look_each_id_up_in_the_primary_key(
        kind: str, tmp_path: Path, postgres_url: str) -> None:
    records = [LedgerRecord(str(i), {"f": f"{i:016x}"}, frozenset(), os.urandom(8))
               for i in range(20000)]
    statements: list[tuple[str, Any]] = []
    with _ledger(kind, tmp_path, postgres_url) as (led, conn, table):
        for i in range(0, len(records), 5000):
            led.commit("d", upserts=records[i:i + 5000])

        def seen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                 executemany: bool) -> None:
            if statement.startswith(f"DELETE FROM {table}"):
                statements.append((statement, parameters[0] if executemany else parameters))
        event.listen(conn.engine, "before_cursor_execute", seen)
        try:
            led.commit("d", upserts=records[:600])  # replaces: deletes 600 ids first
        finally:
            event.remove(conn.engine, "before_cursor_execute", seen)
        assert statements, "no delete of the records by id was sent"
        for statement, params in statements:
            plan = "\n".join(str(r[0]) for r in conn.exec_driver_sql(
                f"EXPLAIN {statement.replace('DELETE FROM', 'SELECT * FROM', 1)}", params))
            # the whole key in the index condition, nothing left to filter row by row
            assert "Index Cond" in plan and "external_id" in plan.split("Index Cond", 1)[1], plan
            assert "Filter" not in plan, plan
        conn.rollback()
        assert led.count("d") == 20000


@pytest.mark.parametrize("kind", ["postgres", "warehouse-postgres"])
def test_a_state_table_grown_by_this_process_is_analyzed(
        kind: str, tmp_path: Path, postgres_url: str) -> None:
    """Reads by id (the records a plan loads by key, the event rows apply marks) stay IN
    lists, which PostgreSQL plans from the table's statistics: a process that inserted
    ANALYZE_AFTER_ROWS rows into a state table analyzes it (autovacuum is off here, as it is
    in effect during a first apply: it runs a minute or so after the rows came)."""
    from brazecfg.state.ledger import ANALYZE_AFTER_ROWS

    records = [LedgerRecord(str(i), {"f": f"{i:016x}"}, frozenset(), os.urandom(8))
               for i in range(2 * ANALYZE_AFTER_ROWS)]
    with _ledger(kind, tmp_path, postgres_url) as (led, conn, table):
        def rows_known() -> float:
            value = conn.exec_driver_sql(
                f"SELECT reltuples FROM pg_class WHERE oid = '{table}'::regclass").scalar()
            conn.rollback()
            return float(value)
        n = ANALYZE_AFTER_ROWS
        led.commit("d", upserts=records[:n - 1])
        assert rows_known() <= 0  # never analyzed (-1; 0 before PostgreSQL 14)
        led.commit("d", upserts=records[n - 1:n])
        assert rows_known() == n  # analyzed once the process had inserted n rows
        led.commit("d", upserts=records[n:n + n // 2])
        assert rows_known() == n  # not again until it inserted as many again
        led.commit("d", upserts=records[n + n // 2:])
        assert rows_known() == 2 * n
        assert len(led.records("d", [str(i) for i in range(7000, 7500)])) == 500
