"""Generate a benchmark project: a SQLite warehouse of N users with about 3 purchases each,
and the project files to sync it (the example project's shape, with an event stream).

    python bench/generate.py OUT_DIR --users 100000
    python bench/generate.py OUT_DIR --mutate   # 1% changed, 0.1% deleted, 0.1% added

Deterministic: the same N gives the same warehouse.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
from pathlib import Path

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


def create(out: Path, users: int, seed: int = 7) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in PROJECT_FILES.items():
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
                                amount REAL, status TEXT, created_at TEXT);
    """)
    pid = 0
    batch_u: list[tuple[object, ...]] = []
    batch_p: list[tuple[object, ...]] = []
    for uid in range(1, users + 1):
        batch_u.append((uid, f"user{uid}@example.com", f"First{uid % 997}", f"Last{uid % 1009}",
                        COUNTRIES[uid % len(COUNTRIES)], "2026-01-01 00:00:00"))
        for _ in range(rng.randint(2, 4)):
            pid += 1
            batch_p.append((pid, uid, PRODUCTS[rng.randrange(5)], round(rng.uniform(5, 400), 2),
                            "paid" if rng.random() < 0.9 else "refunded",
                            f"2026-{rng.randint(1, 10):02d}-{rng.randint(1, 28):02d} 12:00:00"))
        if len(batch_u) >= 20000:
            _flush(con, batch_u, batch_p)
    _flush(con, batch_u, batch_p)
    con.executescript("CREATE INDEX purchases_user ON purchases(user_id);")
    con.close()


def _flush(con: sqlite3.Connection, u: list[tuple[object, ...]], p: list[tuple[object, ...]]) -> None:
    con.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)", u)
    con.executemany("INSERT INTO purchases VALUES (?, ?, ?, ?, ?, ?)", p)
    con.commit()
    u.clear()
    p.clear()


def mutate(out: Path, seed: int = 11) -> dict[str, int]:
    """1% of users change last_name, 0.1% are deleted, 0.1% new users are added."""
    con = sqlite3.connect(out / "warehouse.db")
    n = con.execute("SELECT count(*), max(id) FROM users").fetchone()
    total, max_id = int(n[0]), int(n[1])
    rng = random.Random(seed)
    ids = rng.sample(range(1, max_id + 1), total // 100 + total // 1000)
    changed, deleted = ids[: total // 100], ids[total // 100:]
    con.executemany("UPDATE users SET last_name = last_name || '-changed' WHERE id = ?",
                    [(i,) for i in changed])
    con.executemany("DELETE FROM users WHERE id = ?", [(i,) for i in deleted])
    added = [(max_id + i, f"new{i}@example.com", "New", f"User{i}", "US", "2026-11-01 00:00:00")
             for i in range(1, total // 1000 + 1)]
    con.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)", added)
    con.commit()
    con.close()
    return {"changed": len(changed), "deleted": len(deleted), "added": len(added)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--mutate", action="store_true")
    args = ap.parse_args()
    if args.mutate:
        print(mutate(args.out))
    else:
        create(args.out, args.users)


if __name__ == "__main__":
    main()
