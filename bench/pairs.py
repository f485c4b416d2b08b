"""Interleaved pairs: one brazecfg command run alternately on an earlier commit and on this
checkout, on the same project files, against bench/sink.py. How bench/README.md's "before /
after" figures are taken (the machine's speed drifts by tens of percent within an hour, so
only runs taken in turn compare).

    .venv/bin/python bench/pairs.py PROJECT --base 8e47372 --runs 3 -- plan --format json
    .venv/bin/python bench/pairs.py PROJECT --base 8e47372 --runs 3 --fresh -- apply --auto-approve

PROJECT: a project directory (`bench/generate.py DIR --users N` makes one). ``--base``: the
earlier commit, checked out into a temporary worktree, which each base run has first on
PYTHONPATH (this checkout's runs have this checkout first). ``--fresh``: before every run,
forget the project's state (ledger, hash key, lockfile) and the sink's users, so each run
is a first run. Each run is its own process under bench/measure.py (wall, peak RSS, CPU of
it and the children it waited for). Prints a Markdown table with each run's output digest
(two runs of one plan should print the same bytes) and, for an apply, what the sink
received; exits 1 when a run fails or a pair's outputs differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import MEASURE, PYTHON, ROOT, Sink, bench_env, reset_project_state  # noqa: E402


def run(project: Path, code: Path, argv: list[str], env: dict[str, str],
        out: Path) -> dict[str, Any]:
    """One command, with ``code`` first on PYTHONPATH."""
    env = dict(env, PYTHONPATH=os.pathsep.join(
        [str(code), *filter(None, [os.environ.get("PYTHONPATH")])]))
    result = out / "measure.json"
    with (out / "stdout").open("wb") as so, (out / "stderr").open("wb") as se:
        subprocess.run([PYTHON, MEASURE, str(result), "--", PYTHON, "-m", "brazecfg", *argv],
                       cwd=project, env=env, stdout=so, stderr=se, check=False)
    m: dict[str, Any] = json.loads(result.read_text())
    m["digest"] = hashlib.sha256((out / "stdout").read_bytes()).hexdigest()[:12]
    return m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("project", type=Path)
    ap.add_argument("--base", required=True, help="the earlier commit")
    ap.add_argument("--runs", type=int, default=3, help="pairs (default 3)")
    ap.add_argument("--fresh", action="store_true",
                    help="forget the state and the sink's users before every run")
    given = sys.argv[1:]
    cut = given.index("--") if "--" in given else len(given)
    args = ap.parse_args(given[:cut])
    argv = given[cut + 1:]
    if not argv:
        ap.error("give the brazecfg command after --")
    project = args.project.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="brazecfg-pairs-"))
    base = tmp / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--quiet", "--detach",
                    str(base), args.base], check=True)
    sink = Sink(tmp / "sink.log")
    rows: list[tuple[int, str, dict[str, Any], dict[str, Any]]] = []
    failed = False
    try:
        env = bench_env(sink.url)
        for i in range(1, args.runs + 1):
            for who, code in (("base", base), ("new", ROOT)):
                if args.fresh:
                    reset_project_state(project)
                    sink.post("reset")
                out = tmp / f"{who}-{i}"
                out.mkdir()
                m = run(project, code, argv, env, out)
                stats = sink.stats()
                rows.append((i, who, m, stats))
                print(f"{who} {i}: exit {m['returncode']}, {m['wall_s']:.1f} s, "
                      f"{m['cpu_s']:.1f} s CPU, {m['maxrss_kb'] / 1024:.1f} MB, output "
                      f"{m['digest']}, sink holds {stats.get('users', 0):,} users",
                      flush=True)
                failed |= m["returncode"] not in (0, 2)  # 2: a plan with changes
    finally:
        sink.stop()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                       check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n`brazecfg {' '.join(argv)}` in {project}, base `{args.base}` against this "
          "checkout, interleaved\n")
    print("| pair | base: wall s, CPU s, MB | new: wall s, CPU s, MB | outputs | sink: users, requests |")
    print("|---|---:|---:|---|---|")
    for i in range(1, args.runs + 1):
        (b, bs), (n, ns) = ((m, st) for who in ("base", "new")
                            for j, w, m, st in rows if j == i and w == who)
        same = b["digest"] == n["digest"]
        # A plan prints the same bytes for the same inputs; an apply's lines may carry times,
        # so what the sink received is its measure.
        failed |= not same and argv[0] == "plan"
        failed |= args.fresh and (bs.get("users"), bs.get("requests")) != (
            ns.get("users"), ns.get("requests"))
        print(f"| {i} | {b['wall_s']:.1f}, {b['cpu_s']:.1f}, {b['maxrss_kb'] / 1024:.1f} | "
              f"{n['wall_s']:.1f}, {n['cpu_s']:.1f}, {n['maxrss_kb'] / 1024:.1f} | "
              f"{'the same' if same else 'differ'} | "
              f"{f'{received(bs)} / {received(ns)}' if args.fresh else '(with --fresh)'} |")
    return 1 if failed else 0


def received(stats: dict[str, Any]) -> str:
    requests = sum(sum(by_status.values()) for by_status in
                   (stats.get("requests") or {}).values())
    return f"{stats.get('users', 0):,}, {requests:,}"


if __name__ == "__main__":
    sys.exit(main())
