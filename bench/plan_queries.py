"""Where a plan's warehouse time goes: every SQL statement one plan runs, with the time its
execute took (SQLite and DuckDB answer an ORDER BY only once the whole result is computed,
so for them this is the query's work; the rows' fetch is not included) and the time of the
whole plan. Runs the plan in this process (``make_plan``), against whatever Braze the
project's braze app points at (a plan asks it about opt-outs of joiners).

    .venv/bin/python bench/plan_queries.py PROJECT              # statements over 0.2 s
    .venv/bin/python bench/plan_queries.py PROJECT --min 0 --sql  # all, with their SQL
    .venv/bin/python bench/plan_queries.py PROJECT --full-refresh # a full read

Prints each statement's first line (or, with --sql, its text) and never its parameters,
which can hold keys.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from brazecfg.config.loader import load_project  # noqa: E402
from brazecfg.plan.planner import make_plan  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--min", type=float, default=0.2, help="seconds; shorter ones are summed")
    ap.add_argument("--sql", action="store_true", help="print each statement's text")
    ap.add_argument("--full-refresh", action="store_true", help="read every record, as the "
                    "plan's --full-refresh")
    args = ap.parse_args()
    timed: list[tuple[float, str]] = []

    @event.listens_for(Engine, "before_cursor_execute")
    def before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info["brazecfg_bench_t"] = time.perf_counter()

    @event.listens_for(Engine, "after_cursor_execute")
    def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        timed.append((time.perf_counter() - conn.info.pop("brazecfg_bench_t"), statement))

    start = time.perf_counter()
    plan = make_plan(load_project(args.project), full_refresh=args.full_refresh)
    total = time.perf_counter() - start
    short = [s for s, _ in timed if s < args.min]
    for seconds, statement in timed:
        if seconds >= args.min:
            text = statement if args.sql else " ".join(statement.split())[:110]
            print(f"{seconds:7.2f} s  {text}")
    print(f"{sum(short):7.2f} s  {len(short)} statements under {args.min} s")
    print(f"{sum(s for s, _ in timed):7.2f} s  in execute, of {total:.2f} s for the plan "
          f"({sum(d.changes for d in plan.destinations):,} changes)")


if __name__ == "__main__":
    main()
