"""The ledger: per destination and record, what Braze confirmed, on any state backend.

One row per (destination, external_id): a keyed hash per field sent and the synced group
memberships. Rows enter or change only after Braze accepted them (invariant 3 of DESIGN.md),
so a crash between a send and its commit makes the next plan send that record again.
Records Braze rejected are remembered apart, with Braze's reason; event rows keep their
delivery state; create intents remember ids whose create was sent but not yet confirmed.

One implementation over SQLAlchemy Core serves every backend (backends.py): a local SQLite
file, a PostgreSQL schema, tables in a warehouse. Reads are keyset-paginated in key *byte*
order (SQLite BINARY, PostgreSQL ``COLLATE "C"``, DuckDB ``COLLATE "binary"``, checked in
Python for any other dialect), each batch a short transaction, so a long plan never holds a
lock that would block the lease heartbeat. One connection per Ledger behind an RLock: writes
may come from worker threads. Every write is one transaction; under a lease it first checks,
inside that transaction, that the lease is still ours (lease.py).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from itertools import chain, islice
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Table,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    literal_column,
    null,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateSchema
from sqlalchemy.sql.elements import ColumnElement

from brazecfg.errors import StateError
from brazecfg.scratch import Scratch
from brazecfg.state.backends import Backend, local_backend
from brazecfg.state.base import (
    SCHEMA_VERSION,
    EventMark,
    EventState,
    Failure,
    LedgerRecord,
    LockInfo,
    Previous,
    StateIdentity,
    StateTable,
    StoredKey,
)

__all__ = ["EventMark", "EventState", "Failure", "LeaseLost", "Ledger", "LedgerRecord",
           "Previous", "StateIdentity"]
from brazecfg.state.packing import FIELDS, Codec, Stale, layout_key
from brazecfg.state.tables import MIGRATIONS, V1_SQLITE, Tables
from brazecfg.warehouse.engine import driver_message, limit_sqlite_heap

__all__ = ["Failure", "Ledger", "LedgerRecord", "LeaseLost", "SCHEMA_VERSION"]

LEASE = "apply"  # the one lease row


# Metadata kept per destination ("<prefix><destination>"): moved and forgotten with it.
DESTINATION_META = ("watermark:", "binding:", FIELDS)


class LeaseLost(StateError):
    """This process no longer holds the state's lease: it must not write."""


# SQLite: seconds a statement waits for another connection's lock on the file.
BUSY_TIMEOUT = 30.0
# Connection.info flag: the transaction being begun only reads (SQLite: a deferred BEGIN).
_READING = "brazecfg_reading"


def _marks(conn: Connection, n: int) -> str:
    """``n`` positional parameters for exec_driver_sql: ``%s`` for psycopg (pyformat), ``?``
    for the others (SQLite's qmark; DuckDB, whose declared style is $1, takes ``?`` too)."""
    mark = "%s" if conn.dialect.paramstyle in ("format", "pyformat") else "?"
    return ", ".join([mark] * n)


def _table_sql(conn: Connection, table: Table) -> str:
    return conn.dialect.identifier_preparer.format_table(table)


def _quote(conn: Connection, column: str) -> str:
    return conn.dialect.identifier_preparer.quote_identifier(column)


def _by_ids(conn: Connection, n: int) -> str:
    """The condition "this destination, one of these n ids" (parameters: destination, ids)."""
    return (f"{_quote(conn, 'destination')} = {_marks(conn, 1)} AND "
            f"{_quote(conn, 'external_id')} IN ({_marks(conn, n)})")


# DuckDB: the share of its memory_limit its loaded primary-key indexes may hold before a
# write checkpoints (Ledger._checkpoint_loaded_indexes).
DUCKDB_INDEX_SHARE = 4
# Parameters per multi-row INSERT (PostgreSQL allows 65,535 a statement); on SQLite, the
# limit of every SQLite before 3.32 (SQLITE_MAX_VARIABLE_NUMBER; 32,766 since).
INSERT_PARAMETERS = 2000
SQLITE_PARAMETERS = 999
# PostgreSQL plans a read by ids from the table's statistics. A table that grew since it was
# last analyzed (a first apply: every record, intent and event row is new) has each IN list
# of ids answered by reading every row of the destination, so each batch costs more than the
# one before; autovacuum catches up only a minute or so later. A writing process analyzes a
# state table it inserted this many rows into, and at least as many as it held at the last
# analyze (so a few times per apply, however large: 10k, 20k, 40k, ... rows).
ANALYZE_AFTER_ROWS = 10_000


def _insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]], *,
                 or_replace: bool = False) -> None:
    """Insert rows that all have the same keys (column names), in the driver's SQL, as
    multi-row INSERTs of at most INSERT_PARAMETERS values (SQLITE_PARAMETERS on SQLite).
    SQLAlchemy's executemany turned every row's dict into parameters in Python, most of an
    apply's ledger time on SQLite (issue 9); DuckDB runs a driver executemany as one
    statement per row (about 300 us each); and SQLite's own executemany, though its loop is
    in C, lets go of the GIL at every row's step: with other threads running, each row
    waited to get it back (1M rows beside two busy threads: 10.4 / 11.8 s, against 4.3 to
    5.6 s in statements of 249 to 500 rows; bench/README.md).
    The values are what the columns store (text, numbers, bytes): no type conversion is asked
    of SQLAlchemy. ``or_replace`` (SQLite only): a row with the primary key of one the table
    holds replaces it (INSERT OR REPLACE), so no DELETE of those keys is needed first."""
    if not rows:
        return
    columns = list(rows[0])
    verb = "INSERT"
    if or_replace:
        assert conn.dialect.name == "sqlite", "INSERT OR REPLACE is SQLite's"
        verb = "INSERT OR REPLACE"
    head = (f"{verb} INTO {_table_sql(conn, table)} "
            f"({', '.join(_quote(conn, c) for c in columns)}) VALUES ")
    one = f"({_marks(conn, len(columns))})"
    values = [tuple(row[c] for c in columns) for row in rows] if len(columns) < 2 else \
        list(map(itemgetter(*columns), rows))
    limit = SQLITE_PARAMETERS if conn.dialect.name == "sqlite" else INSERT_PARAMETERS
    per = max(1, limit // len(columns))
    for i in range(0, len(values), per):
        part = values[i:i + per]
        conn.exec_driver_sql(head + ", ".join([one] * len(part)),
                             tuple(chain.from_iterable(part)))


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_ms() -> int:
    return int(time.time() * 1000)


class Ledger:
    """A state, read-only for plans (a missing one reads as empty), writable for apply.

    ``Ledger(path, writable=...)`` opens a local SQLite file; ``Ledger(backend=...,
    writable=...)`` any backend (see ``brazecfg.state.open_state``)."""

    def __init__(self, path: Path | None = None, *, writable: bool,
                 backend: Backend | None = None) -> None:
        if backend is None:
            if path is None:
                raise TypeError("Ledger needs a path or a backend")
            backend = local_backend(path)
        self.backend = backend
        self.path = backend.path
        self.writable = writable
        self._mutex = threading.RLock()
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        # PostgreSQL: rows this process inserted per state table since it last analyzed it,
        # and the rows it had inserted by then (_analyze_grown)
        self._grown: Counter[str] = Counter()
        self._analyzed: dict[str, int] = {}
        self._copy: Scratch | None = None
        self._file = backend.path  # the SQLite file read (a private copy: see _open_copy)
        self._snapshots: Scratch | None = None  # see _snapshot
        self._spill_releases: list[Callable[[], None]] = []  # DuckDB: see _make_engine
        self._version = 0  # 0: no state (yet)
        self._lease: tuple[str, int] | None = None  # (lock id, fence) while held
        self._generation: int | None = None  # last committed, known while the lease is held
        self._codec = Codec()  # SQLite v4: the numbers of the compact layout (packing.py)
        self._groups_cache: dict[str, frozenset[str]] = {}
        self.t = Tables.build(backend.schema, backend.prefix, backend.dialect)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    # -- opening ----------------------------------------------------------------------------
    def describe(self) -> str:
        return self.backend.where

    def _error(self, exc: BaseException, doing: str) -> StateError:
        return StateError(f"the state ({self.backend.where}) {doing}: "
                          f"{driver_message(exc, self.backend.secrets)}")

    def _make_engine(self, url: Any, *, read_only: bool) -> Engine:
        args = dict(self.backend.connect_args)
        if self.backend.dialect == "sqlite":
            path = str(url.database)
            mode = "ro" if read_only else "rwc"
            url = url.set(database=f"file:{path}", query={"mode": mode, "uri": "true"})
            args["timeout"] = BUSY_TIMEOUT
        elif self.backend.dialect == "duckdb":
            args["read_only"] = read_only
            if self.backend.path is not None and not read_only:
                from brazecfg.warehouse.connect import DUCKDB_READ_WRITE

                DUCKDB_READ_WRITE.add(str(self.backend.path))
        engine = create_engine(url, connect_args=args)
        if self.backend.dialect == "duckdb" and self.backend.path is not None:
            # the warehouse's spill directory, shared while either engine is open (the
            # instance is one): removed under this engine, its next spill would fail
            from brazecfg.warehouse.connect import DUCKDB_SPILL, spill_to

            spill_dir, release = DUCKDB_SPILL.acquire(str(self.backend.path))
            self._spill_releases.append(release)
            event.listen(engine, "connect", lambda dbapi, _rec: spill_to(dbapi, spill_dir))
        if self.backend.dialect == "sqlite":
            begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"

            @event.listens_for(engine, "connect")
            def _connect(dbapi: Any, _rec: Any) -> None:
                dbapi.isolation_level = None  # we say BEGIN ourselves
                limit_sqlite_heap(dbapi)
                if not read_only:
                    # Rollback journal, not WAL: a read-only plan must not create -wal/-shm.
                    dbapi.execute("PRAGMA synchronous=FULL")

            @event.listens_for(engine, "begin")
            def _begin(conn: Connection) -> None:
                # A read takes no write lock, even in apply: the state may share its file
                # with the warehouse (backend warehouse), whose read of the model holds a
                # shared lock on it while the state is read alongside.
                conn.exec_driver_sql("BEGIN" if conn.info.get(_READING) else begin)
        return engine

    def _open(self) -> None:
        b = self.backend
        if b.dialect == "sqlite" and b.path is not None:
            if not self.writable and not b.path.exists():
                return  # a missing local ledger is empty; plan creates nothing
            if self.writable:
                b.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._engine = self._make_engine(b.url, read_only=not self.writable)
            self._conn = self._engine.connect()
            self._init()
        except StateError:
            raise
        except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
            if self._hot_journal(exc):
                self._open_copy()
                return
            raise self._unreadable(exc) from None

    def _unreadable(self, exc: BaseException) -> StateError:
        if self.backend.name == "local":
            return StateError(
                f"the ledger {self.backend.path} is unreadable "
                f"({driver_message(exc)}). Do not delete or move it: that would resend every "
                "event. Restore it from a backup (`brazecfg state push FILE`) or run "
                "`brazecfg apply`, which repairs a ledger left mid-transaction")
        if "Conflicting lock" in str(exc):  # DuckDB: one process per file at a time
            return self._error(exc, "is open in another process (DuckDB lets one process at a "
                                    "time open a file); wait for it to finish")
        return self._error(exc, "cannot be reached or read; check the state settings in "
                                "brazecfg.yml and that the server accepts connections")

    def _hot_journal(self, exc: BaseException) -> bool:
        """A crash mid-transaction left a hot journal that only a writer may roll back."""
        p = self.backend.path
        return (self.backend.dialect == "sqlite" and not self.writable and p is not None
                and Path(f"{p}-journal").exists() and "readonly" in str(exc).replace(" ", ""))

    def _open_copy(self) -> None:
        """Plan writes nothing: roll the hot journal back in a private copy and read that,
        which is exactly the last committed state. The next apply repairs the real file."""
        assert self.backend.path is not None
        self.close()
        self._copy = Scratch("ledger")
        copy = self._copy.path / "ledger.sqlite"
        self._file = copy
        shutil.copyfile(self.backend.path, copy)
        shutil.copyfile(f"{self.backend.path}-journal", f"{copy}-journal")
        try:
            self._engine = self._make_engine(self.backend.url.set(database=str(copy)),
                                             read_only=False)
            self._conn = self._engine.connect()
            self._init(create=False)
        except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
            raise self._unreadable(exc) from None

    def _init(self, create: bool | None = None) -> None:
        """Create (writable) or find the tables, check the version, migrate step by step."""
        conn = self._c()
        create = self.writable if create is None else create
        with conn.begin():
            present = inspect(conn).has_table(self.t.meta.name, schema=self.t.meta.schema)
        if not present:
            if not create:
                return  # no state yet: empty
            self._create(conn)
        with conn.begin():
            self._version = int(self._meta(conn, "version") or 1)
        self._check_version()
        if self._compact:
            with conn.begin():
                early = self._meta(conn, "field_names")
            if early is not None:  # meta of a layout that was never released
                raise StateError(
                    f"the state ({self.backend.where}) was written by a development build of "
                    "brazecfg (state version 4 before its final layout); nothing was changed. "
                    "Restore it with `brazecfg state push` from an export made by that build, "
                    "or from a backup of its version 3")
        was = self._version
        while self._version < SCHEMA_VERSION and self.writable:
            with conn.begin():
                if int(self._meta(conn, "version") or 1) == self._version:
                    MIGRATIONS[self._version](conn, self.t)
                    self._put_meta(conn, "version", str(self._version + 1))
                self._version = int(self._meta(conn, "version") or 1)
        if was < 4 <= self._version and self.backend.name == "local" and create:
            # v4 packed the field hashes: give the space back (outside any transaction)
            raw = conn.connection.driver_connection
            if raw is not None:
                raw.execute("VACUUM")

    def _create(self, conn: Connection) -> None:
        try:
            if self.backend.dialect == "sqlite" and self.backend.name == "local":
                raw = conn.connection.driver_connection
                assert raw is not None
                raw.executescript(V1_SQLITE)  # v1 as it was, then the migrations
                with conn.begin():
                    if self._meta(conn, "version") is None:
                        conn.execute(insert(self.t.meta).values(key="version", value="1"))
                return
            with conn.begin():
                if self.t.metadata.schema:
                    conn.execute(CreateSchema(self.t.metadata.schema, if_not_exists=True))
                self.t.metadata.create_all(conn, checkfirst=True)
                if self._meta(conn, "version") is None:
                    conn.execute(insert(self.t.meta).values(key="version", value="1"))
        except SQLAlchemyError as exc:
            # Two first applies at once: the other one created the tables; use them.
            with conn.begin():
                if not inspect(conn).has_table(self.t.meta.name, schema=self.t.meta.schema):
                    raise self._error(exc, "could not be created") from None

    def _check_version(self) -> None:
        if self._version > SCHEMA_VERSION:
            raise StateError(
                f"the state ({self.backend.where}) was written by a newer brazecfg (state "
                f"version {self._version}; this brazecfg reads up to {SCHEMA_VERSION}); "
                "upgrade brazecfg. Nothing was changed")

    def _c(self) -> Connection:
        assert self._conn is not None
        return self._conn

    @property
    def _empty(self) -> bool:
        return self._conn is None or self._version == 0

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._mutex:
            conn = self._c()
            conn.info[_READING] = True
            try:
                with conn.begin():
                    yield conn
            except StateError:
                raise
            except SQLAlchemyError as exc:
                raise self._error(exc, "could not be read") from None
            finally:
                conn.info.pop(_READING, None)

    # -- metadata ---------------------------------------------------------------------------
    def _meta(self, conn: Connection, key: str) -> str | None:
        row = conn.execute(select(self.t.meta.c.value).where(self.t.meta.c.key == key)).first()
        return None if row is None else str(row[0])

    def _put_meta(self, conn: Connection, key: str, value: str | None) -> None:
        conn.execute(delete(self.t.meta).where(self.t.meta.c.key == key))
        if value is not None:
            conn.execute(insert(self.t.meta).values(key=key, value=value))

    def meta(self, key: str) -> str | None:
        if self._empty:
            return None
        with self._read() as conn:
            return self._meta(conn, key)

    def meta_items(self) -> list[tuple[str, str]]:
        if self._empty:
            return []
        with self._read() as conn:
            rows = conn.execute(select(self.t.meta.c.key, self.t.meta.c.value)
                                .order_by(self.t.meta.c.key)).all()
        return [(str(k), str(v)) for k, v in rows if not layout_key(str(k))]

    def set_meta(self, key: str, value: str | None) -> None:
        """Set (or, with None, remove) a metadata value. Keys are brazecfg's, e.g. bindings.
        Metadata does not bump the generation (as in v1: a saved plan stays current when
        only the key check or a watermark was written)."""
        with self._write(bump=False) as conn:
            self._put_meta(conn, key, value)

    @property
    def schema_version(self) -> int:
        return self._version

    @property
    def key_check(self) -> str | None:
        return self.meta("key_check")

    def set_key_check(self, value: str) -> None:
        self.set_meta("key_check", value)

    @property
    def generation(self) -> int:
        """Bumped by every commit: a saved plan remembers it to detect a state that moved on."""
        value = self.meta("generation")
        return int(value) if value else 0

    @property
    def identity(self) -> StateIdentity:
        return StateIdentity(self.backend.name, self.meta("state_id"), self.generation)

    def watermark(self, destination: str) -> dict[str, str] | None:
        """Where the last fully confirmed run started reading, and its config fingerprint."""
        value = self.meta(f"watermark:{destination}")
        return None if value is None else dict(json.loads(value))

    def set_watermark(self, destination: str, mark: dict[str, str]) -> None:
        self.set_meta(f"watermark:{destination}", json.dumps(mark, sort_keys=True))

    # -- reads ------------------------------------------------------------------------------
    def _ordered(self, col: ColumnElement[Any]) -> ColumnElement[Any]:
        """``col`` compared and sorted in byte order on this dialect."""
        if self.backend.dialect == "duckdb":
            return col.collate("binary")
        return col  # SQLite: BINARY; PostgreSQL: the column is "C"; others: checked below

    def _pages(self, table: Table, key: str, cols: list[str], where: list[ColumnElement[bool]],
               batch_size: int) -> Iterator[Any]:
        """Rows of ``table`` in byte order of ``key``, one short query per batch (keyset)."""
        if self._empty:
            return
        k = self._ordered(table.c[key])
        last: str | None = None
        while True:
            q = select(*(table.c[c] for c in cols)).where(*where)
            if last is not None:
                q = q.where(k > last)
            with self._read() as conn:
                rows = conn.execute(q.order_by(k).limit(batch_size)).all()
            for row in rows:
                if last is not None and not row[0] > last:
                    raise StateError(f"the state ({self.backend.where}) does not return keys in "
                                     f"byte order ({row[0]!r} after {last!r}); this backend's "
                                     "collation is not supported")
                last = row[0]
                yield row
            if len(rows) < batch_size:
                return

    @property
    def _compact(self) -> bool:
        """Records in the compact layout (v4 on SQLite, whose columns take any type)."""
        return self.backend.dialect == "sqlite" and self._version >= 4

    def _sync(self, conn: Connection) -> None:
        """Read the compact layout's numbers (at the start of every write: they are only
        ever appended, inside the transaction that uses them)."""
        if self._compact:
            m = self.t.meta
            rows = conn.execute(select(m.c.key, m.c.value).where(
                m.c.key.in_(("destinations", "group_sets")) | m.c.key.startswith(FIELDS)))
            self._codec.load({str(k): str(v) for k, v in rows})

    def _dkey(self, conn: Connection, destination: str, *, create: bool = False) -> Any:
        """What the records table's destination column holds for ``destination``: its
        number in the compact layout (-1, matching nothing, when it has none), else its name."""
        if not self._compact:
            return destination
        n = self._codec.dest_id(destination, create=create)
        if n is None and not create:
            self._sync(conn)  # numbered since our copy was read?
            n = self._codec.dest_id(destination)
        return -1 if n is None else n

    def _dkey_read(self, destination: str) -> Any:
        if not self._compact:
            return destination
        with self._read() as conn:
            return self._dkey(conn, destination)

    def _flush(self, conn: Connection) -> None:
        """Write the layout's numbers assigned in this transaction."""
        for key, value in self._codec.dump():
            self._put_meta(conn, key, value)

    def _decode(self, value: Any, destination: str, conn: Connection | None = None
                ) -> tuple[dict[str, str], frozenset[str] | None]:
        """A ``fields`` column as (field -> hash, groups): packed (bytes, the compact layout,
        groups inside) or JSON text (older rows, other dialects; groups None: its column)."""
        if isinstance(value, bytes | memoryview):
            blob = bytes(value)
            try:
                return self._codec.unpack(destination, blob)
            except Stale:  # a number given after our copy of the lists was read
                self._resync(conn)
                return self._codec.unpack(destination, blob)
        return dict(json.loads(value)), None

    def _resync(self, conn: Connection | None) -> None:
        if conn is None:
            with self._read() as c:
                self._sync(c)
        else:
            self._sync(conn)

    def _groups(self, value: Any) -> frozenset[str]:
        """A v1-v3 or text-layout ``groups`` column (JSON text)."""
        g = self._groups_cache.get(value)
        if g is None:
            g = frozenset(json.loads(value))
            if len(self._groups_cache) < 4096:  # a few distinct sets in practice
                self._groups_cache[value] = g
        return g

    def _record(self, key: str, destination: str, fields: Any, groups: Any,
                h: bytes | None, conn: Connection | None = None) -> LedgerRecord:
        f, g = self._decode(fields, destination, conn)
        return LedgerRecord(key, f, self._groups(groups) if g is None else g, h)

    def _light(self, key: str, fields: Any, groups: Any, h: bytes | None) -> StoredKey:
        if self._compact:
            try:
                g = self._codec.groups_of(bytes(fields))
            except Stale:
                self._resync(None)
                g = self._codec.groups_of(bytes(fields))
            return StoredKey(key, {}, g, h)
        return StoredKey(key, {}, self._groups(groups), h)

    def _gcol(self) -> str:
        """The column that holds a record's groups: its own, or (compact) ``fields``."""
        return "fields" if self._compact else "groups"

    def stream(self, destination: str, batch_size: int = 5000, *, light: bool = False
               ) -> Iterator[LedgerRecord]:
        """Every record of a destination in external_id byte order, streamed. ``light``:
        without field hashes (StoredKey: key, groups, row hash), for plans that compare
        record hashes and load full records (``records``) only for those that changed."""
        if self._empty:
            return
        r = self.t.records
        hashed = self._version >= 4
        cols = ["external_id", self._gcol(), *(["row_hash"] if hashed else []),
                *([] if light or self._compact else ["fields"])]
        with self._read() as conn:
            self._sync(conn)
            d = self._dkey(conn, destination)
        pages = self._pages(r, "external_id", cols, [r.c.destination == d], batch_size)
        compact = self._compact
        if light and compact:  # the light read of plans comparing record hashes: one a record
            groups_of = self._codec.groups_of
            for key, packed, h in pages:
                blob = bytes(packed)
                try:
                    g = groups_of(blob)
                except Stale:  # a group set numbered after our copy of the lists was read
                    self._resync(None)
                    g = groups_of(blob)
                yield StoredKey(key, None, g, None if h is None else bytes(h))
            return
        for row in pages:
            h = bytes(row[2]) if hashed and row[2] is not None else None
            if light:
                yield self._light(row[0], row[1], row[1], h)
            else:
                yield self._record(row[0], destination, row[-1] if not compact
                                   else row[1], row[1], h)

    def joinable(self, destination: str) -> StateTable | None:
        """Where the records of ``destination`` are, for a warehouse to compare record
        hashes with them in its own SQL (README "How it works"); None for a state without
        record hashes (before v4) or none at all."""
        if self._empty or self._version < 4:
            return None
        r = self.t.records
        with self._read() as conn:
            self._sync(conn)
            d = self._dkey(conn, destination)
        return StateTable(self.backend.dialect, r.name, r.schema, d, self._gcol(),
                          attach=self._file if self.backend.dialect == "sqlite" else None,
                          app=self.backend.app)

    def for_a_long_read(self, table: StateTable) -> StateTable | None:
        """``table`` (from ``joinable``) as a warehouse may read it in one long query. Apply
        (a writable local state): a copy of the file, taken inside a read transaction (no
        commit lands during the copy); only this process writes the state meanwhile (the
        lease), and not its records. The file itself must not be read that long: the
        heartbeat renews the lease in it, and its commit would wait for the query's shared
        lock until the lease expired. Otherwise ``table`` itself. None when the copy cannot
        be made (no room for it in the temporary directory): the caller merges in brazecfg."""
        if table.attach is None or not self.writable or self.backend.name != "local":
            return table
        assert self._file is not None
        if self._snapshots is None:
            self._snapshots = Scratch("state-snapshot")
        copy = self._snapshots.path / "ledger.sqlite"
        try:
            with self._read() as conn:
                self._sync(conn)  # a statement: the read transaction holds its shared lock now
                shutil.copyfile(self._file, copy)
        except OSError:
            copy.unlink(missing_ok=True)
            return None
        return replace(table, attach=copy)

    def light(self, key: str, groups: Any, row_hash: bytes | None) -> StoredKey:
        """A record read light elsewhere (a warehouse reading ``joinable``): its key, the
        value of its groups column and its row hash."""
        return self._light(key, groups, groups, row_hash)

    def member_counts(self, destination: str) -> dict[str, int]:
        """How many records of ``destination`` are in each synced group: one GROUP BY over
        the records' group sets (in the compact layout, the set number that starts a packed
        record: its first bytes, as many as that number takes), nothing else read."""
        if self._empty:
            return {}
        r = self.t.records
        col = r.c[self._gcol()]
        if self._compact:
            def byte(i: int) -> Any:
                return func.substr(col, i, 1) < literal_column("X'80'")
            what: Any = case((func.length(col) % 8 == 0, null()),
                             (byte(1), func.substr(col, 1, 1)),
                             (byte(2), func.substr(col, 1, 2)),
                             (byte(3), func.substr(col, 1, 3)),
                             else_=func.substr(col, 1, 5))
        else:
            what = col
        out: dict[str, int] = {}
        with self._read() as conn:
            self._sync(conn)
            d = self._dkey(conn, destination)
            rows = conn.execute(select(what, func.count()).where(r.c.destination == d)
                                .group_by(what)).all()
        for value, n in rows:
            if self._compact:
                if value is None:
                    continue
                try:
                    groups = self._codec.groups_of(bytes(value))
                except Stale:
                    self._resync(None)
                    groups = self._codec.groups_of(bytes(value))
            else:
                groups = self._groups(value)
            for g in groups:
                out[g] = out.get(g, 0) + int(n)
        return out

    def records(self, destination: str, external_ids: list[str]) -> dict[str, LedgerRecord]:
        """The full records of these ids (those the state has), a few queries of 500."""
        if self._empty or not external_ids:
            return {}
        r = self.t.records
        hashed = self._version >= 4
        out: dict[str, LedgerRecord] = {}
        with self._read() as conn:
            self._sync(conn)
            d = self._dkey(conn, destination)
            for i in range(0, len(external_ids), 500):
                cols = [r.c.external_id, r.c.fields, r.c[self._gcol()],
                        *([r.c.row_hash] if hashed else [])]
                for row in conn.execute(select(*cols).where(
                        r.c.destination == d, r.c.external_id.in_(external_ids[i:i + 500]))):
                    h = bytes(row[3]) if hashed and row[3] is not None else None
                    out[str(row[0])] = self._record(str(row[0]), destination, row[1], row[2],
                                                    h, conn)
        return out

    def count_unhashed(self, destination: str) -> int:
        """Records with no stored record hash (confirmed before v4, or whose hash was
        cleared): a plan comparing hashes must read each of them."""
        r = self.t.records
        if self._version < 4:
            return self.count(destination)
        return self._count(r, r.c.destination == self._dkey_read(destination),
                           r.c.row_hash.is_(None))

    def _count(self, table: Table, *where: ColumnElement[bool]) -> int:
        if self._empty:
            return 0
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(table).where(*where))
                       .scalar_one())

    def count(self, destination: str) -> int:
        if self._empty:
            return 0
        return self._count(self.t.records,
                           self.t.records.c.destination == self._dkey_read(destination))

    def _dest_names(self, conn: Connection, values: Iterable[Any]) -> list[str]:
        """Destination column values of the records table as names."""
        if not self._compact:
            return [str(v) for v in values]
        out = []
        for v in values:
            name = self._codec.dest_name(int(v))
            if name is None:
                self._sync(conn)
                name = self._codec.dest_name(int(v))
            if name is not None:
                out.append(name)
        return out

    def destinations(self) -> list[str]:
        """Destinations with records (what apply forgets when they leave the config)."""
        if self._empty:
            return []
        with self._read() as conn:
            rows = conn.execute(select(self.t.records.c.destination).distinct()).all()
            return sorted(self._dest_names(conn, (r[0] for r in rows)))

    def known_destinations(self) -> list[str]:
        """Every destination the state holds anything about: records, events, failures."""
        if self._empty:
            return []
        out: set[str] = set()
        with self._read() as conn:
            out.update(self._dest_names(conn, (r[0] for r in conn.execute(
                select(self.t.records.c.destination).distinct()))))
            for t in (self.t.events, self.t.failures):
                out.update(r[0] for r in conn.execute(select(t.c.destination).distinct()))
            if self._version >= 2:
                out.update(r[0] for r in conn.execute(select(self.t.intents.c.destination)
                                                      .distinct()))
        return sorted(out)

    def failures(self, destination: str, limit: int | None = None) -> tuple[int, list[Failure]]:
        """How many records failed last time, and up to ``limit`` of them with Braze's reason."""
        f = self.t.failures
        n = self._count(f, f.c.destination == destination)
        if n == 0 or limit == 0:
            return n, []
        rows = self._pages(f, "external_id", ["external_id", "reason"],
                           [f.c.destination == destination], min(limit or 5000, 5000))
        return n, [Failure(a, b) for a, b in islice(rows, limit)]

    def failure(self, destination: str, external_id: str) -> str | None:
        if self._empty:
            return None
        f = self.t.failures
        with self._read() as conn:
            row = conn.execute(select(f.c.reason).where(
                f.c.destination == destination, f.c.external_id == external_id)).first()
        return None if row is None else str(row[0])

    def record(self, destination: str, external_id: str) -> LedgerRecord | None:
        if self._empty:
            return None
        r = self.t.records
        with self._read() as conn:
            self._sync(conn)
            row = conn.execute(select(r.c.fields, r.c[self._gcol()]).where(
                r.c.destination == self._dkey(conn, destination),
                r.c.external_id == external_id)).first()
            if row is None:
                return None
            return self._record(external_id, destination, row[0], row[1], None, conn)

    def stream_events(self, destination: str, stream: str, batch_size: int = 5000
                      ) -> Iterator[tuple[str, str]]:
        """(row_key, state) of every event row the state knows, in row_key byte order."""
        e = self.t.events
        for key, state in self._pages(e, "row_key", ["row_key", "state"],
                                      [e.c.destination == destination, e.c.stream == stream],
                                      batch_size):
            yield str(key), str(state)

    def event_rows(self, destination: str, external_prefix: str | None = None
                   ) -> list[tuple[str, str, str, str | None]]:
        """(stream, row_key, state, reason) of a destination's event rows (for `state show`)."""
        if self._empty:
            return []
        e = self.t.events
        with self._read() as conn:
            rows = conn.execute(select(e.c.stream, e.c.row_key, e.c.state, e.c.reason)
                                .where(e.c.destination == destination)).all()
        return sorted((str(a), str(b), str(c), d) for a, b, c, d in rows)

    def streams(self, destination: str) -> dict[str, dict[str, int]]:
        """Per event stream, the number of rows in each state."""
        if self._empty:
            return {}
        e = self.t.events
        with self._read() as conn:
            rows = conn.execute(select(e.c.stream, e.c.state, func.count())
                                .where(e.c.destination == destination)
                                .group_by(e.c.stream, e.c.state)).all()
        out: dict[str, dict[str, int]] = {}
        for stream, state, n in rows:
            out.setdefault(str(stream), {})[str(state)] = int(n)
        return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}

    def event_states(self, destination: str) -> dict[str, int]:
        total: dict[str, int] = {}
        for states in self.streams(destination).values():
            for state, n in states.items():
                total[state] = total.get(state, 0) + n
        return dict(sorted(total.items()))

    def stream_intents(self, destination: str) -> Iterator[str]:
        """Ids whose create was sent but not yet confirmed, in byte order: a crash between a
        confirmed create and its commit leaves them here for the next plan to find."""
        if self._version < 2:
            return
        i = self.t.intents
        for (ext_id,) in self._pages(i, "external_id", ["external_id"],
                                     [i.c.destination == destination], 5000):
            yield str(ext_id)

    # -- writes (apply only) ----------------------------------------------------------------
    @contextmanager
    def _write(self, *, bump: bool = True) -> Iterator[Connection]:
        """One transaction, after the fencing check; bumps the generation."""
        if self._conn is None or not self.writable:
            raise RuntimeError("ledger opened read-only")
        with self._mutex:
            conn = self._conn
            try:
                generation = None
                with conn.begin():
                    self._fence(conn)
                    yield conn
                    if bump:
                        generation = self._bump(conn)
                if self._lease is not None:  # the only writer: remember it (committed)
                    self._generation = generation
                if self._grown:
                    self._analyze_grown()
                if conn.dialect.name == "duckdb":
                    self._checkpoint_loaded_indexes(conn)
            except StateError:
                raise
            except SQLAlchemyError as exc:
                raise self._error(exc, "refused a write (nothing of it was kept)") from None

    def _checkpoint_loaded_indexes(self, conn: Connection) -> None:
        """DuckDB: CHECKPOINT once the primary-key indexes it loaded and changed hold a
        DUCKDB_INDEX_SHARE of its ``memory_limit``. Each write seeks its ids in the key's
        index, which DuckDB loads into memory as it is used and keeps there, changed, until
        a checkpoint writes it out; with the state of 10M records, 250 commits of 75 ids
        filled the whole 256MB limit and the next write failed ("could not allocate
        block"), an apply left half done. Its own checkpoint comes only when the log
        reaches 16MB. Best effort: another transaction may hold it back, and the next write
        tries again."""
        try:
            loaded, limit = conn.exec_driver_sql(
                "SELECT (SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory() "
                "WHERE tag = 'ART_INDEX'), current_setting('memory_limit')").one()
            conn.commit()
            from brazecfg.warehouse.connect import DUCKDB_MEMORY_LIMIT, duckdb_bytes

            limit_bytes = duckdb_bytes(str(limit)) or duckdb_bytes(DUCKDB_MEMORY_LIMIT)
            assert limit_bytes is not None
            if int(loaded or 0) >= limit_bytes / DUCKDB_INDEX_SHARE:
                conn.exec_driver_sql("CHECKPOINT")
                conn.commit()
        except SQLAlchemyError:
            try:
                conn.rollback()
            except SQLAlchemyError:
                pass

    def _insert(self, conn: Connection, table: Table, rows: list[dict[str, Any]], *,
                or_replace: bool = False) -> None:
        _insert_rows(conn, table, rows, or_replace=or_replace)
        if rows and conn.dialect.name == "postgresql":
            self._grown[table.name] += len(rows)

    def _analyze_grown(self) -> None:
        """PostgreSQL: ANALYZE the state tables this process grew (ANALYZE_AFTER_ROWS), after
        the transaction that grew them committed. Best effort: statistics only."""
        assert self._conn is not None
        for table in self.t.all():
            grown = self._grown.get(table.name, 0)
            if grown < max(ANALYZE_AFTER_ROWS, self._analyzed.get(table.name, 0)):
                continue
            try:
                with self._conn.begin():
                    self._conn.exec_driver_sql(f"ANALYZE {_table_sql(self._conn, table)}")
            except SQLAlchemyError:
                pass  # another role owns the table, or it is busy: autovacuum will do it
            self._analyzed[table.name] = self._analyzed.get(table.name, 0) + grown
            self._grown[table.name] = 0

    def _bump(self, conn: Connection) -> int:
        """Generation + 1. Under a lease this process is the only writer, so the value it
        committed last is known and one UPDATE does (fewer statements per commit)."""
        m = self.t.meta
        g = self._generation if self._lease is not None else None
        if g is None:
            text = self._meta(conn, "generation")
            if text is None:
                conn.execute(insert(m).values(key="generation", value="1"))
                return 1
            g = int(text)
        conn.execute(update(m).where(m.c.key == "generation").values(value=str(g + 1)))
        return g + 1

    def _fence(self, conn: Connection) -> None:
        """Under a lease: stop unless it is still ours and alive. Touching the lease row first
        makes a concurrent unlock or takeover wait for this transaction (row lock)."""
        if self._lease is None:
            return
        lock_id, fence = self._lease
        lt = self.t.lease
        touch = update(lt).where(lt.c.name == LEASE, lt.c.lock_id == lock_id,
                                 lt.c.fence == fence, lt.c.expires_ms >= now_ms())
        if conn.dialect.update_returning:  # one statement: matched means ours and alive
            ok = conn.execute(touch.values(fence=lt.c.fence).returning(lt.c.fence)).first()
        else:
            conn.execute(touch.values(fence=lt.c.fence))
            row = conn.execute(select(lt.c.lock_id, lt.c.fence, lt.c.expires_ms)
                               .where(lt.c.name == LEASE)).first()
            ok = row if row is not None and row[0] == lock_id and row[1] == fence \
                and int(row[2] or 0) >= now_ms() else None
        if ok is None:
            self._lease = None
            raise LeaseLost(
                f"the state lock was lost (it expired or was force-unlocked; lock id "
                f"{lock_id}), so this process stopped writing to the state "
                f"({self.backend.where}); what was confirmed before is kept. Run the command "
                "again")

    def commit(self, destination: str, *, upserts: Iterable[LedgerRecord] = (),
               deletes: Iterable[str] = (), failures: Iterable[Failure] = ()) -> None:
        """One transaction: what Braze confirmed for one batch (and what it rejected). The
        create intents of these ids are cleared in the same transaction."""
        at = _now()
        r, f = self.t.records, self.t.failures
        # Keyed by id: the same id twice in one batch keeps the last (v1's INSERT OR REPLACE).
        latest = list({x.external_id: x for x in upserts}.values())
        dels = list(dict.fromkeys(deletes))
        fails = list({x.external_id: {"destination": destination, "external_id": x.external_id,
                                      "reason": x.reason, "failed_at": at}
                      for x in failures}.values())
        with self._write() as conn:
            self._sync(conn)
            ups = self._rows_of(conn, destination, latest, at)
            touched = [u["external_id"] for u in ups] + dels
            # SQLite replaces a record on its primary key as it inserts it: only the deleted
            # ids need a DELETE there (a first apply's commits delete nothing).
            or_replace = conn.dialect.name == "sqlite"
            self._delete_ids(conn, r, self._dkey(conn, destination),
                             dels if or_replace else touched)
            if fails or self._has_failures(conn, destination):
                self._delete_ids(conn, f, destination, touched + [x["external_id"] for x in fails])
            if ups:
                self._insert(conn, r, ups, or_replace=or_replace)
            if fails:
                self._insert(conn, f, fails)
            if self._version >= 2:
                self._delete_ids(conn, self.t.intents, destination,
                                 touched + [x["external_id"] for x in fails])

    def _rows_of(self, conn: Connection, destination: str, records: list[LedgerRecord],
                 at: str) -> list[dict[str, Any]]:
        """Records as rows: the compact layout on SQLite (new numbers written to meta in
        this transaction; ``_sync`` first), JSON elsewhere; the row hash from v4 on."""
        if not records:
            return []
        rows = []
        if self._compact:
            d = self._dkey(conn, destination, create=True)
            pack = self._codec.pack
            rows = [{"destination": d, "external_id": x.external_id,
                     "fields": pack(destination, x.fields, x.groups), "row_hash": x.row_hash}
                    for x in records]
            self._flush(conn)
            return rows
        for x in records:
            row: dict[str, Any] = {
                "destination": destination, "external_id": x.external_id,
                "fields": json.dumps(x.fields, sort_keys=True, separators=(",", ":")),
                "groups": json.dumps(sorted(x.groups), separators=(",", ":")),
                "confirmed_at": at}
            if self._version >= 4:
                row["row_hash"] = x.row_hash
            rows.append(row)
        return rows

    def set_row_hashes(self, destination: str, pairs: Iterable[tuple[str, bytes]]) -> None:
        """Record the warehouse's record hash of records whose confirmed fields and groups
        already match the warehouse (a plan read them and found nothing to send), so the next
        plan need not read them again. Records the state does not have are skipped."""
        if self._version < 4:
            return
        r = self.t.records
        it = iter(pairs)
        d = self._dkey_read(destination)
        n = 0
        while batch := [{"b_id": k, "b_h": h} for k, h in islice(it, 20000)]:
            with self._write(bump=False) as conn:
                conn.execute(update(r).where(r.c.destination == d,
                                             r.c.external_id == bindparam("b_id"))
                             .values(row_hash=bindparam("b_h")), batch)
            n += len(batch)
        if n >= 10000 and 4 * n >= self.count(destination):
            self.compact()

    def compact(self) -> bool:
        """VACUUM a local ledger (outside any transaction): records that grew in place (a
        record hash stored for each after a migration) split pages half empty. Best effort:
        False when another process holds the file open for reading."""
        if self.backend.name != "local" or self._conn is None or not self.writable:
            return False
        with self._mutex:
            raw = self._conn.connection.driver_connection
            if raw is None:
                return False
            try:
                raw.execute("VACUUM")
            except sqlite3.Error:
                return False
        return True

    def _has_failures(self, conn: Connection, destination: str) -> bool:
        """Whether the state holds a failure of ``destination`` (one primary-key seek): a
        commit with none to clear skips their DELETEs."""
        f = self.t.failures
        return conn.execute(select(f.c.external_id).where(f.c.destination == destination)
                            .limit(1)).first() is not None

    @staticmethod
    def _delete_ids(conn: Connection, table: Table, destination: str | int,
                    ids: list[str]) -> None:
        """Delete ``ids`` of ``destination`` from ``table``: 500 ids a statement, in the
        driver's SQL (SQLAlchemy compiled each expanded IN list anew, per statement). On
        PostgreSQL one statement per id, sent together (executemany: psycopg pipelines
        them): an equality on the whole primary key is an index lookup whatever the
        table's statistics say, while a table that grew since it was last analyzed (a first
        apply) had each IN list answered by reading every record of the destination."""
        name = _table_sql(conn, table)
        if conn.dialect.name == "postgresql":
            if ids:
                conn.exec_driver_sql(
                    f"DELETE FROM {name} WHERE {_quote(conn, 'destination')} = %s AND "
                    f"{_quote(conn, 'external_id')} = %s", [(destination, i) for i in ids])
            return
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            conn.exec_driver_sql(f"DELETE FROM {name} WHERE {_by_ids(conn, len(part))}",
                                 (destination, *part))

    def update_groups(self, destination: str, external_ids: Iterable[str], group: str, *,
                      member: bool) -> None:
        """Braze confirmed a subscription change: add or remove ``group`` for these records."""
        r, f = self.t.records, self.t.failures
        ids = list(dict.fromkeys(external_ids))
        at = _now()
        with self._write() as conn:
            self._sync(conn)
            d = self._dkey(conn, destination)
            changes = []
            for i in range(0, len(ids), 500):
                for ext_id, fields, groups in conn.execute(
                        select(r.c.external_id, r.c.fields, r.c[self._gcol()]).where(
                        r.c.destination == d, r.c.external_id.in_(ids[i:i + 500]))):
                    # (an id without a record: its profile write was never confirmed; skip it)
                    rec = self._record(ext_id, destination, fields, groups, None, conn)
                    now = rec.groups | {group} if member else rec.groups - {group}
                    changes.append({"b_id": ext_id, "b_at": at, "b_groups": (
                        self._codec.pack(destination, rec.fields, now) if self._compact
                        else json.dumps(sorted(now), separators=(",", ":")))})
            if changes:  # one statement, many rows
                values: dict[str, Any] = {self._gcol(): bindparam("b_groups")}
                if "confirmed_at" in r.c:
                    values["confirmed_at"] = bindparam("b_at")
                conn.execute(update(r).where(r.c.destination == d,
                                             r.c.external_id == bindparam("b_id"))
                             .values(**values), changes)
                self._flush(conn)
            self._delete_ids(conn, f, destination, ids)

    def mark_events(self, destination: str, stream: str, states: Iterable[tuple[str, str, str | None]]
                    ) -> None:
        """Record (row_key, state, reason) for event rows, in one transaction: an upsert, so
        the user, name, weight and time that mark_sending recorded stay."""
        at = _now()
        e = self.t.events
        latest = {k: (st, why) for k, st, why in states}  # the same key twice: the last wins
        with self._write() as conn:
            keys = list(latest)
            have: set[str] = set()
            for i in range(0, len(keys), 500):
                have.update(str(r[0]) for r in conn.execute(select(e.c.row_key).where(
                    e.c.destination == destination, e.c.stream == stream,
                    e.c.row_key.in_(keys[i:i + 500]))))
            known = [{"k": k, "st": latest[k][0], "why": latest[k][1]} for k in keys if k in have]
            if known:  # one executemany, not a statement per row
                conn.execute(update(e).where(e.c.destination == destination,
                                             e.c.stream == stream, e.c.row_key == bindparam("k"))
                             .values(state=bindparam("st"), reason=bindparam("why"), at=at),
                             known)
            new = [{"destination": destination, "stream": stream, "row_key": k,
                    "state": latest[k][0], "reason": latest[k][1], "at": at}
                   for k in keys if k not in have]
            if new:
                self._insert(conn, e, new)

    # -- delivery: events in flight and create intents (apply only) -----------------------
    def mark_sending(self, destination: str, marks: Iterable[EventMark]) -> Previous:
        """Mark event rows ``sending`` right before their request leaves (called from apply's
        worker threads), with the user, name, weight and time settling needs. Returns what
        the rows were before, so a request that provably never left can restore them."""
        marks = list({(m.stream, m.row_key): m for m in marks}.values())
        at = _now()
        e = self.t.events
        previous: Previous = {(m.stream, m.row_key): None for m in marks}
        with self._write() as conn:
            for stream in sorted({m.stream for m in marks}):
                keys = [m.row_key for m in marks if m.stream == stream]
                for i in range(0, len(keys), 500):
                    part = keys[i:i + 500]
                    where = (e.c.destination == destination, e.c.stream == stream,
                             e.c.row_key.in_(part))
                    for key, state, reason in conn.execute(
                            select(e.c.row_key, e.c.state, e.c.reason).where(*where)):
                        previous[(stream, str(key))] = (str(state), reason)
                    conn.execute(delete(e).where(*where))
            if marks:
                self._insert(conn, e, [
                    {"destination": destination, "stream": m.stream, "row_key": m.row_key,
                     "state": "sending", "reason": None, "at": at, "user": m.user,
                     "name": m.name, "weight": m.weight, "time": m.time} for m in marks])
        return previous

    def restore_events(self, destination: str, previous: Previous) -> None:
        """Undo mark_sending for a request that never left (or that Braze answered by
        processing nothing): each row goes back to what it was; a row unknown before stays
        unknown, since an earlier attempt may have reached Braze."""
        at = _now()
        e = self.t.events
        with self._write() as conn:
            for (stream, key), was in previous.items():
                where = (e.c.destination == destination, e.c.stream == stream, e.c.row_key == key)
                if was is None:
                    conn.execute(delete(e).where(*where))
                else:
                    conn.execute(update(e).where(*where).values(state=was[0], reason=was[1],
                                                                at=at))

    def stream_unsure_users(self, destinations: list[str]) -> Iterator[EventState]:
        """Every event row of every user that has a row ``sending`` or ``unknown`` in one of
        these destinations (sent rows included: settling compares totals), grouped by user
        (rows without a user, from before version 3, last)."""
        if self._empty or self._version < 3 or not destinations:
            return iter(())
        e = self.t.events
        unsure = e.c.state.in_(("sending", "unknown"))
        cols = (e.c.destination, e.c.stream, e.c.row_key, e.c.state, e.c.user, e.c.name,
                e.c.weight, e.c.time, e.c.at)
        users = select(e.c.user).where(e.c.destination.in_(destinations), unsure).distinct()
        with self._read() as conn:  # read whole: settling writes while it walks the rows
            known = conn.execute(select(*cols).where(
                e.c.destination.in_(destinations), e.c.user.in_(users))).all()
            orphans = conn.execute(select(*cols).where(
                e.c.destination.in_(destinations), e.c.user.is_(None), unsure)).all()
        rows = sorted(known, key=lambda r: (str(r[4]), r[0], r[1], r[2])) + sorted(
            orphans, key=lambda r: (r[0], r[1], r[2]))
        return iter([EventState(str(r[0]), str(r[1]), str(r[2]), str(r[3]),
                                None if r[4] is None else str(r[4]), r[5],
                                None if r[6] is None else int(r[6]), r[7], str(r[8]))
                     for r in rows])

    def add_intents(self, destination: str, external_ids: Iterable[str]) -> list[str]:
        """Record, durably, creates about to be sent: until confirmed (or provably not
        sent), Braze may have these users though the state has no record of them. Returns
        the ids that were not intents already (what a refused request may clear again)."""
        ids = list(dict.fromkeys(external_ids))
        it = self.t.intents
        with self._write(bump=False) as conn:
            have: set[str] = set()
            name = _table_sql(conn, it)
            for i in range(0, len(ids), 500):
                part = ids[i:i + 500]
                have.update(str(r[0]) for r in conn.exec_driver_sql(
                    f"SELECT {_quote(conn, 'external_id')} FROM {name} "
                    f"WHERE {_by_ids(conn, len(part))}", (destination, *part)))
            new = [i for i in ids if i not in have]
            if new:
                at = _now()
                self._insert(conn, it, [{"destination": destination, "external_id": i,
                                         "at": at} for i in new])
        return new

    def clear_intents(self, destination: str, external_ids: Iterable[str] | None = None
                      ) -> None:
        """Forget intents: these ids (their create was confirmed, refused or deleted), or,
        with None, every intent whose record the state now has."""
        it, r = self.t.intents, self.t.records
        with self._write(bump=False) as conn:
            if external_ids is None:
                d = self._dkey(conn, destination)
                conn.execute(delete(it).where(
                    it.c.destination == destination,
                    it.c.external_id.in_(select(r.c.external_id).where(r.c.destination == d))))
            else:
                self._delete_ids(conn, it, destination, list(external_ids))

    def forget_destination(self, destination: str) -> None:
        """Drop a destination's rows: records, failures, events, intents, watermark."""
        with self._write() as conn:
            self._sync(conn)
            r = self.t.records
            conn.execute(delete(r).where(r.c.destination == self._dkey(conn, destination)))
            for t in (self.t.failures, self.t.events, self.t.intents):
                conn.execute(delete(t).where(t.c.destination == destination))
            for prefix in DESTINATION_META:
                self._put_meta(conn, f"{prefix}{destination}", None)
            self._codec.forget(destination)  # (its number stays: no reader sees it reused)

    def rename_destination(self, old: str, new: str) -> None:
        """Everything known about ``old`` now belongs to ``new`` (a reviewed rename)."""
        if old == new:
            return
        with self._write() as conn:
            self._sync(conn)
            if self._holds(conn, new):
                raise StateError(f"the state already holds destination/{new}; remove it first "
                                 f"(`brazecfg state rm destination/{new}`) or pick another name")
            tables = [self.t.failures, self.t.events, self.t.intents]
            if self._compact:  # records name their destination by number: move the name
                self._codec.rename(old, new)
                self._flush(conn)
            else:
                tables.append(self.t.records)
            for t in tables:
                conn.execute(update(t).where(t.c.destination == old).values(destination=new))
            for prefix in DESTINATION_META:
                value = self._meta(conn, f"{prefix}{old}")
                self._put_meta(conn, f"{prefix}{old}", None)
                self._put_meta(conn, f"{prefix}{new}", value)

    def _holds(self, conn: Connection, destination: str) -> bool:
        r = self.t.records
        if conn.execute(select(r.c.destination).where(
                r.c.destination == self._dkey(conn, destination)).limit(1)).first() is not None:
            return True
        return any(conn.execute(select(t.c.destination).where(t.c.destination == destination)
                                .limit(1)).first() is not None
                   for t in (self.t.failures, self.t.events, self.t.intents))

    def has_events(self, destination: str, stream: str) -> bool:
        """Whether the state holds any row of this event stream."""
        if self._empty:
            return False
        e = self.t.events
        with self._read() as conn:
            return conn.execute(select(e.c.row_key).where(
                e.c.destination == destination, e.c.stream == stream).limit(1)).first() is not None

    def rename_stream(self, destination: str, old: str, new: str) -> None:
        """Event rows of stream ``old`` now belong to ``new``: none is sent again."""
        if old == new:
            return
        e = self.t.events
        with self._write() as conn:
            taken = conn.execute(select(e.c.row_key).where(
                e.c.destination == destination, e.c.stream == new).limit(1)).first()
            if taken is not None:
                raise StateError(f"destination/{destination} already has event rows for stream "
                                 f"{new!r}; pick another name")
            conn.execute(update(e).where(e.c.destination == destination, e.c.stream == old)
                         .values(stream=new))

    # -- the lease (lease.py drives it) -----------------------------------------------------
    def lock_info(self) -> LockInfo | None:
        if self._empty or self._version < 2:
            return None
        lt = self.t.lease
        with self._read() as conn:
            row = conn.execute(select(lt.c.lock_id, lt.c.owner, lt.c.fence, lt.c.acquired_ms,
                                      lt.c.expires_ms).where(lt.c.name == LEASE)).first()
        if row is None or row[0] is None:
            return None
        owner = json.loads(row[1] or "{}")
        return LockInfo(str(row[0]), str(owner.get("user", "?")), str(owner.get("host", "?")),
                        int(owner.get("pid", 0)), str(owner.get("command", "?")),
                        int(row[3] or 0), int(row[4] or 0), int(row[2] or 0))

    def try_acquire(self, owner: dict[str, Any], ttl: float) -> LockInfo | None:
        """Take the lease if it is free or expired: None when taken, else who holds it."""
        if self._conn is None or not self.writable:
            raise RuntimeError("ledger opened read-only")
        lt = self.t.lease
        lock_id = str(uuid.uuid4())
        with self._mutex:
            try:
                with self._conn.begin():
                    conn = self._conn
                    if conn.execute(select(lt.c.name).where(lt.c.name == LEASE)).first() is None:
                        conn.execute(insert(lt).values(name=LEASE, fence=0, expires_ms=0))
                with self._conn.begin():
                    conn = self._conn
                    now = now_ms()
                    conn.execute(update(lt).where(
                        lt.c.name == LEASE,
                        (lt.c.lock_id.is_(None)) | (lt.c.expires_ms < now)).values(
                        lock_id=lock_id, owner=json.dumps(owner, sort_keys=True),
                        fence=lt.c.fence + 1, acquired_ms=now,
                        expires_ms=now + int(ttl * 1000)))
                    row = conn.execute(select(lt.c.lock_id, lt.c.fence)
                                       .where(lt.c.name == LEASE)).first()
            except SQLAlchemyError as exc:
                if "conflict" in str(exc).lower() or "locked" in str(exc).lower():
                    return self.lock_info() or LockInfo("?", "?", "?", 0, "?", 0, 0, 0)
                raise self._error(exc, "could not be locked") from None
            if row is not None and row[0] == lock_id:
                self._lease = (lock_id, int(row[1]))
                self._generation = None  # read it at the first write
                return None
        held = self.lock_info()
        return held or LockInfo("?", "?", "?", 0, "?", now_ms(), now_ms(), 0)

    @property
    def lease_id(self) -> str | None:
        return self._lease[0] if self._lease else None

    def renew(self, ttl: float) -> bool:
        """Extend our lease (the heartbeat). False: it is no longer ours."""
        if self._lease is None:
            return False
        lock_id, fence = self._lease
        lt = self.t.lease
        with self._mutex:
            with self._c().begin():
                conn = self._c()
                now = now_ms()
                conn.execute(update(lt).where(lt.c.name == LEASE, lt.c.lock_id == lock_id,
                                              lt.c.fence == fence, lt.c.expires_ms >= now)
                             .values(expires_ms=now + int(ttl * 1000)))
                row = conn.execute(select(lt.c.lock_id, lt.c.expires_ms)
                                   .where(lt.c.name == LEASE)).first()
            ok = row is not None and row[0] == lock_id and int(row[1] or 0) >= now
            if not ok:
                self._lease = None
            return ok

    def release(self) -> None:
        if self._lease is None or self._conn is None:
            return
        lock_id = self._lease[0]
        self._lease = None
        lt = self.t.lease
        with self._mutex, self._conn.begin():
            self._conn.execute(update(lt).where(lt.c.name == LEASE, lt.c.lock_id == lock_id)
                               .values(lock_id=None, owner=None, expires_ms=0))

    def force_unlock(self, lock_id: str) -> LockInfo:
        """Free the lease held under ``lock_id`` now (its holder can no longer write)."""
        held = self.lock_info()
        if held is None or held.lock_id != lock_id:
            now = f"it is held under lock id {held.lock_id}" if held else "it is not locked"
            raise StateError(f"the state ({self.backend.where}) has no lock {lock_id}; {now}")
        lt = self.t.lease
        with self._mutex, self._c().begin():
            self._c().execute(update(lt).where(lt.c.name == LEASE, lt.c.lock_id == lock_id)
                              .values(lock_id=None, owner=None, expires_ms=0,
                                      fence=lt.c.fence + 1))
        return held

    # -- export / import (state pull, push, migrate) ----------------------------------------
    def export_rows(self) -> Iterator[dict[str, Any]]:
        """Every row of the state as plain dicts, table by table (the lease excluded)."""
        if self._empty:
            return
        for name, table, key in (("meta", self.t.meta, "key"),
                                 ("record", self.t.records, "external_id"),
                                 ("failure", self.t.failures, "external_id"),
                                 ("event", self.t.events, "row_key"),
                                 ("intent", self.t.intents, "external_id")):
            if name == "intent" and self._version < 2:
                continue
            cols = [c.name for c in table.columns]
            if name == "record" and self._compact:
                cols = [c for c in cols if c != "groups"]  # inside the packed fields
            if name == "event" and self._version < 3:  # not migrated (a read-only open)
                cols = [c for c in cols if c not in ("user", "name", "weight", "time")]
            dests: list[str | None] = (
                [*self.destinations()] if name == "record" else
                self._scalars(table.c.destination if "destination" in table.c else None))
            for d in dests:
                where = [table.c.destination == d] if d is not None else []
                if name == "record":
                    where = [table.c.destination == self._dkey_read(str(d))]
                if name == "event":
                    for s in self.streams(d or ""):
                        for row in self._pages(table, key, [key, *[c for c in cols if c != key]],
                                               [*where, table.c.stream == s], 5000):
                            yield {"t": name, **dict(zip([key, *[c for c in cols if c != key]],
                                                         row, strict=True))}
                    continue
                if name == "record" and self._version < 4:
                    cols = [c for c in cols if c != "row_hash"]
                for row in self._pages(table, key, [key, *[c for c in cols if c != key]],
                                       where, 5000):
                    out = {"t": name, **dict(zip([key, *[c for c in cols if c != key]], row,
                                                 strict=True))}
                    if name == "meta" and layout_key(str(out["key"])):
                        continue  # how this file numbers things, not the state
                    if name == "record":  # portable: names, JSON, a hex row hash
                        out["destination"] = d
                        if not isinstance(out["fields"], str):
                            f, g = self._decode(out["fields"], str(d))
                            out["fields"] = json.dumps(f, sort_keys=True, separators=(",", ":"))
                            out["groups"] = json.dumps(sorted(g or ()), separators=(",", ":"))
                        h = out.get("row_hash")
                        out["row_hash"] = None if h is None else bytes(h).hex()
                    yield out

    def _scalars(self, col: ColumnElement[Any] | None) -> list[str | None]:
        if col is None:
            return [None]
        with self._read() as conn:
            return [*sorted(str(r[0]) for r in conn.execute(select(col).distinct()))]

    def counts(self) -> dict[str, int]:
        """Rows per table (meta excluded): what a copy must match."""
        if self._empty:
            return {"record": 0, "failure": 0, "event": 0, "intent": 0}
        out = {"record": self._count(self.t.records), "failure": self._count(self.t.failures),
               "event": self._count(self.t.events)}
        out["intent"] = self._count(self.t.intents) if self._version >= 2 else 0
        return out

    def replace_all(self, rows: Iterable[dict[str, Any]], *, generation: int | None = None
                    ) -> None:
        """Make the state hold exactly ``rows`` (an export), in one transaction; then its
        generation is ``generation`` when given."""
        tables = {"meta": self.t.meta, "record": self.t.records, "failure": self.t.failures,
                  "event": self.t.events, "intent": self.t.intents}
        with self._write(bump=False) as conn:
            for t in tables.values():
                conn.execute(delete(t))
            self._codec.load({})  # numbered anew as the records land
            batch: dict[str, list[dict[str, Any]]] = {k: [] for k in tables}
            for row in rows:
                kind = row.get("t")
                if kind not in tables:
                    raise StateError(f"unknown row type {kind!r} in the state export")
                if kind == "record":
                    batch[kind].append(self._imported(conn, row))
                    if len(batch[kind]) >= 1000:
                        conn.execute(insert(tables[kind]), batch[kind])
                        batch[kind] = []
                    continue
                values = {c.name: row.get(c.name) for c in tables[kind].columns}
                if kind == "meta" and layout_key(str(values["key"])):
                    continue  # this file numbers things its own way
                if kind == "meta" and values["key"] == "version":
                    values["value"] = str(self._version)  # the rows are migrated as they land
                batch[kind].append(values)
                if len(batch[kind]) >= 1000:
                    conn.execute(insert(tables[kind]), batch[kind])
                    batch[kind] = []
            for kind, values_list in batch.items():
                if values_list:
                    conn.execute(insert(tables[kind]), values_list)
            self._flush(conn)
            self._put_meta(conn, "version", str(self._version))
            if generation is not None:
                self._put_meta(conn, "generation", str(generation))

    def _imported(self, conn: Connection, row: dict[str, Any]) -> dict[str, Any]:
        """An exported record as this state's row (exports spell records portably)."""
        try:
            dest, key = str(row["destination"]), str(row["external_id"])
            fields, groups = row["fields"], row["groups"]
            rec = LedgerRecord(key, dict(json.loads(fields) if isinstance(fields, str)
                                         else fields),
                               frozenset(json.loads(groups) if isinstance(groups, str)
                                         else groups),
                               None if row.get("row_hash") is None
                               else bytes.fromhex(str(row["row_hash"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"a record in the state export is damaged ({exc!r}): "
                             f"{str(row.get('external_id'))[:40]!r}") from None
        out = self._rows_of(conn, dest, [rec], str(row.get("confirmed_at") or _now()))[0]
        if self._version < 4:
            out.pop("row_hash", None)
        return out

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None:
                try:
                    self._conn.close()
                except SQLAlchemyError:
                    pass
                self._conn = None
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None
                if self.backend.dialect == "duckdb" and self.writable and self.backend.path:
                    # the file is closed: a later read-only plan in this process (the
                    # warehouse and the state both read-only) must not open it for writing
                    from brazecfg.warehouse.connect import DUCKDB_READ_WRITE

                    DUCKDB_READ_WRITE.discard(str(self.backend.path))
            for release in self._spill_releases:
                release()
            self._spill_releases.clear()
            if self._copy is not None:
                self._copy.cleanup()
                self._copy = None
            if self._snapshots is not None:
                self._snapshots.cleanup()
                self._snapshots = None

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
