"""Where brazecfg's time goes: py-spy samples of plan and apply, sorted into categories.

    .venv/bin/pip install py-spy
    .venv/bin/python bench/profile.py --users 250000          # plan 1, apply 1, plan 2
    .venv/bin/python bench/profile.py --aggregate bench/out/profile-250000-logs/plan_1.raw

Against bench/sink.py (so the stand-in is not in the profile), each command runs under
`py-spy record --format raw --idle --threads --rate R`; the folded stacks are written next to
the logs (`*.raw`, loadable in speedscope or inferno) and aggregated: every sample goes to the
first category whose rule matches a frame of its stack (order below: the most specific
first), separately for the main thread and the others.

  ledger lock wait  the innermost frame is `with self._mutex:` in Ledger._write (a thread
                  waiting for another's ledger transaction)
  waits           the innermost frame waits: threading/queue/futures wait or acquire, sleep,
                  select (idle threads and a main thread waiting for workers)
  HTTP            requests, urllib3, http.client, socket, brazecfg/braze/client.py
  startup         imports (any importlib frame), loading and checking the project
  ledger commits  brazecfg/state/ writing (commit, _write, update_groups, intents, ...)
  ledger read     brazecfg/state/ledger.py reading (stream, _pages, record, ...)
  state (open, lock, other)   the rest of brazecfg/state/: opening, the lease, ...
  spool           the plan's spool: RecordChange.to_json/from_json/digest_line, read_spool
  hashing         brazecfg/state/hashing.py (keyed hashes, including their json.dumps)
  state (open, lock, other)   the rest of brazecfg/state/: opening, the lease, ...
  value checks    brazecfg/plan/values.py, RecordBuilder (plan/records.py)
  warehouse read  brazecfg/warehouse/, and SQLAlchemy/sqlite3 under it
  diff            brazecfg/plan/diff.py, merge.py, the planner's loop
  JSON            json encoding/decoding anywhere else (request bodies, answers)
  apply loop      brazecfg/apply/ (chunking, the pipeline, bookkeeping)
  other           the rest
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BIN, BRAZECFG, GENERATE, PYTHON, ROOT, Sink, bench_env, prepare, revision  # noqa: E402

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
WAIT_FUNCS = {"wait", "acquire", "get", "sleep", "select", "poll", "join", "result",
              "_wait_for_tstate_lock", "_worker"}
WAIT_FILES = ("threading.py", "queue.py", "selectors.py", "concurrent/futures", "time")
LEDGER_WRITES = {"commit", "_write", "_bump", "_fence", "update_groups", "mark_events",
                 "mark_sending", "add_intents", "clear_intents", "_delete_ids", "set_watermark",
                 "set_meta", "restore_events", "replace_all"}
LEDGER_READS = {"stream", "_pages", "record", "stream_events", "event_rows", "streams",
                "event_states", "stream_intents", "stream_unsure_users", "failures", "failure",
                "count", "_count", "export_rows"}
SPOOL_FUNCS = {"to_json", "from_json", "digest_line", "read_spool", "add_to_digest"}


def _mutex_lines() -> dict[str, bool]:
    """The lines of Ledger._write that take its mutex (`with self._mutex:`), found in the
    source, so a sample whose innermost frame sits there is a thread waiting for the lock."""
    src = ROOT / "brazecfg" / "state" / "ledger.py"
    try:
        text = src.read_text().splitlines()
    except OSError:
        return {}
    return {str(i + 1): True for i, ln in enumerate(text) if "with self._mutex" in ln}


LEDGER_MUTEX = _mutex_lines()


def category(frames: list[tuple[str, str, str]]) -> str:
    """frames: (function, file, line), outermost first."""
    func, file, line = frames[-1] if frames else ("", "", "")
    if func == "Ledger._write" and "brazecfg/state/ledger.py" in file and \
            LEDGER_MUTEX.get(line, False):
        return "ledger lock wait"
    func = func.rpartition(".")[2]
    if func in WAIT_FUNCS and (any(w in file for w in WAIT_FILES) or not file) or \
            func in ("sleep", "select") or "<built-in" in file and func in ("sleep", "acquire"):
        return "waits"

    def has(pred: Any) -> bool:
        return any(pred(fn, fl) for fn, fl, _ in frames)

    if has(lambda fn, fl: "importlib" in fl):
        return "startup"
    if has(lambda fn, fl: "brazecfg/state/" in fl and fn.rpartition(".")[2] in LEDGER_WRITES):
        return "ledger commits"
    if has(lambda fn, fl: "brazecfg/state/ledger.py" in fl and fn.rpartition(".")[2] in
           LEDGER_READS):
        return "ledger read"
    if has(lambda fn, fl: "requests/" in fl or "urllib3/" in fl or "http/client.py" in fl or
           fl.endswith("socket.py") or "brazecfg/braze/client.py" in fl):
        return "HTTP"
    if has(lambda fn, fl: "brazecfg/plan/definition.py" in fl and
           fn.rpartition(".")[2] in SPOOL_FUNCS):
        return "spool"
    if has(lambda fn, fl: "brazecfg/state/hashing.py" in fl):
        return "hashing"
    if has(lambda fn, fl: "brazecfg/state/" in fl):
        return "state (open, lock, other)"
    if has(lambda fn, fl: "brazecfg/plan/values.py" in fl or "brazecfg/plan/records.py" in fl):
        return "value checks"
    if has(lambda fn, fl: "brazecfg/warehouse/" in fl):
        return "warehouse read"
    if has(lambda fn, fl: "brazecfg/plan/diff.py" in fl or "brazecfg/plan/merge.py" in fl):
        return "diff"
    if has(lambda fn, fl: fl.startswith("json/") or "/json/" in fl):
        return "JSON"
    if has(lambda fn, fl: "brazecfg/apply/" in fl):
        return "apply loop"
    if has(lambda fn, fl: "brazecfg/config/" in fl or "brazecfg/model/" in fl or
           fn == "<module>" and len(frames) < 4):
        return "startup"
    return "other"


def aggregate(raw: Path) -> dict[str, Any]:
    """Samples per category, main thread and other threads, from py-spy's raw output."""
    main: collections.Counter[str] = collections.Counter()
    others: collections.Counter[str] = collections.Counter()
    lines = [ln.rpartition(" ") for ln in raw.read_text().splitlines()]
    # "thread (TID): NAME;frame;..." (the name is missing on some samples: match the tid)
    main_tids = {ln[0].split(")", 1)[0] for ln in lines if ": MainThread;" in ln[0]}
    for stack, _, count in lines:
        if not stack:
            continue
        parts = stack.split(";")
        thread, frames = parts[0], []
        for p in parts[1:]:
            m = FRAME.match(p)
            frames.append((m.group("func"), m.group("file"), m.group("line") or "")
                          if m else (p, "", ""))
        is_main = thread.split(")", 1)[0] in main_tids
        (main if is_main else others)[category(frames)] += int(count)
    total = sum(main.values()) + sum(others.values())
    cats = sorted(set(main) | set(others), key=lambda c: -(main[c] + others[c]))
    return {"samples": total, "main_samples": sum(main.values()),
            "categories": [{"category": c, "main": main[c], "others": others[c],
                            "share_all": round((main[c] + others[c]) / total, 3) if total else 0,
                            "share_main": round(main[c] / sum(main.values()), 3)
                            if main else 0} for c in cats]}


def markdown(name: str, agg: dict[str, Any]) -> str:
    lines = [f"{name}: {agg['samples']:,} samples, {agg['main_samples']:,} on the main thread",
             "", "| category | main thread | other threads | share of main thread |",
             "|---|---:|---:|---:|"]
    for c in agg["categories"]:
        lines.append(f"| {c['category']} | {c['main']:,} | {c['others']:,} | "
                     f"{c['share_main']:.1%} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--users", type=int, default=250_000)
    ap.add_argument("--rate", type=int, default=50, help="py-spy samples per second")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--aggregate", type=Path, nargs="*", help="only aggregate these raw files")
    args = ap.parse_args()
    if args.aggregate:
        for raw in args.aggregate:
            print(markdown(raw.name, aggregate(raw)) + "\n")
        return 0
    spy = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if not spy:
        print("py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 1
    n = args.users
    project, logs, _ = prepare(args.out.resolve(), f"profile-{n}", n)
    sink = Sink(logs / "sink.log")
    env = bench_env(sink.url)
    result: dict[str, Any] = {"users": n, "revision": revision(), "rate": args.rate,
                              "phases": {}}
    steps = [("plan 1", ["plan", str(project)]),
             ("apply 1", ["apply", str(project), "--auto-approve"]),
             ("mutate", None),
             ("plan 2", ["plan", str(project)])]
    try:
        for name, cmd in steps:
            if cmd is None:
                subprocess.run([PYTHON, GENERATE, str(project), "--mutate"], check=True,
                               stdout=subprocess.DEVNULL)
                continue
            raw = logs / f"{name.replace(' ', '_')}.raw"
            with (logs / f"{name.replace(' ', '_')}.out").open("w") as so:
                rc = subprocess.run([spy, "record", "--format", "raw", "--idle", "--threads",
                                     "--rate", str(args.rate), "-o", str(raw), "--",
                                     BRAZECFG, *cmd], env=env, stdout=so,
                                    stderr=subprocess.STDOUT).returncode
            if rc not in (0, 2):
                print(f"{name}: exit {rc}; see {so.name}", file=sys.stderr)
                return 1
            agg = aggregate(raw)
            result["phases"][name] = agg
            print(markdown(name, agg) + "\n", flush=True)
        result["sink"] = sink.stats()
    finally:
        sink.stop()
    ok = result["sink"]["users"] == n  # apply 1 sent everyone; plan 2 sends nothing
    print(f"check: the sink holds {result['sink']['users']:,} users "
          f"({'ok' if ok else 'FAIL'}: expected {n:,})")
    (args.out.resolve() / f"profile-{n}.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
