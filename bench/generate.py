"""Generate a benchmark project: a SQLite warehouse of N users with about 3 purchases each,
and the project files to sync it (the example project's shape, with an event stream).

    python bench/generate.py OUT_DIR --users 100000
    python bench/generate.py OUT_DIR --mutate   # 1% changed, 0.1% deleted, 0.1% added
    python bench/generate.py OUT_DIR --users N --updated-at   # sources declare updated_at
    python bench/generate.py OUT_DIR --mutate --stamp now     # changed/added rows: now
    python bench/generate.py OUT_DIR --mutate --stamp own --since "2026-12-02 04:00:00"

Every users and purchases row has an `updated_at` (text, UTC); `--updated-at` declares it on
both sources, so brazecfg reads incrementally after the first run. `--mutate --stamp` sets
the changed and added users' `updated_at`: `keep` (default) leaves it as it was, so an
incremental read cannot see the changes; `now` stamps the current time; `own` gives each
changed or added row its own time, spread evenly from `--since` (the start of the last
sync) to now, older than the run that reads them: a watermark taken from the clock at the
end of a run, rather than from the start of its read, misses them.

Deterministic: the same N gives the same warehouse.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

FMT = "%Y-%m-%d %H:%M:%S"

COUNTRIES = ["US", "GB", "FR", "DE", "NL", "ES", "IT", "JP", "BR", "IN"]
PRODUCTS = ["basic", "plus", "pro", "team", "enterprise"]

PROJECT_FILES = {
    "brazecfg.yml": "name: bench\n",
    "apps.yml": """kind: app
name: warehouse
type: sqlite
options: {path: warehouse.db}
---
kind: app
name: braze
type: braze
options:
  api_key: "{{ env('BRAZE_API_KEY', 'local-emulator-key') }}"
  rest_endpoint: "{{ env('BRAZE_REST_ENDPOINT', 'http://127.0.0.1:4567') }}"
""",
    "model.yml": """kind: model
name: users
primary_key: user_id
---
kind: source
name: users_table
app: warehouse
model: users
table: users
key: id
---
kind: source
name: purchases
app: warehouse
model: users
table: purchases
key: user_id
""",
    "properties.yml": """kind: property
name: user_id
source: users_table
type: string
column: id
---
kind: property
name: email
source: users_table
type: email
column: email
---
kind: property
name: first_name
source: users_table
type: string
column: first_name
---
kind: property
name: last_name
source: users_table
type: string
column: last_name
---
kind: property
name: country
source: users_table
type: string
column: country
---
kind: property
name: ltv
source: purchases
type: float
aggregate: sum
column: amount
filters: [{column: status, op: eq, value: paid}]
---
kind: property
name: purchase_count
source: purchases
type: integer
aggregate: count
---
kind: property
name: last_product
source: purchases
type: string
aggregate: most_recent
column: product
sort: created_at
---
kind: group
name: high_value
model: users
match: all
rules: [{property: ltv, op: gte, value: 500}]
""",
    "destination.yml": """kind: destination
name: braze_users
app: braze
model: users
mode: sync
mapping:
  external_id: user_id
  email: email
  first_name: first_name
  last_name: last_name
  country: country
custom_attributes:
  lifetime_value: ltv
  purchase_count: purchase_count
  last_product: last_product
subscription_groups:
  high_value: 6f0b5c0e-7d4c-4a57-9a64-3c1f4c0a0001
""",
}


def create(out: Path, users: int, seed: int = 7, updated_at: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in PROJECT_FILES.items():
        if updated_at and name == "model.yml":
            text = text.replace("\nkey: id\n", "\nkey: id\nupdated_at: updated_at\n").replace(
                "\nkey: user_id\n", "\nkey: user_id\nupdated_at: updated_at\n")
        (out / name).write_text(text)
    db = out / "warehouse.db"
    db.unlink(missing_ok=True)
    rng = random.Random(seed)
    con = sqlite3.connect(db)
    con.executescript("""
        PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
        CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, first_name TEXT,
                            last_name TEXT, country TEXT, updated_at TEXT);
        CREATE TABLE purchases (id INTEGER PRIMARY KEY, user_id INTEGER, product TEXT,
                                amount REAL, status TEXT, created_at TEXT, updated_at TEXT);
    """)
    pid = 0
    batch_u: list[tuple[object, ...]] = []
    batch_p: list[tuple[object, ...]] = []
    for uid in range(1, users + 1):
        batch_u.append((uid, f"user{uid}@example.com", f"First{uid % 997}", f"Last{uid % 1009}",
                        COUNTRIES[uid % len(COUNTRIES)], "2026-01-01 00:00:00"))
        for _ in range(rng.randint(2, 4)):
            pid += 1
            created = f"2026-{rng.randint(1, 10):02d}-{rng.randint(1, 28):02d} 12:00:00"
            batch_p.append((pid, uid, PRODUCTS[rng.randrange(5)], round(rng.uniform(5, 400), 2),
                            "paid" if rng.random() < 0.9 else "refunded", created, created))
        if len(batch_u) >= 20000:
            _flush(con, batch_u, batch_p)
    _flush(con, batch_u, batch_p)
    con.executescript("CREATE INDEX purchases_user ON purchases(user_id);")
    con.close()


def _flush(con: sqlite3.Connection, u: list[tuple[object, ...]], p: list[tuple[object, ...]]) -> None:
    con.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)", u)
    con.executemany("INSERT INTO purchases VALUES (?, ?, ?, ?, ?, ?, ?)", p)
    con.commit()
    u.clear()
    p.clear()


def stamps(how: str, count: int, since: str | None) -> list[str | None]:
    """updated_at for `count` changed or added rows (None: keep the row's own)."""
    if how == "keep":
        return [None] * count
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    if how == "now":
        return [now.strftime(FMT)] * count
    if not since:
        raise SystemExit("--stamp own needs --since (the start of the last sync, UTC)")
    start = datetime.strptime(since, FMT)
    step = (now - start) / max(count, 1)
    return [(start + step * (i + 1)).strftime(FMT) for i in range(count)]


def mutate(out: Path, seed: int = 11, stamp: str = "keep",
           since: str | None = None) -> dict[str, int]:
    """1% of users change last_name, 0.1% are deleted, 0.1% new users are added."""
    con = sqlite3.connect(out / "warehouse.db")
    n = con.execute("SELECT count(*), max(id) FROM users").fetchone()
    total, max_id = int(n[0]), int(n[1])
    rng = random.Random(seed)
    ids = rng.sample(range(1, max_id + 1), total // 100 + total // 1000)
    changed, deleted = ids[: total // 100], ids[total // 100:]
    n_added = total // 1000
    times = stamps(stamp, len(changed) + n_added, since)
    rng.shuffle(times)  # changed and added rows interleave in time
    con.executemany("UPDATE users SET last_name = last_name || '-changed', "
                    "updated_at = COALESCE(?, updated_at) WHERE id = ?",
                    [(t, i) for t, i in zip(times, changed, strict=False)])
    con.executemany("DELETE FROM users WHERE id = ?", [(i,) for i in deleted])
    added = [(max_id + i, f"new{i}@example.com", "New", f"User{i}", "US",
              times[len(changed) + i - 1] or "2026-11-01 00:00:00")
             for i in range(1, n_added + 1)]
    con.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)", added)
    con.commit()
    con.close()
    return {"changed": len(changed), "deleted": len(deleted), "added": len(added)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--mutate", action="store_true")
    ap.add_argument("--updated-at", action="store_true",
                    help="declare updated_at on both sources (incremental reads)")
    ap.add_argument("--stamp", choices=("keep", "now", "own"), default="keep",
                    help="updated_at of the rows --mutate changes or adds")
    ap.add_argument("--since", help="with --stamp own: the start of the last sync, "
                                    "'YYYY-MM-DD HH:MM:SS' UTC")
    args = ap.parse_args()
    if args.mutate:
        print(json.dumps(mutate(args.out, stamp=args.stamp, since=args.since)))
    else:
        create(args.out, args.users, updated_at=args.updated_at)


if __name__ == "__main__":
    main()
