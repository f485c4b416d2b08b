"""The floor: read the benchmark warehouse's model rows, map them to Braze attribute objects
and serialise them as /users/track bodies of 75, with no HTTP and no state.

    python bench/floor.py PROJECT_DIR        # prints {"records": N, "requests": R, "bytes": B}

The same query semantics as brazecfg's for bench/generate.py's model: users LEFT JOIN the
purchases aggregated per user (ltv = SUM(amount) of paid purchases, purchase_count = COUNT
of all, 0 without any, last_product = the product of the most recent purchase by
created_at, ties to the greatest product), and the group high_value (ltv >= 500) as an inline subscription. NULL
values are left out of an object; a float is sent as brazecfg sends it (15 significant
digits, a whole number as an integer). No ORDER BY: a stateless sync needs none.
bench/loop.py sends exactly these bodies.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

GROUP_ID = "6f0b5c0e-7d4c-4a57-9a64-3c1f4c0a0001"  # high_value in generate.py
BATCH = 75
QUERY = """
SELECT u.id, u.country, u.email, u.first_name, u.last_name, w.product, a.ltv, COALESCE(a.n, 0)
FROM users AS u
LEFT JOIN (SELECT user_id, SUM(CASE WHEN status = 'paid' THEN amount END) AS ltv,
                  COUNT(*) AS n FROM purchases GROUP BY user_id) AS a ON a.user_id = u.id
LEFT JOIN (SELECT user_id, product FROM (
             SELECT user_id, product, ROW_NUMBER() OVER (
               PARTITION BY user_id ORDER BY created_at DESC, product DESC) AS rn
             FROM purchases WHERE created_at IS NOT NULL) WHERE rn = 1) AS w
       ON w.user_id = u.id
"""
NAMES = ("country", "email", "first_name", "last_name", "last_product", "lifetime_value",
         "purchase_count")
SUBSCRIBED = [{"subscription_group_id": GROUP_ID, "subscription_state": "subscribed"}]


def objects(db: Path) -> Iterator[dict[str, Any]]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        for uid, *values in con.execute(QUERY):
            obj: dict[str, Any] = {"external_id": str(uid)}
            ltv = values[5]
            if ltv is not None:
                f = float(f"{ltv:.15g}")
                values[5] = int(f) if f.is_integer() else f
            for name, value in zip(NAMES, values, strict=True):
                if value is not None:
                    obj[name] = value
            if ltv is not None and ltv >= 500:
                obj["subscription_groups"] = SUBSCRIBED
            yield obj
    finally:
        con.close()


def bodies(db: Path) -> Iterator[tuple[int, bytes]]:
    """(objects, JSON body) per /users/track request."""
    batch: list[dict[str, Any]] = []
    for obj in objects(db):
        batch.append(obj)
        if len(batch) == BATCH:
            yield BATCH, json.dumps({"attributes": batch}).encode()
            batch = []
    if batch:
        yield len(batch), json.dumps({"attributes": batch}).encode()


def main() -> None:
    records = requests = size = 0
    for n, body in bodies(Path(sys.argv[1]) / "warehouse.db"):
        records, requests, size = records + n, requests + 1, size + len(body)
    print(json.dumps({"records": records, "requests": requests, "bytes": size}))


if __name__ == "__main__":
    main()
