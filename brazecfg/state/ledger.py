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
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from brazecfg.errors import StateError

SCHEMA_VERSION = 2  # 2: events carry user, name, weight, time; intents

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
    state TEXT NOT NULL,           -- sending | sent | unknown | failed | unsent
    reason TEXT,
    at TEXT NOT NULL,
    user TEXT,                     -- the external_id it was sent to (settling reads Braze's
    name TEXT,                     -- counts per user and name: event name or product_id,
    weight INTEGER,                -- its quantity, 1 for events, and its time)
    time TEXT,
    PRIMARY KEY (destination, stream, row_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS intents (  -- creates sent (or about to be) but not yet confirmed
    destination TEXT NOT NULL,
    external_id TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (destination, external_id)
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


@dataclass(frozen=True)
class EventMark:
    """An event row about to leave: its key and what settling needs to find it in Braze."""

    stream: str
    row_key: str
    user: str
    name: str  # the event name, or a purchase's product_id (what Braze counts by)
    weight: int  # a purchase's quantity; 1 for events
    time: str


@dataclass(frozen=True)
class EventState:
    """One event row as the ledger knows it (for settling)."""

    destination: str
    stream: str
    row_key: str
    state: str
    user: str | None
    name: str | None
    weight: int | None
    time: str | None
    at: str


# What mark_sending replaced, for restore_events: (stream, row_key) -> (state, reason) or
# None when the ledger had no row for the key.
Previous = dict[tuple[str, str], tuple[str, str | None] | None]

_EVENT_COLUMNS = ("user TEXT", "name TEXT", "weight INTEGER", "time TEXT")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Ledger:
    """A ledger file. Open read-only for plans (a missing file reads as empty), writable for apply."""

    def __init__(self, path: Path, *, writable: bool) -> None:
        self.path = path
        self.writable = writable
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        try:
            if writable:
                path.parent.mkdir(parents=True, exist_ok=True)
                # Apply's workers mark event rows right before their request leaves, so the
                # connection is shared between threads, each write under self._lock.
                self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                # Rollback journal, not WAL: a read-only plan must not create -wal/-shm files.
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(_SCHEMA)
                self._check_version()  # before migrating: never touch a newer file
                self._migrate()
                self._set_meta("version", str(SCHEMA_VERSION))
            elif path.exists():
                self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
            if self._db is not None:
                self._check_version()
        except sqlite3.DatabaseError as exc:
            journal = path.with_name(path.name + "-journal")
            if not writable and journal.exists() and journal.stat().st_size > 0:
                # A killed apply left a write half done; only a writable open rolls it back.
                raise StateError(f"the ledger {path} holds a write that a stopped apply left "
                                 "unfinished; run `brazecfg apply` once (it rolls the write "
                                 "back and goes on), then plan again") from None
            raise StateError(f"the ledger {path} is unreadable ({exc}); restore it from a backup "
                             "or move it away to start over (everything will be resent)") from None

    # -- metadata ---------------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        if self._db is None:
            return None
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        assert self._db is not None and self.writable
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def _migrate(self) -> None:
        """Version 1 files: add the event columns settling needs (their rows stay NULL)."""
        assert self._db is not None
        have = {r[1] for r in self._db.execute("PRAGMA table_info(events)")}
        for column in _EVENT_COLUMNS:
            if column.split()[0] not in have:
                self._db.execute(f"ALTER TABLE events ADD COLUMN {column}")

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
        rows = self._db.execute("SELECT DISTINCT destination FROM records ORDER BY 1").fetchall()
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
        at = _now()
        with self._transaction() as db:
            # An upsert: the user, name and time recorded by mark_sending stay.
            db.executemany("INSERT INTO events(destination, stream, row_key, state, reason, at) "
                           "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(destination, stream, row_key) "
                           "DO UPDATE SET state = excluded.state, reason = excluded.reason, "
                           "at = excluded.at",
                           [(destination, stream, k, st, r, at) for k, st, r in states])
            self._bump_generation(db)

    # -- writes (apply only) ----------------------------------------------------------------
    def _write(self) -> sqlite3.Connection:
        if self._db is None or not self.writable:
            raise RuntimeError("ledger opened read-only")
        return self._db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock. ROLLBACK only while one is open: an
        interrupt right after COMMIT must not turn a committed write into an error."""
        with self._lock:
            db = self._write()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    def commit(self, destination: str, *, upserts: Iterable[LedgerRecord] = (),
               deletes: Iterable[str] = (), failures: Iterable[Failure] = ()) -> None:
        """One transaction: what Braze confirmed for one batch (and what it rejected)."""
        at = _now()
        with self._transaction() as db:
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

    def update_groups(self, destination: str, external_ids: Iterable[str], group: str, *,
                      member: bool) -> None:
        """Braze confirmed a subscription change: add or remove ``group`` for these records."""
        with self._transaction() as db:
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

    @staticmethod
    def _bump_generation(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO meta(key, value) VALUES ('generation', '1') ON CONFLICT(key) "
                   "DO UPDATE SET value = CAST(value AS INTEGER) + 1")

    def forget_destination(self, destination: str) -> None:
        """Drop a removed destination's rows (after its removal was applied)."""
        with self._transaction() as db:
            db.execute("DELETE FROM records WHERE destination = ?", (destination,))
            db.execute("DELETE FROM failures WHERE destination = ?", (destination,))
            db.execute("DELETE FROM events WHERE destination = ?", (destination,))
            db.execute("DELETE FROM intents WHERE destination = ?", (destination,))
            db.execute("DELETE FROM meta WHERE key = ?", (f"watermark:{destination}",))

    # -- delivery: events in flight and create intents (apply only) -----------------------
    def mark_sending(self, destination: str, marks: Iterable[EventMark]) -> Previous:
        """Mark event rows ``sending`` right before their request leaves (called from apply's
        worker threads), with the user, name, weight and time settling needs. Returns what
        the rows were before, so a request that provably never left can restore them."""
        marks = list(marks)
        at = _now()
        with self._transaction() as db:
            previous: Previous = {(m.stream, m.row_key): None for m in marks}
            for stream in sorted({m.stream for m in marks}):
                keys = [m.row_key for m in marks if m.stream == stream]
                for i in range(0, len(keys), 500):  # one query per 500 keys, not one per key
                    part = keys[i:i + 500]
                    for key, state, reason in db.execute(
                            "SELECT row_key, state, reason FROM events WHERE destination = ? "
                            f"AND stream = ? AND row_key IN ({', '.join('?' * len(part))})",
                            (destination, stream, *part)):
                        previous[(stream, key)] = (state, reason)
            db.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?, 'sending', NULL, ?, "
                           "?, ?, ?, ?)", [(destination, m.stream, m.row_key, at, m.user, m.name,
                                            m.weight, m.time) for m in marks])
            self._bump_generation(db)
        return previous

    def restore_events(self, destination: str, previous: Previous) -> None:
        """Undo mark_sending for a request that never left (or that Braze answered by
        processing nothing): each row goes back to what it was; a row unknown before stays
        unknown, since an earlier attempt may have reached Braze."""
        at = _now()
        with self._transaction() as db:
            for (stream, key), was in previous.items():
                if was is None:
                    db.execute("DELETE FROM events WHERE destination = ? AND stream = ? AND "
                               "row_key = ?", (destination, stream, key))
                else:
                    db.execute("UPDATE events SET state = ?, reason = ?, at = ? WHERE "
                               "destination = ? AND stream = ? AND row_key = ?",
                               (was[0], was[1], at, destination, stream, key))
            self._bump_generation(db)

    def stream_unsure_users(self, destinations: list[str], batch_size: int = 5000
                            ) -> Iterator[EventState]:
        """Every event row of every user that has a row ``sending`` or ``unknown`` in one of
        these destinations (sent rows included: settling compares totals), by user."""
        if self._db is None or not destinations:
            return
        marks = ", ".join("?" for _ in destinations)
        cur = self._db.execute(
            f"SELECT destination, stream, row_key, state, user, name, weight, time, at FROM "
            f"events WHERE destination IN ({marks}) AND user IN (SELECT DISTINCT user FROM "
            f"events WHERE destination IN ({marks}) AND state IN ('sending', 'unknown')) "
            f"UNION ALL SELECT destination, stream, row_key, state, user, name, weight, time, "
            f"at FROM events WHERE destination IN ({marks}) AND user IS NULL AND state IN "
            f"('sending', 'unknown') ORDER BY 5, 1, 2, 3", (*destinations,) * 3)
        while rows := cur.fetchmany(batch_size):
            for r in rows:
                yield EventState(*r)

    def add_intents(self, destination: str, external_ids: Iterable[str]) -> list[str]:
        """Record, durably, creates about to be sent: until confirmed (or provably not
        sent), Braze may have these users though the ledger has no record of them. Returns
        the ids that were not intents already (what a refused request may clear again)."""
        at = _now()
        with self._transaction() as db:
            new = [i for i in external_ids if db.execute(
                "SELECT 1 FROM intents WHERE destination = ? AND external_id = ?",
                (destination, i)).fetchone() is None]
            db.executemany("INSERT INTO intents VALUES (?, ?, ?)",
                           [(destination, i, at) for i in new])
        return new

    def clear_intents(self, destination: str, external_ids: Iterable[str] | None = None
                      ) -> None:
        """Forget intents: these ids (their create was confirmed, refused or deleted), or,
        with None, every intent whose record the ledger now has."""
        with self._transaction() as db:
            if external_ids is None:
                db.execute("DELETE FROM intents WHERE destination = ? AND external_id IN "
                           "(SELECT external_id FROM records WHERE destination = ?)",
                           (destination, destination))
            else:
                db.executemany("DELETE FROM intents WHERE destination = ? AND external_id = ?",
                               [(destination, i) for i in external_ids])

    def stream_intents(self, destination: str, batch_size: int = 5000) -> Iterator[str]:
        """Ids of creates that may have reached Braze unconfirmed, in byte order."""
        if self._db is None:
            return
        try:
            cur = self._db.execute("SELECT external_id FROM intents WHERE destination = ? "
                                   "ORDER BY external_id", (destination,))
        except sqlite3.OperationalError:  # a version 1 file opened read-only: none
            return
        while rows := cur.fetchmany(batch_size):
            for (ext_id,) in rows:
                yield ext_id

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
