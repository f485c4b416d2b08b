"""A full read of a generate.py project's model through brazecfg (SqlWarehouse.stream_model,
the record hash of values as an apply reads it), in one statement or split into ranges of
key text (engine.SQLITE_SPLIT_*), with a light reader that only checks the key order: the
seconds to the first row and to the last, the rows read.

    .venv/bin/python bench/measure.py OUT.json -- .venv/bin/python bench/split_read.py \
        bench/out/compare-1000000 split        # or: whole

To compare two commits, run each with its checkout first on PYTHONPATH, interleaved.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone

from brazecfg.config.loader import load_project
from brazecfg.warehouse import engine
from brazecfg.warehouse.connect import connect


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[2] not in ("whole", "split"):
        print(__doc__)
        sys.exit(1)
    project = load_project(sys.argv[1])
    model = next(iter(project.models))
    app = project.apps[project.primary_source(model).app]
    if sys.argv[2] == "whole":
        engine.SQLITE_SPLIT_ROWS = 10**12
    wh = connect(app, project)
    try:
        t0 = time.perf_counter()
        first, last, n = None, "", 0
        for row in wh.stream_model(model, now=datetime.now(timezone.utc)):
            if first is None:
                first = time.perf_counter() - t0
            if row.key and row.key < last:
                print(f"FAIL: {row.key!r} after {last!r}")
                sys.exit(1)
            last = row.key or last
            n += 1
        print(f"{sys.argv[2]}: {n:,} rows, first {first or 0:.2f} s, "
              f"all {time.perf_counter() - t0:.2f} s")
    finally:
        wh.close()


if __name__ == "__main__":
    main()
