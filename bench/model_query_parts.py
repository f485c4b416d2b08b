"""What the first plan's model query costs in SQLite, part by part, for generate.py's project:
the statement a first plan runs when its changes are spooled (apply, plan --out; its SQL as
`plan_queries.py --sql` printed it at commit aacb870, the parameters written in), then the
same without the record hash (what `brazecfg plan` alone sends since d672b3b), without the
ORDER BY, with a cheaper key text, and its parts alone (the aggregates, the most_recent
window, the users in key order), against the floor's query. Each is executed in Python's
sqlite3 with brazecfg's pragmas and fetched to its last row, one after the other.

    .venv/bin/python bench/model_query_parts.py bench/out/1000000/warehouse.db
    .venv/bin/python bench/model_query_parts.py DB asis window window_raw_key   # some

If the SQL compiler changes, refresh the SQL here from `plan_queries.py --sql`: these
figures are for the SQL written here. `--check PROJECT` (a small generate.py project; the
braze app must answer, e.g. bench/sink.py) runs a plan of it, captures the statement
brazecfg sent and says whether its rows equal the `asis` variant's (and a plain plan's the
`no_hash` variant's), exit 1 if not:

    .venv/bin/python bench/model_query_parts.py --check bench/out/1000
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.floor import QUERY as FLOOR_QUERY  # noqa: E402
from brazecfg.warehouse.engine import (  # noqa: E402
    SQLITE_CACHE_KIB,
    SQLITE_SOFT_HEAP_BYTES,
    sqlite_row_hash,
)


def key_text(c: str) -> str:
    """The key's text as brazecfg compiles it for SQLite (an integral real as an integer)."""
    return (f"CASE WHEN (typeof({c}) = 'integer') THEN CAST({c} AS VARCHAR) WHEN (typeof({c}) "
            f"= 'real') THEN CASE WHEN ({c} = CAST({c} AS BIGINT) AND abs({c}) < "
            f"9223372036854775807) THEN CAST(CAST({c} AS BIGINT) AS VARCHAR) END ELSE "
            f"CAST({c} AS VARCHAR) END")


def cheap_key_text(c: str) -> str:
    """Not exact (an integral real keeps its '.0'): only to price the CASE above."""
    return f"CAST({c} AS VARCHAR)"


AGG = ("SELECT {k} COLLATE BINARY AS k, sum(CASE WHEN (s2.status IS NOT NULL AND s2.status = "
       "'paid') THEN s2.amount END) AS v0, count(*) AS v1 FROM purchases AS s2 GROUP BY {k} "
       "COLLATE BINARY")
WINDOW = ("SELECT {k} COLLATE BINARY AS k, s3.product AS v0, row_number() OVER (PARTITION BY "
          "{k} COLLATE BINARY ORDER BY s3.created_at DESC, CASE WHEN (s3.product IS NULL) "
          "THEN 1 ELSE 0 END, s3.product DESC, CAST(s3.product AS VARCHAR) COLLATE BINARY "
          "DESC) AS rn FROM purchases AS s3 WHERE s3.created_at IS NOT NULL")


def inner(kt: Callable[[str], str] = key_text) -> str:
    p1 = kt("p1.id")
    return (f"SELECT {p1} AS k, p1.country AS v0, p1.email AS v1, p1.first_name AS v2, "
            f"p1.last_name AS v3, w3.v0 AS v4, a2.v0 AS v5, coalesce(a2.v1, 0) AS v6, "
            f"p1.id AS v7, CASE WHEN (p1.id IS NOT NULL AND {p1} IS NULL) THEN "
            f"CAST(p1.id AS VARCHAR) END AS kbad FROM users AS p1 "
            f"LEFT OUTER JOIN ({AGG.format(k=kt('s2.user_id'))}) AS a2 "
            f"ON (a2.k COLLATE BINARY) = ({p1} COLLATE BINARY) "
            f"LEFT OUTER JOIN (SELECT r3.k AS k, r3.v0 AS v0 FROM "
            f"({WINDOW.format(k=kt('s3.user_id'))}) AS r3 "
            f"WHERE r3.rn = 1) AS w3 ON (w3.k COLLATE BINARY) = ({p1} COLLATE BINARY)")


GROUP = "CASE WHEN (r.v5 IS NOT NULL AND r.v5 >= 500) THEN 1 ELSE 0 END"
COLUMNS = f"r.k, r.v0, r.v1, r.v2, r.v3, r.v4, r.v5, r.v6, r.v7, {GROUP} AS g0, r.kbad"
HASH = f", brazecfg_row_hash(r.v0, r.v1, r.v2, r.v3, r.v4, r.v5, r.v6, r.v7, {GROUP}) AS h"
ORDER = " ORDER BY CASE WHEN (r.k IS NULL) THEN 1 ELSE 0 END, r.k COLLATE BINARY"

VARIANTS = {
    "asis": f"SELECT {COLUMNS}{HASH} FROM ({inner()}) AS r{ORDER}",
    "no_order": f"SELECT {COLUMNS}{HASH} FROM ({inner()}) AS r",
    "no_hash": f"SELECT {COLUMNS} FROM ({inner()}) AS r{ORDER}",
    "neither": f"SELECT {COLUMNS} FROM ({inner()}) AS r",
    "neither_cheap_key": f"SELECT {COLUMNS} FROM ({inner(cheap_key_text)}) AS r",
    "aggregates": f"SELECT count(*) FROM ({AGG.format(k=key_text('s2.user_id'))})",
    "window": f"SELECT count(*) FROM ({WINDOW.format(k=key_text('s3.user_id'))}) WHERE rn = 1",
    "window_raw_key": ("SELECT count(*) FROM ("
                       + WINDOW.format(k="s3.user_id").replace(" COLLATE BINARY AS k", " AS k")
                       + ") WHERE rn = 1"),
    "users_in_key_order": (f"SELECT {key_text('id')} AS k, country, email, first_name, "
                           "last_name, id FROM users ORDER BY k COLLATE BINARY"),
    "floor": FLOOR_QUERY,
}


def check(project: Path) -> None:
    import tempfile

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from brazecfg.config.loader import load_project
    from brazecfg.plan.planner import make_plan

    sent: list[tuple[str, Any]] = []

    @event.listens_for(Engine, "before_cursor_execute")
    def capture(conn: object, cursor: object, statement: str, parameters: object,
                context: object, executemany: bool) -> None:
        if "AS kbad" in statement and "FROM users AS p1" in statement:
            sent.append((statement, parameters))

    con = sqlite3.connect(project / "warehouse.db")
    con.create_function("brazecfg_row_hash", -1, sqlite_row_hash, deterministic=True)
    same = True
    # a plan whose changes are spooled (apply, plan --out) reads the record hash: asis; a
    # plain plan does not (nothing stores it): no_hash
    for variant, spooled in (("asis", True), ("no_hash", False)):
        sent.clear()
        with tempfile.TemporaryDirectory() as spool:
            make_plan(load_project(project), spool_dir=Path(spool) if spooled else None)
        ok = bool(sent) and con.execute(*sent[0]).fetchall() == con.execute(
            VARIANTS[variant]).fetchall()
        print(f"{'a spooled' if spooled else 'a plain'} plan's model query and {variant} "
              + ("give the same rows" if ok else "differ: refresh this file's SQL"))
        same = same and ok
    sys.exit(0 if same else 1)


def main() -> None:
    if len(sys.argv) < 2 or (sys.argv[1] == "--check" and len(sys.argv) != 3):
        sys.exit("usage: model_query_parts.py DB [VARIANT ...] | --check PROJECT\n"
                 f"variants: {' '.join(VARIANTS)}")
    unknown = [n for n in sys.argv[2:] if n not in VARIANTS] if sys.argv[1] != "--check" else []
    if unknown:
        sys.exit(f"unknown variant {unknown[0]!r}; variants: {' '.join(VARIANTS)}")
    if sys.argv[1] == "--check":
        check(Path(sys.argv[2]))
    db, names = sys.argv[1], sys.argv[2:] or list(VARIANTS)
    if not Path(db).is_file():
        sys.exit(f"no SQLite file at {db}: give a generate.py project's warehouse.db")
    for name in names:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        con.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
        con.execute(f"PRAGMA soft_heap_limit = {SQLITE_SOFT_HEAP_BYTES}")
        con.create_function("brazecfg_row_hash", -1, sqlite_row_hash, deterministic=True)
        wall, cpu = time.perf_counter(), time.process_time()
        cur = con.execute(VARIANTS[name])
        first = time.perf_counter() - wall
        rows = 0
        while batch := cur.fetchmany(1000):
            rows += len(batch)
        print(f"{name:20} {time.perf_counter() - wall:6.2f} s (first row at {first:5.2f} s), "
              f"CPU {time.process_time() - cpu:6.2f} s, {rows:,} rows", flush=True)
        con.close()


if __name__ == "__main__":
    main()
