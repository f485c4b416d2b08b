"""Rows that leave the warehouse when the state lives in it (issue 9, item 4): DuckDB and
PostgreSQL keeping brazecfg's state in their own database (``state: backend: warehouse``),
so an incremental plan compares the related-row counts of every record with the state's in
one query there, and only the keys whose hash differs leave it.

    .venv/bin/python bench/warehouse_state.py                          # N = 100,000, both
    .venv/bin/python bench/warehouse_state.py --users 1000000 --warehouse duckdb
    .venv/bin/python bench/warehouse_state.py --hashes values   # no updated_at: full reads

Per warehouse, against bench/sink.py (the fast Braze stand-in), every command its own
process measured with os.wait4 (wall, peak RSS of the whole process, DuckDB included):

  setup     N users and about 3 purchases each, generated in the warehouse's own SQL (the
            shape of bench/generate.py: same project files, sources declare updated_at);
            PostgreSQL: a throwaway server (tests/pg.py, initdb/pg_ctl)
  apply 1   the first sync (not the subject here; checked: N users at the sink)
  mutate    1% of users change last_name and get a new updated_at, 0.1% deleted, 0.1% added
  plan 2    the incremental plan (``--hashes values``: a full read comparing value hashes):
            rows_read (plan JSON: every row of the records that left the warehouse),
            compared_in == warehouse, and the counts of the mutation
  apply 2   checked from the sink: exactly changed + added objects, the deleted ids deleted
  plan 3    nothing changed: "No changes", rows_read

Writes OUT/warehouse-state-N.json. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (  # noqa: E402
    BRAZECFG,
    ROOT,
    Sink,
    bench_env,
    machine,
    request_delta,
    revision,
    timed,
    total,
)
from generate import PROJECT_FILES  # noqa: E402

KEY = "bench-shared-hash-key-0123456789"  # the state is shared: its hash key must be set


def users_sql(n: int, *, duck: bool) -> list[str]:
    """The warehouse's tables, generated in its own SQL (deterministic)."""
    series = f"range(1, {n + 1})" if duck else f"generate_series(1, {n})"
    seconds = "((u.id * 4 + k.k) * 7919) % 25000000"
    stamp = (f"strftime(TIMESTAMP '2026-01-01' + to_seconds({seconds}), '%Y-%m-%d %H:%M:%S') "
             if duck else f"to_char(TIMESTAMP '2026-01-01' + make_interval(secs => {seconds}), "
                          "'YYYY-MM-DD HH24:MI:SS') ")
    col = "range" if duck else "generate_series"
    return [
        "CREATE TABLE users (id BIGINT PRIMARY KEY, email TEXT, first_name TEXT, "
        "last_name TEXT, country TEXT, updated_at TEXT)",
        f"INSERT INTO users SELECT {col} AS id, 'user' || {col} || '@example.com', "
        f"'First' || ({col} % 997), 'Last' || ({col} % 1009), "
        f"(ARRAY['US','GB','FR','DE','NL','ES','IT','JP','BR','IN'])[({col} % 10) + 1], "
        f"'2026-01-01 00:00:00' FROM {series} AS s({col})",
        "CREATE TABLE purchases (id BIGINT PRIMARY KEY, user_id BIGINT, product TEXT, "
        "amount DOUBLE PRECISION, status TEXT, created_at TEXT, updated_at TEXT)",
        # 2 to 4 purchases per user
        "INSERT INTO purchases SELECT u.id * 4 + k.k AS id, u.id, "
        "(ARRAY['basic','plus','pro','team','enterprise'])[((u.id + k.k) % 5) + 1], "
        "((u.id * 7 + k.k * 13) % 395) + 5.25, "
        "CASE WHEN (u.id + k.k) % 10 = 0 THEN 'refunded' ELSE 'paid' END, "
        "'2026-' || lpad(CAST(((u.id + k.k) % 10) + 1 AS TEXT), 2, '0') || '-15 12:00:00', "
        # updated_at: spread over 289 days to the second, as a loader's stamps are (a few
        # rows share the newest, which the next incremental read reads again)
        f"{stamp}"
        "FROM users AS u, (SELECT 0 AS k UNION ALL SELECT 1 UNION ALL SELECT 2 "
        "UNION ALL SELECT 3) AS k WHERE k.k < 2 + (u.id % 3)",
        "CREATE INDEX purchases_user ON purchases (user_id)",
    ]


def mutation_sql(n: int) -> tuple[list[str], dict[str, int]]:
    """1% changed (id % 100 = 7), 0.1% deleted (id % 1000 = 3), 0.1% added, stamped now."""
    stamp = "'2026-12-01 12:00:00'"
    changed = sum(1 for i in range(1, n + 1) if i % 100 == 7)
    deleted = sum(1 for i in range(1, n + 1) if i % 1000 == 3)
    added = n // 1000
    return [
        f"UPDATE users SET last_name = last_name || '-changed', updated_at = {stamp} "
        "WHERE id % 100 = 7",
        "DELETE FROM users WHERE id % 1000 = 3",
        f"INSERT INTO users SELECT {n} + i, 'new' || i || '@example.com', 'New', "
        f"'User' || i, 'US', {stamp} FROM generate_series(1, {added}) AS s(i)",
    ], {"changed": changed, "deleted": deleted, "added": added}


def write_project(root: Path, app: str, *, updated_at: bool = True) -> None:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for name, text in PROJECT_FILES.items():
        if name == "model.yml" and updated_at:
            text = text.replace("\nkey: id\n", "\nkey: id\nupdated_at: updated_at\n").replace(
                "\nkey: user_id\n", "\nkey: user_id\nupdated_at: updated_at\n")
        if name == "apps.yml":
            text = app + text[text.index("---"):]
        if name == "brazecfg.yml":
            text += "state:\n  backend: warehouse\n  app: warehouse\n"
        (root / name).write_text(text)


class Round:
    def __init__(self, args: argparse.Namespace, kind: str) -> None:
        self.kind, self.n, self.hashes = kind, args.users, args.hashes
        self.out = args.out.resolve()
        tag = f"{kind}-{self.n}" + ("-values" if self.hashes == "values" else "")
        self.root = self.out / f"warehouse-state-{tag}"
        self.logs = self.out / f"warehouse-state-{tag}-logs"
        shutil.rmtree(self.logs, ignore_errors=True)
        self.logs.mkdir(parents=True)
        self.checks: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []
        self.server: Any = None

    def check(self, name: str, ok: bool, detail: object = "") -> None:
        self.checks.append({"check": name, "ok": bool(ok), "detail": str(detail)})
        print(f"  [{'ok' if ok else 'FAIL'}] {name}: {detail}", flush=True)

    def run_sql(self, statements: list[str]) -> None:
        if self.kind == "duckdb":
            import duckdb

            con = duckdb.connect(str(self.root / "warehouse.duckdb"))
            for s in statements:
                con.execute(s)
            con.close()
        else:
            import psycopg

            with psycopg.connect(self.pg_url.replace("postgresql+psycopg", "postgresql")) as c:
                c.execute("SET search_path TO bench")
                for s in statements:
                    c.execute(s)

    def setup(self) -> None:
        if self.kind == "duckdb":
            app = ("kind: app\nname: warehouse\ntype: duckdb\n"
                   "options: {path: warehouse.duckdb}\n")
        else:
            from tests.pg import start_postgres

            self.server = start_postgres()
            self.pg_url = self.server.url
            import psycopg

            with psycopg.connect(self.pg_url.replace("postgresql+psycopg", "postgresql")) as c:
                c.execute("DROP SCHEMA IF EXISTS bench CASCADE")
                c.execute("DROP SCHEMA IF EXISTS brazecfg CASCADE")
                c.execute("CREATE SCHEMA bench")
            app = ("kind: app\nname: warehouse\ntype: postgres\noptions:\n"
                   "  url: \"{{ env('BRAZECFG_BENCH_PG_URL') }}\"\n")
        write_project(self.root, app, updated_at=self.hashes == "counts")
        if self.kind == "postgres":
            model = self.root / "model.yml"
            model.write_text(model.read_text().replace("table: users", "table: bench.users")
                             .replace("table: purchases", "table: bench.purchases"))
        print(f"setup: {self.n:,} users in {self.kind} ({self.root})", flush=True)
        self.run_sql(users_sql(self.n, duck=self.kind == "duckdb"))
        self.sink = Sink(self.logs / "sink.log")
        self.env = bench_env(self.sink.url)
        self.env["BRAZECFG_HASH_KEY"] = KEY
        if self.kind == "postgres":
            self.env["BRAZECFG_BENCH_PG_URL"] = self.pg_url

    def cmd(self, name: str, *argv: str) -> tuple[Any, dict[str, Any]]:
        before = self.sink.stats()
        r = timed([BRAZECFG, *argv], self.env, self.logs / name.replace(" ", "_"))
        after = self.sink.stats()
        delta = request_delta(before, after)
        row = {"run": name, "exit": r.returncode, "wall_s": r.wall_s, "cpu_s": r.cpu_s,
               "peak_rss_mb": r.peak_rss_mb, "requests_by_path": delta,
               "attribute_objects": after["attribute_objects"] - before["attribute_objects"]}
        self.runs.append(row)
        print(f"{name}: exit {r.returncode}, {r.wall_s} s wall, {r.cpu_s} s CPU, "
              f"{r.peak_rss_mb} MB", flush=True)
        if r.returncode not in (0, 2):
            print(r.stderr[-3000:], file=sys.stderr)
        return r, row

    def plan(self, name: str) -> dict[str, Any]:
        r, row = self.cmd(name, "plan", str(self.root), "--format", "json")
        d: dict[str, Any] = json.loads(r.stdout)["destinations"][0] if r.stdout else {}
        row.update({k: d.get(k) for k in ("rows_read", "compared_in", "compared",
                                           "read_by_key", "hashes_compared")})
        row["counts"] = d.get("counts")
        print(f"  rows_read {d.get('rows_read')}, compared_in {d.get('compared_in')}, "
              f"counts {d.get('counts')}", flush=True)
        return d

    def go(self) -> None:
        try:
            self.setup()
            r, row = self.cmd("apply 1", "apply", str(self.root), "--auto-approve")
            self.check("apply 1 exit 0", r.returncode == 0, r.returncode)
            self.check("apply 1: N attribute objects at the sink",
                       row["attribute_objects"] == self.n, row["attribute_objects"])
            statements, m = mutation_sql(self.n)
            self.run_sql(statements)
            print(f"mutate: {m}", flush=True)
            d = self.plan("plan 2")
            c = d.get("counts") or {}
            self.check("plan 2 compared in the warehouse", d.get("compared_in") == "warehouse",
                       d.get("compared_in"))
            self.check("plan 2 counts the mutation",
                       (c.get("update"), c.get("create"), c.get("delete"))
                       == (m["changed"], m["added"], m["deleted"]), c)
            changed = m["changed"] + m["added"] + m["deleted"]
            self.check("plan 2: rows read at most 2x the changed records",
                       0 < int(d.get("rows_read") or 0) <= 2 * changed,
                       f"{d.get('rows_read')} rows for {changed} changed records")
            r, row = self.cmd("apply 2", "apply", str(self.root), "--auto-approve")
            self.check("apply 2 exit 0", r.returncode == 0, r.returncode)
            self.check("apply 2: objects == changed + added",
                       row["attribute_objects"] == m["changed"] + m["added"],
                       row["attribute_objects"])
            deletes = total(row["requests_by_path"], "/users/delete")
            self.check("apply 2: the deleted ids deleted (50 a request)",
                       deletes == -(-m["deleted"] // 50), deletes)
            d3 = self.plan("plan 3")
            self.check("plan 3: no changes", d3.get("counts", {}).get("unchanged") ==
                       self.n - m["deleted"] + m["added"], d3.get("counts"))
        finally:
            if getattr(self, "sink", None) is not None:
                self.sink.stop()
            if self.server is not None:
                self.server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--warehouse", choices=("duckdb", "postgres", "both"), default="both")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--hashes", choices=("counts", "values"), default="counts",
                    help="counts: the sources declare updated_at, plan 2 reads incrementally "
                         "and compares related-row counts; values: no updated_at, plan 2 is a "
                         "full read comparing every record's value hash")
    args = ap.parse_args()
    kinds = ["duckdb", "postgres"] if args.warehouse == "both" else [args.warehouse]
    result: dict[str, Any] = {"users": args.users, "hashes": args.hashes,
                              "revision": revision(),
                              "machine": machine(), "warehouses": {}}
    ok = True
    for kind in kinds:
        print(f"== {kind}", flush=True)
        r = Round(args, kind)
        r.go()
        result["warehouses"][kind] = {"runs": r.runs, "checks": r.checks}
        ok = ok and all(c["ok"] for c in r.checks)
    out = args.out.resolve() / (f"warehouse-state-{args.users}"
                                f"{'-values' if args.hashes == 'values' else ''}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
