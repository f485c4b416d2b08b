"""End-to-end benchmark: wall time, peak memory and requests of plan and apply for N users,
checked against what the Braze emulator received (never against brazecfg's own output).

    .venv/bin/python bench/run.py                    # N = 100,000
    .venv/bin/python bench/run.py --users 1000000    # several minutes; run it with nohup
    .venv/bin/python bench/run.py --users 20000 --concurrency 4 --out /tmp/bench

Steps, each `brazecfg` command a separate process measured with os.wait4 (wall seconds,
peak RSS = ru_maxrss, CPU seconds):

  setup  generate the project into OUT/N/ (bench/generate.py; not measured), forget any
         brazecfg state there, start `brazecfg emulator` on a free 127.0.0.1 port and point
         BRAZE_REST_ENDPOINT at it
  (a)    plan                   first plan: N creates
  (b)    apply --auto-approve   check: the emulator holds exactly N users
  (c)    generate.py --mutate   1% last_name changed, 0.1% deleted, 0.1% added (not measured)
  (d)    plan                   check: counts match the mutation
  (e)    apply --auto-approve   check, from the emulator's request log and store: attribute
         objects sent == changed + added, each exactly once; changed users sent only
         last_name (with the new value); deleted users are gone; the store holds
         N - deleted + added users
  (f)    plan                   check: no changes (exit 0 with --detailed-exitcode)

Prints a Markdown table and writes OUT/results-N.json. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
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
    Emulator,
    bench_env,
    machine,
    prepare,
    request_delta,
    revision,
    timed,
    total,
)

MAPPED = {"email", "first_name", "last_name", "country", "lifetime_value", "purchase_count",
          "last_product"}


def warehouse_ids(db: Path) -> dict[str, str]:
    """external_id -> last_name, straight from the warehouse."""
    con = sqlite3.connect(db)
    try:
        return {str(i): ln for i, ln in con.execute("SELECT id, last_name FROM users")}
    finally:
        con.close()


GROUP_ID = "6f0b5c0e-7d4c-4a57-9a64-3c1f4c0a0001"  # high_value in generate.py


def high_value(project: Path, external_id: str) -> bool:
    """The group rule, computed from the warehouse: paid purchases sum to 500 or more."""
    con = sqlite3.connect(project / "warehouse.db")
    try:
        (ltv,) = con.execute("SELECT SUM(amount) FROM purchases WHERE user_id = ? AND "
                             "status = 'paid'", (int(external_id),)).fetchone()
    finally:
        con.close()
    return ltv is not None and ltv >= 500


def subscribed(profile: dict[str, Any] | None) -> bool:
    return bool(profile) and (profile or {}).get("subscription_groups", {}).get(
        GROUP_ID) == "subscribed"


def plan_counts(stdout: str) -> dict[str, Any]:
    data = json.loads(stdout)
    counts: dict[str, int] = {}
    fields: dict[str, int] = {}
    for d in data["destinations"]:
        for k, v in d["counts"].items():
            counts[k] = counts.get(k, 0) + v
        for k, v in d["fields_set"].items():
            fields[k] = fields.get(k, 0) + v
    return {"has_changes": data["has_changes"], "counts": counts, "fields_set": fields}


class Checks:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def __call__(self, name: str, ok: bool, detail: str = "") -> None:
        self.items.append({"check": name, "ok": bool(ok), "detail": detail})
        print(f"  [{'ok' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}", flush=True)

    @property
    def ok(self) -> bool:
        return all(c["ok"] for c in self.items)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--users", type=int, default=100_000, help="N (default 100000)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out",
                    help="scratch folder (default bench/out, gitignored)")
    ap.add_argument("--concurrency", type=int, default=None,
                    help="the braze app's concurrency option (default: brazecfg's, sized to the rate limit)")
    ap.add_argument("--sample", type=int, default=50,
                    help="profiles looked up one by one in the emulator (default 50)")
    args = ap.parse_args()
    rev = revision()
    n = args.users
    out = args.out.resolve()

    project, logs, gen_s = prepare(out, str(n), n, options=(
        {"concurrency": args.concurrency} if args.concurrency else None))
    emu = Emulator(logs / "emulator.log")
    env = bench_env(emu.url)
    checks = Checks()
    phases: list[dict[str, Any]] = []
    mutation: dict[str, int] = {}

    def phase(name: str, command: list[str], records: int | None = None) -> Any:
        before = emu.stats()
        r = timed([BRAZECFG, *command], env, logs / name.replace(" ", "_"))
        after = emu.stats()
        delta = request_delta(before, after)
        row = {"phase": name, "command": "brazecfg " + " ".join(
                   c if c != str(project) else "OUT/N" for c in command),
               "exit": r.returncode, "wall_s": r.wall_s, "peak_rss_mb": r.peak_rss_mb,
               "cpu_s": r.cpu_s, "records": records, "requests": total(delta),
               "requests_by_path": delta, "throttled_429": total(delta, status="429")}
        phases.append(row)
        print(f"{name}: exit {r.returncode}, {r.wall_s} s, {r.peak_rss_mb} MB, "
              f"{total(delta)} requests {delta}", flush=True)
        if r.returncode not in (0, 2):
            print(r.stderr[-3000:], file=sys.stderr)
        return r, row, delta

    try:
        # (a) first plan
        r, row, _ = phase("plan 1", ["plan", str(project), "--format", "json",
                                     "--detailed-exitcode"])
        p1 = plan_counts(r.stdout)
        row["records"] = sum(p1["counts"].values())
        checks("plan 1 creates every user", p1["counts"].get("create") == n,
               f"create={p1['counts'].get('create')}")

        # (b) first apply
        r, row, delta = phase("apply 1", ["apply", str(project), "--auto-approve"])
        row["records"] = p1["counts"]["create"]
        users = emu.stats()["users"]
        checks("apply 1 exit 0", r.returncode == 0)
        checks("after apply 1 the emulator holds exactly N users", users == n, f"{users:,}")
        track = total(delta, "/users/track", "201")
        checks("apply 1 sent ceil(N/75) /users/track requests",
               track == -(-n // 75), f"{track:,} accepted, {row['throttled_429']} throttled")

        sample = [str(i) for i in range(1, n + 1, max(1, n // args.sample))][: args.sample]
        wrong = [i for i in sample if subscribed(emu.user(i)) != high_value(project, i)]
        checks(f"sampled profiles ({len(sample)}) are in the subscription group iff ltv >= 500",
               not wrong, f"wrong: {wrong[:5]}")

        # (c) mutate (setup, not measured as a brazecfg phase)
        before_ids = warehouse_ids(project / "warehouse.db")
        max_before = max(int(i) for i in before_ids)
        m = subprocess.run([PYTHON, GENERATE, str(project), "--mutate"], check=True,
                           capture_output=True, text=True)
        mutation = json.loads(m.stdout)
        after_ids = warehouse_ids(project / "warehouse.db")
        changed = {i: ln for i, ln in after_ids.items()
                   if i in before_ids and before_ids[i] != ln}
        added = {i: ln for i, ln in after_ids.items() if int(i) > max_before}
        deleted = set(before_ids) - set(after_ids)
        del before_ids
        print(f"mutate: {mutation}", flush=True)
        checks("mutation seen in the warehouse", (len(changed), len(deleted), len(added)) == (
            mutation["changed"], mutation["deleted"], mutation["added"]))

        # (d) second plan
        r, row, _ = phase("plan 2", ["plan", str(project), "--format", "json",
                                     "--detailed-exitcode"])
        p2 = plan_counts(r.stdout)
        row["records"] = sum(p2["counts"].values())
        c = p2["counts"]
        checks("plan 2 counts = mutation",
               (c.get("update"), c.get("delete"), c.get("create")) ==
               (len(changed), len(deleted), len(added)),
               f"update={c.get('update')} delete={c.get('delete')} create={c.get('create')}")
        checks("plan 2 sets last_name for changed + added only",
               p2["fields_set"].get("last_name") == len(changed) + len(added),
               json.dumps(p2["fields_set"], sort_keys=True))

        # (e) second apply, checked from the emulator
        seq0 = emu.last_seq()
        r, row, delta = phase("apply 2", ["apply", str(project), "--auto-approve"])
        row["records"] = c.get("update", 0) + c.get("delete", 0) + c.get("create", 0)
        checks("apply 2 exit 0", r.returncode == 0)
        n_track = total(delta, "/users/track")
        logged = emu.get(f"requests?path=/users/track&limit={max(n_track, 1)}")["requests"]
        logged = [e for e in logged if e["seq"] > seq0]
        checks("request log holds every /users/track request of apply 2",
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
                elif xid in added and not ({"last_name", "email"} <= keys <= MAPPED):
                    wrong_fields.append(f"{xid}: {sorted(keys)}")
        objects = sum(sent.values())
        row["attribute_objects"] = objects
        checks("apply 2 attribute objects == changed + added",
               objects == len(changed) + len(added),
               f"{objects:,} sent, {len(changed):,} changed + {len(added):,} added")
        checks("apply 2 sent each changed/added user exactly once",
               set(sent) == set(changed) | set(added) and all(v == 1 for v in sent.values()),
               f"{len(set(sent) - set(changed) - set(added))} unexpected ids, "
               f"{sum(1 for v in sent.values() if v > 1)} repeated")
        checks("changed users sent only last_name, with the new value",
               not wrong_fields and not wrong_values,
               f"{len(wrong_fields)} wrong field sets {wrong_fields[:3]}, "
               f"{len(wrong_values)} wrong values")
        del_logged = emu.get(f"requests?path=/users/delete&limit="
                             f"{max(total(delta, '/users/delete'), 1)}")["requests"]
        del_ids = [i for e in del_logged if e["seq"] > seq0 and e["status"] == 201
                   for i in e["body"]["external_ids"]]
        checks("apply 2 /users/delete ids == deleted users",
               sorted(del_ids) == sorted(deleted), f"{len(del_ids):,} ids")
        still = [i for i in sorted(deleted) if emu.user(i) is not None]
        checks("every deleted user is gone from the emulator", not still,
               f"{len(still)} of {len(deleted)} still there")
        stats_users = emu.stats()["users"]
        expect = n - len(deleted) + len(added)
        checks("emulator holds N - deleted + added users", stats_users == expect,
               f"{stats_users:,} (expected {expect:,})")
        sample = sorted(changed)[:: max(1, len(changed) // args.sample)][: args.sample]
        bad = []
        for xid in sample:
            u = emu.user(xid) or {}
            ln = (u.get("attributes") or {}).get("last_name", u.get("last_name"))
            if ln != changed[xid]:
                bad.append(xid)
        checks(f"sampled profiles ({len(sample)}) carry the new last_name", not bad,
               f"mismatch: {bad[:5]}")

        # (f) third plan: nothing left to do
        r, row, _ = phase("plan 3", ["plan", str(project), "--format", "json",
                                     "--detailed-exitcode"])
        p3 = plan_counts(r.stdout)
        row["records"] = sum(p3["counts"].values())
        pc = p3["counts"]
        checks("plan 3 reports no changes",
               r.returncode == 0 and not p3["has_changes"] and
               not (pc.get("create") or pc.get("update") or pc.get("delete")),
               f"exit {r.returncode}, counts {pc}")
        emu_rss = emu.peak_rss_mb()
    finally:
        emu.stop()

    for row in phases:
        row["records_per_s"] = round(row["records"] / row["wall_s"]) if row["records"] else None
    rss = [p["peak_rss_mb"] for p in phases]
    checks(f"peak RSS under 300 MB at N={n:,}", max(rss) < 300, f"max {max(rss)} MB")
    ledger = project / ".brazecfg" / "ledger.sqlite"
    result = {
        "users": n,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "revision": rev if rev == revision() else f"{rev}, then {revision()} (changed mid-run)",
        "pythonpath": os.environ.get("PYTHONPATH", ""),
        "generate_s": round(gen_s, 1),
        "mutation": mutation,
        "emulator_peak_rss_mb": emu_rss,
        "ledger_mb": round(ledger.stat().st_size / 1e6, 1) if ledger.exists() else None,
        "phases": phases,
        "checks": checks.items,
        "ok": checks.ok,
        "command": " ".join([".venv/bin/python", "bench/run.py", *sys.argv[1:]]),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"results-{n}.json").write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(markdown(result))
    return 0 if checks.ok else 1


def markdown(result: dict[str, Any]) -> str:
    lines = [f"N = {result['users']:,} ({result['date']}, {result['machine']['cores']} cores)",
             "",
             "| phase | wall s | peak RSS MB | CPU s | records | records/s | requests | 429s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for p in result["phases"]:
        rps = f"{p['records_per_s']:,}" if p["records_per_s"] else "-"
        rec = f"{p['records']:,}" if p["records"] is not None else "-"
        lines.append(f"| {p['phase']} | {p['wall_s']:.1f} | {p['peak_rss_mb']:.0f} | "
                     f"{p['cpu_s']:.1f} | {rec} | {rps} | {p['requests']:,} | "
                     f"{p['throttled_429']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
