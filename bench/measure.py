"""Run one command and write its wall time, peak RSS and CPU time as JSON.

    python bench/measure.py RESULT.json -- COMMAND [ARGS...]

Why a separate small process: on Linux a child's ru_maxrss starts from the RSS of the
process that forked it (the high-water mark survives exec), so a benchmark driver that
holds a million ids would inflate every measurement. This launcher is small, so what
os.wait4 reports is the command's own peak. Exit status: the command's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main() -> int:
    out, sep, *argv = sys.argv[1:]
    assert sep == "--" and argv, __doc__
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    with open(out, "w") as f:
        json.dump({"returncode": rc, "wall_s": wall, "maxrss_kb": ru.ru_maxrss,
                   "cpu_s": ru.ru_utime + ru.ru_stime}, f)
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    raise SystemExit(main())
