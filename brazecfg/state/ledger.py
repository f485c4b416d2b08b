"""The ledger: per destination and record, what Braze confirmed.

One row per (destination, external_id): a keyed hash per field sent and the synced group
memberships. Rows enter or change only after Braze accepted them (invariant 3 of DESIGN.md),
so a crash between a send and its commit makes the next plan send that record again.
Records Braze rejected are remembered apart, with Braze's reason, so the next plan can say
"37 records failed last time" and the next apply retries them.

Default home: a SQLite file in the project's state folder. Rows stream in external_id byte
order (SQLite's BINARY collation on UTF-8 equals Python's str order), the order the
merge-diff needs. Behind this small class a PostgreSQL or warehouse ledger can slot in.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from brazecfg.errors import StateError

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    destination TEXT NOT NULL,
    external_id TEXT NOT NULL,
    fields TEXT NOT NULL,          -- JSON {field: keyed hash}
    groups TEXT NOT NULL,          -- JSON sorted list of synced group names
    confirmed_at TEXT NOT NULL,
    PRIMARY KEY (destination, external_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    destination TEXT NOT NULL,
    stream TEXT NOT NULL,          -- the event spec's name
    row_key TEXT NOT NULL,         -- the source row's key: each row reaches Braze once
    state TEXT NOT NULL,           -- sending | sent | unknown | failed
    reason TEXT,
    at TEXT NOT NULL,
    PRIMARY KEY (destination, stream, row_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS failures (
    destination TEXT NOT NULL,
    external_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    failed_at TEXT NOT NULL,
    PRIMARY KEY (destination, external_id)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class LedgerRecord:
    external_id: str
    fields: dict[str, str] = field(default_factory=dict)  # field -> keyed hash
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Failure:
    external_id: str
    reason: str


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Ledger:
    """A ledger file. Open read-only for plans (a missing file reads as empty), writable for apply."""

    def __init__(self, path: Path, *, writable: bool) -> None:
        self.path = path
        self.writable = writable
        self._db: sqlite3.Connection | None = None
        try:
            if writable:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(path, isolation_level=None)
                # Rollback journal, not WAL: a read-only plan must not create -wal/-shm files.
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
                if self._meta("version") is None:
                    self._set_meta("version", str(SCHEMA_VERSION))
            elif path.exists():
                self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            if self._db is not None:
                self._check_version()
        except sqlite3.DatabaseError as exc:
            raise StateError(f"the ledger {path} is unreadable ({exc}); restore it from a backup "
                             "or move it away to start over (everything will be resent)") from None

    # -- metadata ---------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        """A value the planner keeps in the state (bindings), or None."""
        return self._meta(key)

    def set_meta(self, key: str, value: str) -> None:
        self._set_meta(key, value)

    def rename_destination(self, old: str, new: str) -> None:
        """A declared move: the state of destination ``old`` becomes ``new``'s."""
        db = self._write()
        db.execute("BEGIN IMMEDIATE")
        try:
            for table in ("records", "events", "failures"):
                db.execute(f"UPDATE {table} SET destination = ? WHERE destination = ?", (new, old))
            for prefix in ("watermark:", "binding:"):
                db.execute("UPDATE meta SET key = ? WHERE key = ?", (prefix + new, prefix + old))
            self._bump_generation(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def rename_stream(self, destination: str, old: str, new: str) -> None:
        """An event stream's rows move to a new identity (a legacy name, or a declared move)."""
        db = self._write()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("UPDATE events SET stream = ? WHERE destination = ? AND stream = ?",
                       (new, destination, old))
            self._bump_generation(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def has_events(self, destination: str, stream: str) -> bool:
        if self._db is None:
            return False
        return self._db.execute("SELECT 1 FROM events WHERE destination = ? AND stream = ? "
                                "LIMIT 1", (destination, stream)).fetchone() is not None

    def _meta(self, key: str) -> str | None:
        if self._db is None:
            return None
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        assert self._db is not None and self.writable
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def _check_version(self) -> None:
        version = self._meta("version")
        if version is not None and int(version) > SCHEMA_VERSION:
            raise StateError(f"the ledger {self.path} was written by a newer brazecfg "
                             f"(ledger version {version}); upgrade brazecfg")

    @property
    def key_check(self) -> str | None:
        return self._meta("key_check")

    def set_key_check(self, value: str) -> None:
        self._set_meta("key_check", value)

    @property
    def generation(self) -> int:
        """Bumped by every commit: a saved plan remembers it to detect a ledger that moved on."""
        value = self._meta("generation")
        return int(value) if value else 0

    def watermark(self, destination: str) -> dict[str, str] | None:
        """Where the last fully confirmed run started reading, and its config fingerprint."""
        value = self._meta(f"watermark:{destination}")
        return None if value is None else dict(json.loads(value))

    def set_watermark(self, destination: str, mark: dict[str, str]) -> None:
        self._set_meta(f"watermark:{destination}", json.dumps(mark, sort_keys=True))

    # -- reads ------------------------------------------------------------------------------
    def stream(self, destination: str, batch_size: int = 5000) -> Iterator[LedgerRecord]:
        """Every record of a destination in external_id byte order, streamed."""
        if self._db is None:
            return
        cur = self._db.execute(
            "SELECT external_id, fields, groups FROM records WHERE destination = ? "
            "ORDER BY external_id", (destination,))
        while rows := cur.fetchmany(batch_size):
            for ext_id, fields, groups in rows:
                yield LedgerRecord(ext_id, json.loads(fields), frozenset(json.loads(groups)))

    def count(self, destination: str) -> int:
        if self._db is None:
            return 0
        return int(self._db.execute("SELECT count(*) FROM records WHERE destination = ?",
                                    (destination,)).fetchone()[0])

    def destinations(self) -> list[str]:
        if self._db is None:
            return []
        rows = self._db.execute("SELECT destination FROM records UNION SELECT destination FROM "
                                "events ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    def failures(self, destination: str, limit: int | None = None) -> tuple[int, list[Failure]]:
        """How many records failed last time, and up to ``limit`` of them with Braze's reason."""
        if self._db is None:
            return 0, []
        n = int(self._db.execute("SELECT count(*) FROM failures WHERE destination = ?",
                                 (destination,)).fetchone()[0])
        sql = "SELECT external_id, reason FROM failures WHERE destination = ? ORDER BY external_id"
        params: tuple[object, ...] = (destination,)
        if limit is not None:
            sql += " LIMIT ?"
            params += (limit,)
        return n, [Failure(a, b) for a, b in self._db.execute(sql, params)]

    def stream_events(self, destination: str, stream: str, batch_size: int = 5000
                      ) -> Iterator[tuple[str, str]]:
        """(row_key, state) of every event row the ledger knows, in row_key byte order."""
        if self._db is None:
            return
        cur = self._db.execute(
            "SELECT row_key, state FROM events WHERE destination = ? AND stream = ? "
            "ORDER BY row_key", (destination, stream))
        while rows := cur.fetchmany(batch_size):
            yield from rows

    def event_states(self, destination: str) -> dict[str, int]:
        if self._db is None:
            return {}
        rows = self._db.execute("SELECT state, count(*) FROM events WHERE destination = ? "
                                "GROUP BY state ORDER BY state", (destination,))
        return {state: int(n) for state, n in rows}

    def mark_events(self, destination: str, stream: str, states: Iterable[tuple[str, str, str | None]]
                    ) -> None:
        """Record (row_key, state, reason) for event rows, in one transaction.

        Called with state "sending" *before* a request goes out, so a crash mid-request
        leaves the rows marked: the next plan reports them as delivery unknown instead of
        sending them twice (Braze never deduplicates events)."""
        db = self._write()
        at = _now()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?)",
                           [(destination, stream, k, st, r, at) for k, st, r in states])
            self._bump_generation(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- writes (apply only) ----------------------------------------------------------------
    def _write(self) -> sqlite3.Connection:
        if self._db is None or not self.writable:
            raise RuntimeError("ledger opened read-only")
        return self._db

    def commit(self, destination: str, *, upserts: Iterable[LedgerRecord] = (),
               deletes: Iterable[str] = (), failures: Iterable[Failure] = ()) -> None:
        """One transaction: what Braze confirmed for one batch (and what it rejected)."""
        db = self._write()
        at = _now()
        db.execute("BEGIN IMMEDIATE")
        try:
            ups = [(destination, r.external_id,
                    json.dumps(r.fields, sort_keys=True, separators=(",", ":")),
                    json.dumps(sorted(r.groups), separators=(",", ":")), at) for r in upserts]
            if ups:
                db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?)", ups)
                db.executemany("DELETE FROM failures WHERE destination = ? AND external_id = ?",
                               [(d, e) for d, e, *_ in ups])
            dels = [(destination, e) for e in deletes]
            if dels:
                db.executemany("DELETE FROM records WHERE destination = ? AND external_id = ?", dels)
                db.executemany("DELETE FROM failures WHERE destination = ? AND external_id = ?", dels)
            fails = [(destination, f.external_id, f.reason, at) for f in failures]
            if fails:
                db.executemany("INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?)", fails)
            self._bump_generation(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def update_groups(self, destination: str, external_ids: Iterable[str], group: str, *,
                      member: bool) -> None:
        """Braze confirmed a subscription change: add or remove ``group`` for these records."""
        db = self._write()
        db.execute("BEGIN IMMEDIATE")
        try:
            for ext_id in external_ids:
                row = db.execute("SELECT groups FROM records WHERE destination = ? AND "
                                 "external_id = ?", (destination, ext_id)).fetchone()
                if row is None:
                    continue  # its profile write was never confirmed: nothing to update
                groups = set(json.loads(row[0]))
                groups = groups | {group} if member else groups - {group}
                db.execute("UPDATE records SET groups = ?, confirmed_at = ? WHERE destination = ? "
                           "AND external_id = ?", (json.dumps(sorted(groups), separators=(",", ":")),
                                                   _now(), destination, ext_id))
                db.execute("DELETE FROM failures WHERE destination = ? AND external_id = ?",
                           (destination, ext_id))
            self._bump_generation(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @staticmethod
    def _bump_generation(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO meta(key, value) VALUES ('generation', '1') ON CONFLICT(key) "
                   "DO UPDATE SET value = CAST(value AS INTEGER) + 1")

    def forget_destination(self, destination: str) -> None:
        """Drop a removed destination's rows (after its removal was applied)."""
        db = self._write()
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM records WHERE destination = ?", (destination,))
        db.execute("DELETE FROM failures WHERE destination = ?", (destination,))
        db.execute("DELETE FROM events WHERE destination = ?", (destination,))
        db.execute("DELETE FROM meta WHERE key IN (?, ?)",
                   (f"watermark:{destination}", f"binding:{destination}"))
        self._bump_generation(db)
        db.execute("COMMIT")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
