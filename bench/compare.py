"""brazecfg against its references, in one round, on the same fast Braze stand-in.

    .venv/bin/python bench/compare.py                      # N = 100,000
    .venv/bin/python bench/compare.py --users 1000000      # run it with nohup
    .venv/bin/python bench/compare.py --repeat 3           # medians of 3 rounds

The stand-in is bench/sink.py (not the emulator): it records what it received, costs about
0.25 ms of CPU per request of 75 objects, and reports its own CPU, so what is measured is
the client. The references:

  floor  bench/floor.py: read the warehouse's model rows (the same query semantics), map them
         to the same attribute objects, serialise /users/track bodies of 75. No HTTP.
  loop   bench/loop.py: a plain single-threaded requests loop sending the floor's bodies
         (and, on the second run, /users/delete for the deleted ids). No state.

One round, every command its own process measured with os.wait4 (wall, peak RSS, CPU):

  setup       generate OUT/compare-N (sources declare updated_at), start the sink
  floor 1     check: N records in ceil(N/75) bodies
  loop 1      check from the sink: N users, ceil(N/75) requests, sampled subscriptions;
              then the sink is reset
  plan 1      brazecfg plan: N creates
  apply 1     brazecfg apply: the sink holds N users after ceil(N/75) /users/track requests,
              sampled subscriptions right
  mutate      generate.py --mutate --stamp own: 1% changed, 0.1% deleted, 0.1% added, each
              changed or added row stamped with its own updated_at between the start of
              apply 1 and now (read back from the warehouse, not taken from the generator)
  floor 2     check: N - deleted + added records
              (the sink's users and brazecfg's state are saved here; both second runs and
              loop 2 start from them)
  plan 2 full, apply 2 full    --full-refresh: counts, then from the sink's request log and
              store: objects == changed + added, each once, changed users carry only the new
              last_name, deletes == deleted users, store N - deleted + added
  plan 2 inc, apply 2 inc      the same, reading incrementally (updated_at); with
              --no-updated-at instead plan 2 hash, apply 2 hash: record hashes compared in
              the warehouse, only changed records read
  plan 3      no changes (after the second plain run)
  loop 2      resend everyone + the deletes: objects == N - deleted + added, deleted gone

Writes OUT/compare-N.json (compare-N-hash.json with --no-updated-at) (every run, the checks, the ratios, load averages, the sink's CPU)
and OUT/compare-N.md (the table of ratios). Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    BRAZECFG,
    GENERATE,
    PYTHON,
    ROOT,
    Sink,
    bench_env,
    configured_concurrency,
    load_average,
    machine,
    prepare,
    request_delta,
    revision,
    timed,
    total,
)
from run import MAPPED, Checks, high_value, plan_counts, subscribed, warehouse_ids  # noqa: E402

FLOOR = str(ROOT / "bench" / "floor.py")
LOOP = str(ROOT / "bench" / "loop.py")
TRACK = "/users/track"


class Round:
    def __init__(self, args: argparse.Namespace, index: int) -> None:
        self.args = args
        self.n = args.users
        self.index = index
        self.checks = Checks()
        self.runs: list[dict[str, Any]] = []
        self.mutation: dict[str, int] = {}
        self.sink_rss: float | None = None
        out = args.out.resolve()
        options = {"concurrency": args.concurrency} if args.concurrency else None
        self.project, self.logs, self.gen_s = prepare(out, tag(args), self.n,
                                                      options=options,
                                                      updated_at=not args.no_updated_at)
        self.concurrency = configured_concurrency(self.project)
        self.sink = Sink(self.logs / "sink.log")
        self.env = bench_env(self.sink.url)

    def run(self, name: str, tool: str, argv: list[str]) -> tuple[Any, dict[str, Any],
                                                                 dict[str, dict[str, int]]]:
        before = self.sink.stats()
        load0 = load_average()
        r = timed(argv, self.env, self.logs / name.replace(" ", "_"))
        load1 = load_average()
        after = self.sink.stats()
        delta = request_delta(before, after)
        row = {"run": name, "tool": tool, "exit": r.returncode, "wall_s": r.wall_s,
               "cpu_s": r.cpu_s, "peak_rss_mb": r.peak_rss_mb, "requests": total(delta),
               "requests_by_path": delta,
               "attribute_objects": after["attribute_objects"] - before["attribute_objects"],
               "throttled_429": total(delta, status="429"),
               "sink_cpu_s": round(after["cpu_s"] - before["cpu_s"], 2),
               "load_start": load0, "load_end": load1}
        self.runs.append(row)
        print(f"{name}: exit {r.returncode}, {r.wall_s} s wall, {r.cpu_s} s CPU, "
              f"{r.peak_rss_mb} MB, {total(delta)} requests, sink CPU {row['sink_cpu_s']} s, "
              f"load {load0[0]} -> {load1[0]}", flush=True)
        if r.returncode not in (0, 2):
            print(r.stderr[-3000:], file=sys.stderr)
        return r, row, delta

    def sample_subscriptions(self, label: str) -> None:
        n, k = self.n, self.args.sample
        sample = [str(i) for i in range(1, n + 1, max(1, n // k))][:k]
        wrong = [i for i in sample if subscribed(self.sink.user(i)) != high_value(self.project, i)]
        self.checks(f"{label}: sampled profiles ({len(sample)}) are in the subscription group "
                    "iff ltv >= 500", not wrong, f"wrong: {wrong[:5]}")

    def first_sync_checks(self, label: str, delta: dict[str, dict[str, int]]) -> None:
        n = self.n
        users = self.sink.stats()["users"]
        self.checks(f"{label}: the sink holds exactly N users", users == n, f"{users:,}")
        track = total(delta, TRACK, "201")
        self.checks(f"{label}: ceil(N/75) /users/track requests accepted",
                    track == -(-n // 75), f"{track:,}, {total(delta, status='429')} throttled")
        self.sample_subscriptions(label)

    def go(self) -> None:
        n, c, project = self.n, self.checks, self.project
        p = str(project)
        try:
            r, row, _ = self.run("floor 1", "floor", [PYTHON, FLOOR, p])
            f1 = json.loads(r.stdout)
            row["records"] = f1["records"]
            c("floor 1: N records in ceil(N/75) bodies",
              (f1["records"], f1["requests"]) == (n, -(-n // 75)), json.dumps(f1))

            r, row, delta = self.run("loop 1", "loop", [PYTHON, LOOP, p])
            row["records"] = n
            c("loop 1 exit 0", r.returncode == 0)
            self.first_sync_checks("loop 1", delta)
            self.sink.post("reset")

            r, row, _ = self.run("plan 1", "brazecfg", [BRAZECFG, "plan", p, "--format", "json",
                                                        "--detailed-exitcode"])
            p1 = plan_counts(r.stdout)
            row["records"] = n
            c("plan 1 creates every user", p1["counts"].get("create") == n,
              f"create={p1['counts'].get('create')}")

            since = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            r, row, delta = self.run("apply 1", "brazecfg", [BRAZECFG, "apply", p,
                                                             "--auto-approve"])
            row["records"] = n
            c("apply 1 exit 0", r.returncode == 0)
            self.first_sync_checks("apply 1", delta)

            # mutate (setup, not measured)
            before_ids = warehouse_ids(project / "warehouse.db")
            max_before = max(int(i) for i in before_ids)
            m = subprocess.run([PYTHON, GENERATE, p, "--mutate", "--stamp", self.args.stamp,
                                "--since", since], check=True, capture_output=True, text=True)
            self.mutation = json.loads(m.stdout)
            after_ids = warehouse_ids(project / "warehouse.db")
            changed = {i: ln for i, ln in after_ids.items()
                       if i in before_ids and before_ids[i] != ln}
            added = {i: ln for i, ln in after_ids.items() if int(i) > max_before}
            deleted = set(before_ids) - set(after_ids)
            del before_ids, after_ids
            print(f"mutate: {self.mutation} (--stamp {self.args.stamp} --since {since})",
                  flush=True)
            c("mutation seen in the warehouse", (len(changed), len(deleted), len(added)) == (
                self.mutation["changed"], self.mutation["deleted"], self.mutation["added"]))
            n2 = n - len(deleted) + len(added)

            r, row, _ = self.run("floor 2", "floor", [PYTHON, FLOOR, p])
            f2 = json.loads(r.stdout)
            row["records"] = f2["records"]
            c("floor 2: N - deleted + added records", f2["records"] == n2, json.dumps(f2))

            # both second runs and loop 2 start from here
            self.sink.post("snapshot")
            saved = self.logs / "state-after-apply-1"
            save_state(project, saved)

            # Without updated_at the second plain run compares record hashes in the warehouse
            # and reads only the records whose hash changed ("hash"); with it, it reads
            # incrementally ("inc"), with the hash pass for what the stamps cannot show.
            second = "hash" if self.args.no_updated_at else "inc"
            for mode, extra in (("full", ["--full-refresh"]), (second, [])):
                if mode == second:
                    self.sink.post("restore")
                    restore_state(saved, project)
                self.second_run(mode, extra, changed, added, deleted)
            r, row, _ = self.run("plan 3", "brazecfg", [BRAZECFG, "plan", p, "--format",
                                                            "json", "--detailed-exitcode"])
            p3 = plan_counts(r.stdout)
            row["records"] = sum(p3["counts"].values())
            pc = p3["counts"]
            c("plan 3 reports no changes",
              r.returncode == 0 and not p3["has_changes"] and
              not (pc.get("create") or pc.get("update") or pc.get("delete")),
              f"exit {r.returncode}, counts {pc}")

            self.sink.post("restore")
            dels = self.logs / "deleted.txt"
            dels.write_text("\n".join(sorted(deleted)) + "\n")
            r, row, delta = self.run("loop 2", "loop", [PYTHON, LOOP, p, "--deletes", str(dels)])
            row["records"] = n2 + len(deleted)
            c("loop 2 exit 0", r.returncode == 0)
            c("loop 2 sent everyone: objects == N - deleted + added",
              row["attribute_objects"] == n2, f"{row['attribute_objects']:,}")
            self.store_checks("loop 2", changed, deleted, n2)
            self.sink_rss = self.sink.stats()["peak_rss_mb"]
        finally:
            self.sink.stop()

    def second_run(self, mode: str, extra: list[str], changed: dict[str, str],
                   added: dict[str, str], deleted: set[str]) -> None:
        c, p, sink = self.checks, str(self.project), self.sink
        r, row, _ = self.run(f"plan 2 {mode}", "brazecfg", [
            BRAZECFG, "plan", p, "--format", "json", "--detailed-exitcode", *extra])
        p2 = plan_counts(r.stdout)
        row["records"] = sum(p2["counts"].values())
        cnt = p2["counts"]
        c(f"plan 2 {mode}: counts = mutation",
          (cnt.get("update"), cnt.get("delete"), cnt.get("create")) ==
          (len(changed), len(deleted), len(added)),
          f"update={cnt.get('update')} delete={cnt.get('delete')} create={cnt.get('create')}")
        c(f"plan 2 {mode}: last_name set for changed + added only",
          p2["fields_set"].get("last_name") == len(changed) + len(added),
          json.dumps(p2["fields_set"], sort_keys=True))

        seq0 = sink.stats()["seq"]
        r, row, delta = self.run(f"apply 2 {mode}", "brazecfg", [
            BRAZECFG, "apply", p, "--auto-approve", *extra])
        row["records"] = len(changed) + len(deleted) + len(added)
        c(f"apply 2 {mode} exit 0", r.returncode == 0)
        n_track = total(delta, TRACK)
        logged = [e for e in sink.get(f"requests?path={TRACK}&limit={max(n_track, 1)}")[
            "requests"] if e["seq"] > seq0]
        c(f"apply 2 {mode}: the sink's log holds every /users/track request",
          len(logged) == n_track, f"{len(logged)} logged of {n_track}")
        sent: dict[str, int] = {}
        wrong_fields: list[str] = []
        wrong_values: list[str] = []
        for e in logged:
            if e["status"] != 201:
                continue
            for obj in (e["body"] or {}).get("attributes", []):
                xid = obj["external_id"]
                sent[xid] = sent.get(xid, 0) + 1
                keys = set(obj) - {"external_id"}
                if xid in changed:
                    if keys != {"last_name"}:
                        wrong_fields.append(f"{xid}: {sorted(keys)}")
                    elif obj["last_name"] != changed[xid]:
                        wrong_values.append(xid)
                elif xid in added and not ({"last_name", "email"} <= keys <= MAPPED |
                                           {"subscription_groups"}):
                    wrong_fields.append(f"{xid}: {sorted(keys)}")
        objects = sum(sent.values())
        c(f"apply 2 {mode}: attribute objects == changed + added",
          objects == len(changed) + len(added),
          f"{objects:,} sent, {len(changed):,} changed + {len(added):,} added")
        c(f"apply 2 {mode}: each changed/added user sent exactly once",
          set(sent) == set(changed) | set(added) and all(v == 1 for v in sent.values()),
          f"{len(set(sent) - set(changed) - set(added))} unexpected, "
          f"{len((set(changed) | set(added)) - set(sent))} missing, "
          f"{sum(1 for v in sent.values() if v > 1)} repeated")
        c(f"apply 2 {mode}: changed users sent only last_name, with the new value",
          not wrong_fields and not wrong_values,
          f"{len(wrong_fields)} wrong field sets {wrong_fields[:3]}, "
          f"{len(wrong_values)} wrong values")
        n_del = total(delta, "/users/delete")
        del_ids = [i for e in sink.get(f"requests?path=/users/delete&limit={max(n_del, 1)}")[
            "requests"] if e["seq"] > seq0 and e["status"] == 201
            for i in e["body"]["external_ids"]]
        c(f"apply 2 {mode}: /users/delete ids == deleted users",
          sorted(del_ids) == sorted(deleted), f"{len(del_ids):,} ids")
        self.store_checks(f"apply 2 {mode}", changed, deleted, self.n - len(deleted) + len(added))

    def store_checks(self, label: str, changed: dict[str, str], deleted: set[str],
                     expect: int) -> None:
        c, sink, k = self.checks, self.sink, self.args.sample
        still = [i for i in sorted(deleted) if sink.user(i) is not None]
        c(f"{label}: every deleted user is gone", not still,
          f"{len(still)} of {len(deleted)} still there")
        users = sink.stats()["users"]
        c(f"{label}: the sink holds N - deleted + added users", users == expect,
          f"{users:,} (expected {expect:,})")
        sample = sorted(changed)[:: max(1, len(changed) // k)][:k]
        bad = [x for x in sample
               if ((sink.user(x) or {}).get("attributes") or {}).get("last_name") != changed[x]]
        c(f"{label}: sampled profiles ({len(sample)}) carry the new last_name", not bad,
          f"mismatch: {bad[:5]}")


def tag(args: argparse.Namespace) -> str:
    """compare-N, or compare-N-hash for a project without updated_at."""
    return f"compare-{args.users}" + ("-hash" if args.no_updated_at else "")


def save_state(project: Path, to: Path) -> None:
    """brazecfg's state and lockfile, copied (not measured)."""
    shutil.rmtree(to, ignore_errors=True)
    to.mkdir(parents=True)
    shutil.copytree(project / ".brazecfg", to / ".brazecfg")
    for name in ("brazecfg.lock.json", "brazecfg.lock"):
        if (project / name).exists():
            shutil.copy2(project / name, to / name)


def restore_state(saved: Path, project: Path) -> None:
    shutil.rmtree(project / ".brazecfg")
    shutil.copytree(saved / ".brazecfg", project / ".brazecfg")
    for name in ("brazecfg.lock.json", "brazecfg.lock"):
        (project / name).unlink(missing_ok=True)
        if (saved / name).exists():
            shutil.copy2(saved / name, project / name)


RATIOS = [  # (label, run, reference run, measure)
    ("first sync: brazecfg apply / loop", "apply 1", "loop 1", "wall_s"),
    ("first sync, CPU: brazecfg apply / loop", "apply 1", "loop 1", "cpu_s"),
    ("first plan / floor", "plan 1", "floor 1", "wall_s"),
    ("first plan, CPU / floor", "plan 1", "floor 1", "cpu_s"),
    ("second plan, full read / floor", "plan 2 full", "floor 2", "wall_s"),
    ("second apply, full read / floor", "apply 2 full", "floor 2", "wall_s"),
    ("second apply, full read, CPU / floor", "apply 2 full", "floor 2", "cpu_s"),
    ("second apply, full read / loop (resends all)", "apply 2 full", "loop 2", "wall_s"),
    ("second plan, record hashes / floor", "plan 2 hash", "floor 2", "wall_s"),
    ("second apply, record hashes / floor", "apply 2 hash", "floor 2", "wall_s"),
    ("second plan, incremental / floor", "plan 2 inc", "floor 2", "wall_s"),
    ("second apply, incremental / floor", "apply 2 inc", "floor 2", "wall_s"),
    ("peak RSS: brazecfg apply 1 / loop 1", "apply 1", "loop 1", "peak_rss_mb"),
]


def summarise(rounds: list[Round]) -> list[dict[str, Any]]:
    """Per run name, the median of every measure over the rounds."""
    names = [r["run"] for r in rounds[0].runs]
    out = []
    for name in names:
        rows = [r for rd in rounds for r in rd.runs if r["run"] == name]
        med: dict[str, Any] = {"run": name, "tool": rows[0]["tool"], "rounds": len(rows)}
        for key in ("wall_s", "cpu_s", "peak_rss_mb", "requests", "attribute_objects",
                    "throttled_429", "sink_cpu_s", "records"):
            vals = [r[key] for r in rows if r.get(key) is not None]
            med[key] = round(statistics.median(vals), 2) if vals else None
        med["load_start"] = rows[0]["load_start"][0]
        med["load_end"] = rows[-1]["load_end"][0]
        out.append(med)
    return out


def ratios(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {r["run"]: r for r in summary}
    out = []
    for label, run, ref, key in RATIOS:
        if run in by and ref in by and by[ref][key]:
            out.append({"ratio": label, "run": run, "reference": ref, "measure": key,
                        "value": round(by[run][key] / by[ref][key], 2),
                        "run_value": by[run][key], "reference_value": by[ref][key]})
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [f"N = {result['users']:,}, {result['date']}, commit `{result['revision']}`, "
             f"{result['machine']['cores']} cores, brazecfg concurrency "
             f"{result['concurrency']}, median of {result['rounds']} round(s); load average "
             f"{result['load_start'][0]} at the start, {result['load_end'][0]} at the end; "
             f"checks {'all passed' if result['ok'] else 'FAILED'}",
             "",
             "| run | wall s | CPU s | peak RSS MB | requests | objects sent | sink CPU s | "
             "load 1-min start -> end |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in result["summary"]:
        lines.append(f"| {r['run']} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['requests']:,} | {r['attribute_objects']:,} | "
                     f"{r['sink_cpu_s']:.1f} | {r['load_start']} -> {r['load_end']} |")
    lines += ["", "| ratio | value | run | reference |", "|---|---:|---:|---:|"]
    for x in result["ratios"]:
        unit = {"wall_s": "s", "cpu_s": "s CPU", "peak_rss_mb": "MB"}[x["measure"]]
        lines.append(f"| {x['ratio']} | **{x['value']:.2f}x** | {x['run_value']:g} {unit} | "
                     f"{x['reference_value']:g} {unit} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--users", type=int, default=100_000, help="N (default 100000)")
    ap.add_argument("--repeat", type=int, default=1, help="rounds; figures are medians")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--concurrency", type=int, default=None,
                    help="the braze app's concurrency option (default: brazecfg's)")
    ap.add_argument("--sample", type=int, default=50, help="profiles looked up one by one")
    ap.add_argument("--no-updated-at", action="store_true",
                    help="sources declare no updated_at: the second plain run compares record "
                         "hashes (plan 2 hash) instead of reading incrementally (plan 2 inc)")
    ap.add_argument("--stamp", choices=("own", "now"), default="own",
                    help="updated_at of mutated rows (see generate.py; default own)")
    args = ap.parse_args()
    rev = revision()
    load0 = load_average()
    rounds = []
    for i in range(args.repeat):
        print(f"== round {i + 1} of {args.repeat}", flush=True)
        rd = Round(args, i)
        rd.go()
        rounds.append(rd)
    summary = summarise(rounds)
    result = {
        "users": args.users,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "revision": rev if rev == revision() else f"{rev}, then {revision()} (changed mid-run)",
        "pythonpath": os.environ.get("PYTHONPATH", ""),
        "rounds": args.repeat,
        "concurrency": rounds[0].concurrency,
        "stamp": args.stamp,
        "load_start": load0,
        "load_end": load_average(),
        "generate_s": [rd.gen_s for rd in rounds],
        "mutation": rounds[0].mutation,
        "sink_peak_rss_mb": [rd.sink_rss for rd in rounds],
        "summary": summary,
        "ratios": ratios(summary),
        "runs": [rd.runs for rd in rounds],
        "checks": [rd.checks.items for rd in rounds],
        "ok": all(rd.checks.ok for rd in rounds),
        "command": " ".join([".venv/bin/python", "bench/compare.py", *sys.argv[1:]]),
    }
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{tag(args)}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result)
    (out / f"{tag(args)}.md").write_text(md + "\n")
    print()
    print(md)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
