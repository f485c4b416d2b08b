"""The local state's size at N users with 8 tracked fields, and the time to migrate it.

Builds a v3 ledger (JSON field hashes, as brazecfg 0.x left it) of N records with SQL, opens
it writable (the migration to today's version, then VACUUM), then stores a record hash for
every record (what the first plan after the migration does), and a ledger written from
scratch by apply's own commits. Prints the file sizes, bytes per record and where they go
(SQLite's dbstat, where the library has it).

    python bench/statesize.py --users 1000000 --dir /tmp/statesize
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import time
from pathlib import Path

from brazecfg.state.ledger import Ledger, LedgerRecord

DEST = "braze_users"
FIELDS = ["country", "email", "first_name", "last_name", "last_product", "lifetime_value",
          "purchase_count", "user_id"]


def _records(n: int, seed: int = 7) -> list[tuple[str, dict[str, str], list[str]]]:
    rng = random.Random(seed)
    out = []
    for i in range(1, n + 1):
        fields = {f: rng.getrandbits(64).to_bytes(8, "big").hex() for f in FIELDS}
        out.append((str(i), fields, ["high_value"] if rng.random() < 0.1 else []))
    return out


def _where(path: Path) -> dict[str, int]:
    con = sqlite3.connect(path)
    try:
        rows = con.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
    except sqlite3.Error:
        rows = []
    con.close()
    return {str(k): int(v) for k, v in rows}


def _report(label: str, path: Path, n: int) -> None:
    size = os.path.getsize(path)
    print(f"{label}: {size / 1e6:.1f} MB, {size / n:.1f} bytes a record")
    for name, b in sorted(_where(path).items(), key=lambda kv: -kv[1])[:4]:
        print(f"    {name}: {b / 1e6:.1f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/brazecfg-statesize"))
    a = ap.parse_args()
    a.dir.mkdir(parents=True, exist_ok=True)
    recs = _records(a.users)

    # A v3 state: today's tables made by brazecfg, records rewritten in the v3 layout.
    v3 = a.dir / "v3.sqlite"
    for p in a.dir.glob("*.sqlite*"):
        p.unlink()
    Ledger(v3, writable=True).close()
    con = sqlite3.connect(v3)
    with con:
        con.execute("DROP TABLE records")
        con.execute("CREATE TABLE records (destination TEXT NOT NULL, external_id TEXT NOT "
                    "NULL, fields TEXT NOT NULL, groups TEXT NOT NULL, confirmed_at TEXT NOT "
                    "NULL, PRIMARY KEY (destination, external_id)) WITHOUT ROWID")
        con.executemany("INSERT INTO records VALUES (?,?,?,?,?)", (
            (DEST, k, json.dumps(f, sort_keys=True, separators=(",", ":")),
             json.dumps(g, separators=(",", ":")), "2026-12-01T10:00:00Z")
            for k, f, g in sorted(recs)))
        con.execute("DELETE FROM meta WHERE key IN ('field_names', 'destinations', "
                    "'group_sets')")
        con.execute("UPDATE meta SET value = '3' WHERE key = 'version'")
    con.execute("VACUUM")
    con.close()
    _report("v3 (JSON)", v3, a.users)

    t0 = time.perf_counter()
    led = Ledger(v3, writable=True)
    migrate = time.perf_counter() - t0
    print(f"migration to v{led.schema_version}: {migrate:.1f} s")
    _report("  migrated", v3, a.users)
    rng = random.Random(3)
    t0 = time.perf_counter()
    led.set_row_hashes(DEST, ((k, rng.getrandbits(64).to_bytes(8, "big")) for k, _, _ in
                              sorted(recs)))
    print(f"record hashes stored: {time.perf_counter() - t0:.1f} s")
    led.close()
    _report("  + record hashes", v3, a.users)

    fresh = a.dir / "fresh.sqlite"
    t0 = time.perf_counter()
    with Ledger(fresh, writable=True) as led:
        batch: list[LedgerRecord] = []
        for k, f, g in sorted(recs):
            batch.append(LedgerRecord(k, f, frozenset(g), rng.getrandbits(64).to_bytes(8, "big")))
            if len(batch) == 5000:
                led.commit(DEST, upserts=batch)
                batch = []
        if batch:
            led.commit(DEST, upserts=batch)
    print(f"written by apply's commits: {time.perf_counter() - t0:.1f} s")
    _report("  fresh", fresh, a.users)


if __name__ == "__main__":
    main()
