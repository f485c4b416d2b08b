"""The model query on DuckDB, read through brazecfg (``stream_model``, related-row counts as a
first plan reads them), at a given ``memory_limit`` and number of threads: how long, how
much memory for the whole process, and whether it finishes. ``--window`` builds the query
as before the pick (compile.PICK_DIALECTS emptied: a ROW_NUMBER() window for the
``most_recent`` property), so both shapes run on the same file in the same round.

    .venv/bin/python bench/duckdb_model.py --users 10000000                 # the defaults
    .venv/bin/python bench/duckdb_model.py --users 10000000 --threads 2 --window
    .venv/bin/python bench/duckdb_model.py --users 1000000 --memory 384MB --threads 1 2

The warehouse is bench/warehouse_state.py's (N users, 2 to 4 purchases each, generated in
DuckDB's own SQL), made once under OUT and reused. Each run is its own process measured with
os.wait4 (bench/measure.py); an out-of-memory run is reported as such, with its time.
Exit status 1 when a run with brazecfg's defaults (no --memory, no --threads) fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import PYTHON, ROOT, revision, timed  # noqa: E402
from warehouse_state import users_sql, write_project  # noqa: E402

CHILD = """
import sys
from datetime import datetime, timezone
from brazecfg.config.loader import load_project
from brazecfg.warehouse import compile as c
from brazecfg.warehouse.connect import connect
if sys.argv[2] == "window":
    c.PICK_DIALECTS = frozenset()
p = load_project(sys.argv[1])
wh = connect(p.apps["warehouse"], p)
n = 0
try:
    for _ in wh.stream_model("users", now=datetime(2026, 12, 3, tzinfo=timezone.utc),
                             hash_kind=c.HASH_COUNTS):
        n += 1
finally:
    wh.close()
print(n)
"""


def warehouse(out: Path, n: int) -> Path:
    root = out / f"duckdb-model-{n}"
    db = root / "warehouse.duckdb"
    if not db.exists():
        write_project(root, "kind: app\nname: warehouse\ntype: duckdb\n"
                            "options: {path: warehouse.duckdb}\n")
        import duckdb

        con = duckdb.connect(str(db))
        for statement in users_sql(n, duck=True):
            con.execute(statement)
        con.close()
    return root


def set_options(root: Path, memory: str | None, threads: int | None) -> None:
    options = ["path: warehouse.duckdb"]
    if memory:
        options.append(f"memory_limit: {memory}")
    if threads:
        options.append(f"threads: {threads}")
    apps = root / "apps.yml"
    head, _, rest = apps.read_text().partition("---")
    head = head[:head.index("options:")] + "options: {" + ", ".join(options) + "}\n"
    apps.write_text(head + "---" + rest)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--memory", help="options.memory_limit (default: brazecfg's)")
    ap.add_argument("--threads", type=int, nargs="*", default=[],
                    help="options.threads to run with, one run each (default: brazecfg's)")
    ap.add_argument("--window", action="store_true", help="also run the window's query")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    root = warehouse(out, args.users)
    shapes = ["pick", "window"] if args.window else ["pick"]
    failed = False
    results = []
    for _ in range(args.repeat):
        for threads in args.threads or [None]:
            set_options(root, args.memory, threads)
            for shape in shapes:  # interleaved: each setting runs both shapes in turn
                r = timed([PYTHON, "-c", CHILD, str(root), shape], dict(os.environ),
                          out / f"duckdb-model-{args.users}-{shape}")
                done = r.returncode == 0
                oom = "Out of Memory" in r.stderr
                row = {"users": args.users, "shape": shape, "memory_limit": args.memory,
                       "threads": threads, "exit": r.returncode, "wall_s": r.wall_s,
                       "peak_rss_mb": r.peak_rss_mb, "cpu_s": r.cpu_s,
                       "rows": int(r.stdout.split()[-1]) if done else None,
                       "out_of_memory": oom}
                results.append(row)
                print(f"{shape:6} memory_limit {args.memory or 'default'} threads "
                      f"{threads or 'default'}: "
                      + (f"{row['rows']:,} rows" if done else
                         "out of memory" if oom else f"exit {r.returncode}")
                      + f", {r.wall_s} s, {r.peak_rss_mb} MB", flush=True)
                if not done and not oom:
                    print(r.stderr[-2000:], file=sys.stderr)
                if shape == "pick" and not args.memory and not threads and (
                        not done or row["rows"] != args.users):
                    failed = True
    (out / f"duckdb-model-{args.users}.json").write_text(json.dumps(
        {"revision": revision(), "runs": results}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
