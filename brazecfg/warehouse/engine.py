"""SqlWarehouse: the Warehouse protocol over a SQLAlchemy engine, for every supported dialect.

Rows are streamed: the query runs with ``stream_results``/``yield_per`` (a server-side cursor
on PostgreSQL, fetchmany elsewhere), so memory holds one batch whatever the model's size.
"""

from __future__ import annotations

import functools
import hashlib
import marshal
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import false, literal, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import QueuePool

from brazecfg import redact
from brazecfg.errors import WarehouseError
from brazecfg.model.resources import App, Project, Source
from brazecfg.state.base import StateTable
from brazecfg.threads import read_ahead
from brazecfg.warehouse.base import EventRow, ModelRow
from brazecfg.warehouse.compile import (
    HASH_COUNTS,
    HASH_NONE,
    HASH_VALUES,
    KEY_SLOT,
    MAX_FUNCTION_ARGS,
    SQLITE_MAX_FUNCTION_ARGS,
    SQLITE_ROW_HASH,
    STATE_ALIAS,
    KeyRange,
    ModelQuery,
    build_changed_keys_query,
    build_events_query,
    build_hash_changes_query,
    build_hashes_query,
    build_key_sample,
    build_max_updated_query,
    build_model_query,
    build_stamp_surveys,
    counted_sources,
    hashes_supported,
)
from brazecfg.warehouse.dates import ISO_DATETIME
from brazecfg.warehouse.sources import source_from

T = TypeVar("T")


def scrub(message: str, secrets: tuple[str, ...] = ()) -> str:
    """``message`` without the given secrets, every value a template read from the
    environment (brazecfg.redact) and passwords in URLs."""
    return redact.scrub(message, secrets)


def driver_message(exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """The warehouse's own message (not SQLAlchemy's wrapper with SQL and parameters),
    scrubbed: a driver quotes queries, identifiers and values, any of which may come from
    an env() template."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    text = text.split("\n(Background on this error")[0]
    return scrub(" ".join(text.split()), secrets).rstrip(" .")


# SQLite's page cache per database of a warehouse connection, in KiB (its default: 2,000).
# The model is read once, front to back, and the state's records by key: the operating
# system's file cache serves the pages again, so a larger cache saves no time (measured at
# 1M users: the first plan and an incremental plan took the same time with 256 KiB and with
# the default) and costs memory. Its sorts (ORDER BY, GROUP BY) get as much before they
# spill to a temporary file. Set on every connection (connect._sqlite_session) and on the
# state file attached to one (_stream), which otherwise gets SQLite's default.
SQLITE_CACHE_KIB = 256
# SQLite's soft heap limit, one for the whole process (every SQLite connection shares it:
# the warehouse's and the local state's; set by each, ``limit_sqlite_heap``): past it SQLite
# reuses its caches' pages and its sorts spill sooner instead of allocating more. Advisory:
# no allocation ever fails for it. At 1M users, interleaved: the first apply 100.8 to 94.4 MB
# (71.0 s both), the incremental plan 95.7 to 90.7 MB (4.8 s both), the first plan 90.4 to
# 84.6 MB and 37.2 to 38.8 s (the sorts; 8 MB: 87.2 MB, 38.1 s).
SQLITE_SOFT_HEAP_BYTES = 4_000_000
# SQLite, an incremental read: how many changed keys each of its queries reads
# (``_changed_rows``). One query over every changed key holds, for each source whose key
# column SQLite seeks with an OR of IN lists, a RowSet of the rowids it met, which the soft
# heap limit does not bound: 17 MB at 10M users, 110,000 records read again. A batch bounds
# it; a small one also keeps the statement small (its VALUES). Peak RSS of an incremental
# bench plan at 10M / 1M / 100k users (bench/README.md, 2026-12-04 evening): 112.3 / 90.5 /
# 78.9 MB in one query, 96.9 / 91.3 / 86.0 MB with batches of 1,000, 90.7 / 83.6 / 78.0 MB
# with 250, 90.1 / 82.8 / 77.6 MB with 100, all in the same time. Fewer when SQLite takes
# fewer parameters (999 before 3.32).
SQLITE_CHANGED_BATCH = 250
# SQLite, a full read of a model (a first plan, --full-refresh): SQLite computes a
# statement's whole sorted result (aggregates, windows, the ORDER BY) before its first row,
# 14 to 16 s of a 1M first plan with nothing else running and the second core idle. So
# the read is split into ranges of key text, each its own statement on its own connection,
# the next one computed on a second thread while this one's rows are used (``read_ahead``).
# Each range reads every source again (a scan, one per range), so only models whose sources
# are all tables are split, into one range per SQLITE_SPLIT_ROWS rows of the primary
# source (estimated from a sample of one row in SQLITE_SPLIT_SAMPLE), at most
# SQLITE_SPLIT_MAX, the first half the size of the others (``_key_bounds``). The bench
# model at 1M, the SQL alone (bench/README.md, "Results of 2026-12-07, late"): one statement
# 13.9 s to its first row and 15.8 s to its last; four ranges 4.4 to 4.9 s each to their
# first row, 20.4 s in all; `brazecfg plan` 56 to 59 s before, 48 to 51 s after.
SQLITE_SPLIT_ROWS = 250_000
SQLITE_SPLIT_MAX = 8
SQLITE_SPLIT_SAMPLE = 500


def limit_sqlite_heap(dbapi_connection: Any) -> None:
    """Put SQLite's process-wide soft heap limit at SQLITE_SOFT_HEAP_BYTES (idempotent)."""
    dbapi_connection.execute(f"PRAGMA soft_heap_limit = {SQLITE_SOFT_HEAP_BYTES}")


class SqlWarehouse:
    """A warehouse reached through SQLAlchemy. ``connect()`` builds it; ``close()`` frees it."""

    def __init__(self, app: App, project: Project, engine: Engine,
                 secrets: tuple[str, ...] = (), *,
                 on_close: Callable[[], None] | None = None) -> None:
        self.app_name = app.name
        self.project = project
        self.engine = engine
        self._secrets = secrets
        self._on_close = on_close
        # SQLite: per model, its updated_at columns read in one pass (_survey_stamps): the
        # greatest stamp and the columns whose incremental filter may add a range. Read once
        # per plan (a warehouse is connected per plan), before the model is read.
        self._surveys: dict[str, tuple[Any, frozenset[str]]] = {}
        # SQLite: per model, what its key column is (_key_column), read once per plan
        self._key_columns: dict[str, str] = {}

    def query(self, model: str, *, now: datetime, changed_since: datetime | None = None,
              only_keys: list[str] | None = None, hash_kind: str = HASH_VALUES,
              key_slots: int = 0, key_range: KeyRange | None = None) -> ModelQuery:
        stamps = self._numeric_stamps(model) if changed_since is not None else frozenset()
        text = self._text_stamps(model) if changed_since is not None else frozenset()
        return build_model_query(self.project, model, now=now, dialect=self.engine.dialect,
                                 changed_since=changed_since, numeric_stamps=stamps,
                                 only_keys=only_keys, text_stamps=text,
                                 text_key=self._text_key(model),
                                 unique_key=self._unique_key(model), hash_kind=hash_kind,
                                 key_slots=key_slots, key_range=key_range)

    def _text_stamps(self, model: str) -> frozenset[str]:
        """SQLite: the ``updated_at`` columns (as "source.column") of table sources with no
        NULL, every value of which starts with a date (YYYY-MM-DD) and is a time SQLite reads,
        and whose smallest and greatest value and first rows are ISO 8601 text. Their
        incremental filter adds a range on the raw column that an index on it seeks
        (compile.changed_keys): text that starts with a date sorts by that date, so the range
        from the day before the watermark holds every row the exact test keeps. A stamp of
        another form (an epoch number, text no warehouse reads as a time, or text that only
        looks like one: month 13, an offset past 14 hours) turns the range off for that column:
        such a row is read on every incremental run, never skipped."""
        if self.engine.dialect.name != "sqlite":
            return frozenset()
        try:
            return self._survey_stamps(model)[1]
        except DBAPIError:
            return frozenset()  # the read itself will name the source that cannot be read

    def _survey_stamps(self, model: str) -> tuple[Any, frozenset[str]]:
        """SQLite: (the greatest stamp as the filter reads it, ``_text_stamps``), from one
        aggregate per source (compile.build_stamp_surveys) and its first 200 rows."""
        if model in self._surveys:
            return self._surveys[model]
        greatest: Any = None
        found: set[str] = set()
        root = self.project.settings.root
        with self.engine.connect() as conn:
            for survey in build_stamp_surveys(self.project, model, dialect=self.engine.dialect,
                                              numeric_stamps=self._numeric_stamps(model)):
                src = survey.source
                assert src.updated_at is not None
                row = conn.execute(survey.select).one()
                dated = (not row.nulls and not row.undated and not isinstance(row.dated, bytes))
                if dated and src.table:
                    frm = source_from(src, [src.updated_at], "t", self.engine.dialect, root)
                    first = conn.execute(select(frm.c[src.updated_at]).limit(200)).scalars()
                    if all(isinstance(v, str) and ISO_DATETIME.match(v)
                           for v in (row.low, row.high, *first)):
                        found.add(f"{src.name}.{src.updated_at}")
                # readable text that starts with a date: what the filter reads is datetime()
                top = row.dated if dated else conn.execute(survey.greatest).scalar()
                if top is not None and (greatest is None or top > greatest):
                    greatest = top
        self._surveys[model] = (greatest, frozenset(found))
        return self._surveys[model]

    def _text_key(self, model: str) -> bool:
        """SQLite: whether the primary source is a table whose one primary key column is
        declared with text affinity (SQLite then stores every non-NULL value as text) and
        NOT NULL: its raw text is then its key text, no two rows share it, and the model can
        be ordered by the column itself, in the order of the primary key's index."""
        return self._key_column(model) == "text"

    def _unique_key(self, model: str) -> bool:
        """SQLite: whether no two rows of the primary source can share a key: a ``text_key``,
        or an ``INTEGER PRIMARY KEY`` (the rowid: whole numbers, unique, never NULL)."""
        return self._key_column(model) in ("text", "rowid")

    def _numeric_keys(self, model: str) -> frozenset[str]:
        """SQLite, a model keyed by an INTEGER PRIMARY KEY: the sources whose rows per record
        its counts hash counts (compile.counted_sources) that are tables whose key column
        holds numbers only. SQLite orders every number before every text and BLOB, so the
        greatest value says (one seek of an index on the column, else one pass)."""
        if self._key_column(model) != "rowid":
            return frozenset()
        sources = [self.project.sources[n] for n in counted_sources(self.project, model)]
        return frozenset(s.name for s in sources
                         if self._greatest_key_type(s) in ("integer", "real", "null"))

    def _indexed_keys(self, model: str, numeric: frozenset[str] | None = None
                      ) -> frozenset[str]:
        """SQLite: of ``_numeric_keys`` (``numeric``, when the caller has them: finding them
        can be a pass over each source), the sources whose key column is the first column of
        an index (not partial, in BINARY order): each record's rows are one seek of it."""
        numeric = self._numeric_keys(model) if numeric is None else numeric
        return frozenset(n for n in numeric if self._key_indexed(self.project.sources[n]))

    def _key_indexed(self, src: Source) -> bool:
        table = _plain_table(src)
        if table is None:
            return False
        try:
            with self.engine.connect() as conn:
                for name, partial in conn.exec_driver_sql(
                        'SELECT name, "partial" FROM pragma_index_list(?)',
                        (table,)).all():
                    first = conn.exec_driver_sql(
                        "SELECT name, coll FROM pragma_index_xinfo(?) WHERE seqno = 0",
                        (name,)).first()
                    if (not partial and first is not None and first[0] == src.key
                            and str(first[1]).upper() == "BINARY"):
                        return True
        except DBAPIError:
            return False
        return False

    def _greatest_key_type(self, src: Source) -> str | None:
        """SQLite: ``typeof(max(key))`` of a table source (None: not a plain table, or not
        readable). SQLite orders NULL < numbers < text < BLOBs, so this says the kinds of
        value the column holds at most: one seek of an index on it, else one pass."""
        name = _plain_table(src)
        if name is None:
            return None
        table, key = name.replace('"', '""'), src.key.replace('"', '""')
        try:
            with self.engine.connect() as conn:
                return conn.exec_driver_sql(
                    f'SELECT typeof(max("{key}")) FROM "{table}"').scalar()
        except DBAPIError:
            return None

    def _key_column(self, model: str) -> str:
        """SQLite: "text" (see ``_text_key``), "rowid" (an INTEGER PRIMARY KEY) or ""."""
        if model not in self._key_columns:
            self._key_columns[model] = self._read_key_column(model)
        return self._key_columns[model]

    def _read_key_column(self, model: str) -> str:
        if self.engine.dialect.name != "sqlite":
            return ""
        src = self.project.primary_source(model)
        table = _plain_table(src)
        if table is None:
            return ""
        try:
            with self.engine.connect() as conn:
                rows = conn.exec_driver_sql(
                    "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?)",
                    (table,)).all()
        except DBAPIError:
            return ""
        if [r[0] for r in rows if r[3]] != [src.key]:
            return ""  # not the table's one primary key column (unique, indexed)
        declared, notnull = next((str(r[1] or "").upper(), bool(r[2]))
                                 for r in rows if r[0] == src.key)
        if declared.strip() == "INTEGER":
            return "rowid"
        text = "INT" not in declared and any(t in declared for t in ("CHAR", "CLOB", "TEXT"))
        if not (text and notnull):
            return ""
        # Text affinity stores numbers as text, but a BLOB as a BLOB, and SQLite orders every
        # BLOB after every text whatever its bytes: the index's order is then not the key
        # texts'. BLOBs sort last, so the greatest key (one seek of the index) says.
        return "text" if self._greatest_key_type(src) in ("text", "null") else ""

    def _sources(self, model: str) -> list[Source]:
        primary = self.project.primary_source(model)
        names = dict.fromkeys([primary.name,
                               *(p.source for p in self.project.model_properties(model))])
        return [self.project.sources[n] for n in names]

    def _numeric_stamps(self, model: str) -> frozenset[str]:
        """The ``updated_at`` columns (as "source.column") of a numeric type, which hold Unix
        epoch times. Only PostgreSQL and DuckDB are asked (one ``WHERE false`` query per
        source): their columns have one type, and a cast of a number to a timestamp does not
        compile there. SQLite tests each value in SQL instead."""
        name = self.engine.dialect.name
        if name not in ("postgresql", "duckdb"):
            return frozenset()
        primary = self.project.primary_source(model)
        names = dict.fromkeys([primary.name,
                               *(p.source for p in self.project.model_properties(model))])
        found: set[str] = set()
        root = self.project.settings.root
        try:
            with self.engine.connect() as conn:
                for source_name in names:
                    src = self.project.sources[source_name]
                    if not src.updated_at:
                        continue
                    frm = source_from(src, [src.updated_at], "t", self.engine.dialect, root)
                    stmt = select(frm.c[src.updated_at]).select_from(frm).where(false())
                    result = conn.execute(stmt)
                    type_code = result.cursor.description[0][1] if result.cursor else None
                    result.close()
                    if _is_numeric(name, type_code):
                        found.add(f"{src.name}.{src.updated_at}")
        except DBAPIError:
            return frozenset()  # the read itself will name the source that cannot be read
        return frozenset(found)

    def stream_model(self, model: str, *, now: datetime, batch_size: int = 5000,
                     changed_since: datetime | None = None,
                     only_keys: list[str] | None = None,
                     hash_kind: str = HASH_VALUES) -> Iterator[ModelRow]:
        """Every record of ``model`` ordered by key text (byte order), ``batch_size`` at a time.

        ``now`` anchors relative dates. ``changed_since`` (incremental reads): when every source
        the model reads declares ``updated_at``, only records with a row in some source whose
        ``updated_at >= changed_since`` are returned (their aggregates still cover all their
        rows); if any source lacks ``updated_at`` it is ignored and every record is returned.
        An incremental read says nothing about records it does not return: a caller must not
        take them as deleted. ``only_keys``: just the records with these keys (key text).
        ``hash_kind``: what each row's record hash covers (compile.HASH_VALUES, HASH_COUNTS;
        HASH_NONE: none).

        The query is built here (configuration errors raise at once) and runs on the first
        ``next()``.
        """
        if changed_since is not None and only_keys is None \
                and self.engine.dialect.name == "sqlite":
            keys = build_changed_keys_query(
                self.project, model, now=now, changed_since=changed_since,
                dialect=self.engine.dialect, numeric_stamps=self._numeric_stamps(model),
                text_stamps=self._text_stamps(model))
            if keys is not None:
                return self._changed_rows(model, keys, batch_size, lambda slots: self.query(
                    model, now=now, hash_kind=hash_kind, key_slots=slots))
        query = self.query(model, now=now, changed_since=changed_since, only_keys=only_keys,
                           hash_kind=hash_kind)
        if changed_since is None and only_keys is None and self._may_split():
            # SQLite's record hash is a Python function, which the statement computing ahead
            # would call for every row while the reader holds Python's lock: each range
            # has it computed from the row as it is read instead (the same bytes).
            part_hash = HASH_NONE if hash_kind == HASH_VALUES else hash_kind
            return self._split_rows(model, query, batch_size, lambda key_range: self.query(
                model, now=now, hash_kind=part_hash, key_range=key_range),
                row_hash=hash_kind == HASH_VALUES and query.hashed)
        return self._rows(model, query, batch_size)

    def _may_split(self) -> bool:
        """A ``type: sqlite`` app: a file on a pool of connections any thread may use
        (SQLAlchemy's for a file; an in-memory database would be another one per thread)."""
        return (self.engine.dialect.name == "sqlite"
                and self.project.apps[self.app_name].type == "sqlite"
                and isinstance(self.engine.pool, QueuePool))

    def _splits(self, model: str) -> bool:
        """SQLite: whether a full read of the model may be split (SQLITE_SPLIT_ROWS): every
        source it reads is a table of the main database."""
        names = [_plain_table(src) for src in self._sources(model)]
        if None in names:
            return False
        try:
            with self.engine.connect() as conn:
                return all(conn.exec_driver_sql(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ? "
                    "COLLATE NOCASE", (name,)).first() is not None for name in names)
        except DBAPIError:
            return False  # the read itself will say what is wrong

    def _key_bounds(self, model: str) -> list[str]:
        """Where a full read's ranges of key text split (none: one statement), from a sample
        of the primary source's keys. Any bounds give the same rows in the same order; a
        sample only balances the ranges."""
        stmt = build_key_sample(self.project, model, dialect=self.engine.dialect,
                                one_in=SQLITE_SPLIT_SAMPLE)
        try:
            with self.engine.connect() as conn:
                sample = [str(k) for (k,) in conn.execute(stmt)]
        except DBAPIError:
            return []  # the read itself will say what is wrong
        ranges = min(SQLITE_SPLIT_MAX, len(sample) * SQLITE_SPLIT_SAMPLE // SQLITE_SPLIT_ROWS)
        if ranges < 2:
            return []
        # The first range half the size of the others: nothing overlaps its statement, and
        # the next one is computed while its rows are used, which takes longer.
        parts = 2 * ranges - 1
        return sorted(set(sample[len(sample) * (2 * i - 1) // parts]
                          for i in range(1, ranges)))

    def _split_rows(self, model: str, whole: ModelQuery, batch_size: int,
                    query: Callable[[KeyRange], ModelQuery], *, row_hash: bool
                    ) -> Iterator[ModelRow]:
        """The rows of ``whole``, read as ranges of key text (SQLITE_SPLIT_ROWS) when the
        primary source is large enough, in the same order. ``row_hash``: the ranges' query
        has no record hash, each row's is computed as it is read."""
        bounds = self._key_bounds(model) if self._splits(model) else []
        if not bounds:
            yield from self._rows(model, whole, batch_size)
            return
        edges: list[str | None] = [None, *bounds, None]
        parts = [query((lo, hi)) for lo, hi in zip(edges, edges[1:], strict=False)]
        yield from read_ahead([functools.partial(self._rows, model, part, batch_size,
                                                 row_hash=row_hash) for part in parts],
                              name=f"model/{model}")

    def _changed_rows(self, model: str, keys: ModelQuery, batch_size: int,
                      slotted: Callable[[int], ModelQuery]) -> Iterator[ModelRow]:
        """SQLite, an incremental read: the changed keys (``keys``, in byte order), then the
        records of SQLITE_CHANGED_BATCH of them at a time (``slotted(n)``: the query for n
        keys bound as compile.KEY_SLOT parameters), all in one read transaction: the same
        rows in the same order as one query over every changed key, with the memory of one
        batch. The queries are built here (configuration errors raise at once)."""
        what = f"model/{model}"
        query = slotted(SQLITE_CHANGED_BATCH)
        record = self._record(model, query)

        def run(conn: Connection) -> Iterator[ModelRow]:
            nonlocal query
            # every parameter the statement binds, a list of a rule's values expanded
            params = len(query.select.compile(
                dialect=self.engine.dialect,
                compile_kwargs={"render_postcompile": True}).positiontup or ())
            slots, room = SQLITE_CHANGED_BATCH, _sqlite_parameters(conn)
            if params > room:  # the other parameters, and as many keys as fit
                slots = max(1, room - (params - slots))
                query = slotted(slots)
            try:
                conn.exec_driver_sql("BEGIN")  # one snapshot for the keys and every batch
            except DBAPIError as exc:
                raise self._error(f"cannot start reading {what}", exc) from None
            batch: list[str | None] = []
            last = None
            for key in self._results(conn, what, keys, lambda row: row[0]):
                if key == last:
                    continue  # a duplicate key of one source
                batch.append(last := key)
                if len(batch) == slots:
                    yield from self._results(conn, what, query, record, _slots(batch))
                    batch = []
            if batch:
                batch.extend([None] * (slots - len(batch)))
                yield from self._results(conn, what, query, record, _slots(batch))

        return self._read(what, run, batch_size=batch_size)

    def stream_events(self, model: str, source: str, *, key: str, user: str,
                      columns: list[str], since: datetime | None = None,
                      time_column: str | None = None, batch_size: int = 5000,
                      ) -> Iterator[EventRow]:
        """Rows of event ``source`` ordered by ``key`` text (byte order), with ``columns``,
        only for users that are records of ``model``, and only rows whose ``time_column`` is
        >= ``since`` when given (compared as UTC datetimes, like filters)."""
        stmt = build_events_query(self.project, model, source, key=key, user=user,
                                  columns=columns, since=since, time_column=time_column,
                                  dialect=self.engine.dialect)
        n = len(columns)
        primary = self.project.primary_source(model)
        needs = {source: {c: [f"source/{source}"] for c in [key, user, *columns]}}
        needs.setdefault(primary.name, {}).setdefault(primary.key, [primary.ref])
        query = ModelQuery(stmt, (), (), needs)

        def event(row: Any) -> EventRow:
            return EventRow(key="" if row[0] is None else str(row[0]),
                            user="" if row[1] is None else str(row[1]),
                            values=dict(zip(columns, row[2:n + 2], strict=True)))

        return self._stream(f"source/{source}", query, batch_size, event)

    def hashes_supported(self) -> bool:
        return hashes_supported(self.engine.dialect)

    def stream_hashes(self, model: str, *, now: datetime, batch_size: int = 20000,
                      kind: str = HASH_VALUES
                      ) -> Iterator[tuple[str, bytes | None, frozenset[str] | None]]:
        """Every record key of ``model`` with its record hash of ``kind`` and its groups
        (None with HASH_COUNTS, which computes none), in key byte order; keys of duplicate
        primary-key rows come once per row."""
        query = build_hashes_query(self.project, model, now=now, dialect=self.engine.dialect,
                                   text_key=self._text_key(model), kind=kind)
        names = query.groups
        counts = kind == HASH_COUNTS
        # a row's group flags -> its frozenset of names, built once per combination (few)
        memberships: dict[tuple[Any, ...], frozenset[str]] = {}

        def pair(row: Any) -> tuple[str, bytes | None, frozenset[str] | None]:
            if row[1] is not None:
                raise self._bad_key(model, row[1])
            key = row[0]
            if type(key) is not str:
                key = str(key)
            if counts:
                return key, _hash_bytes(row[2]), None
            flags = tuple(row[3:])
            member = memberships.get(flags)
            if member is None:
                member = memberships[flags] = frozenset(
                    n for n, flag in zip(names, flags, strict=True) if flag)
            return key, _hash_bytes(row[2]), member

        return self._stream(f"model/{model}", query, batch_size, pair)

    def joins_state(self, state: StateTable | None, kind: str = HASH_COUNTS) -> bool:
        """Whether this warehouse compares record hashes of ``kind`` with ``state`` in its
        own SQL (``stream_hash_changes``): a SQLite warehouse attaches a SQLite state file
        (the local state, or its own file), for related-row counts only; PostgreSQL and
        DuckDB read a state kept in their own database (state backend warehouse on this
        app). SQLite's value hashes stay merged in brazecfg: the join was measured slower
        there (1M users, nothing changed: 39.3 s against 30.1 s; bench/README.md), as its
        file is read in this process anyway and most of the time is SQLite computing every
        record's values and hash, which both ways do."""
        if state is None:
            return False
        name = self.engine.dialect.name
        if name == "sqlite":
            return (kind == HASH_COUNTS and state.attach is not None
                    and sqlite3.sqlite_version_info >= (3, 39))
        return name in ("postgresql", "duckdb") and state.dialect == name and (
            state.app == self.app_name)

    def stream_hash_changes(self, model: str, *, now: datetime, state: StateTable,
                            batch_size: int = 20000, kind: str = HASH_COUNTS
                            ) -> Iterator[tuple[str | None, bytes | None, str | None, Any,
                                                bytes | None]]:
        """The diff of record hashes of ``kind`` run in the warehouse
        (compile.build_hash_changes_query): only the keys whose hash differs from the
        state's, in key byte order, each as (key, hash) on the warehouse's side (None, None
        when it has no such key) and (key, groups column, row hash) on the state's (None,
        None, None when it has none). Needs ``joins_state(state)``."""
        numeric = self._numeric_keys(model)
        stmt = build_hash_changes_query(
            self.project, model, now=now, dialect=self.engine.dialect, state=state,
            text_key=self._text_key(model), unique_key=self._unique_key(model), kind=kind,
            numeric_keys=numeric, indexed_keys=self._indexed_keys(model, numeric))
        query = ModelQuery(stmt, (), (), {}, True, kind)

        def row(r: Any) -> tuple[str | None, bytes | None, str | None, Any, bytes | None]:
            if r[0] is None and r[1] is not None:
                raise self._bad_key(model, r[1])
            return (None if r[0] is None else str(r[0]), _hash_bytes(r[2]),
                    None if r[3] is None else str(r[3]), r[4],
                    None if r[5] is None else bytes(r[5]))

        return self._stream(f"model/{model} with the state", query, batch_size, row,
                            attach=state.attach if self.engine.dialect.name == "sqlite"
                            else None)

    def max_updated_at(self, model: str) -> datetime | None:
        """The warehouse's own greatest ``updated_at`` over the sources of ``model`` that
        declare one, as an aware UTC datetime (None: no such source, or no stamp at all).

        Read it *before* ``stream_model``: every row the stream can miss then has a stamp
        above it, so a watermark set from it (rather than from this machine's clock) cannot
        skip a row for clock skew or a warehouse in another time zone. Stamps are read like
        the incremental filter reads them (UTC; SQLite epoch numbers understood), to the
        second on SQLite."""
        stmt = build_max_updated_query(self.project, model, dialect=self.engine.dialect,
                                       numeric_stamps=self._numeric_stamps(model))
        if stmt is None:
            return None
        try:
            with self.engine.connect() as conn:
                try:
                    if self.engine.dialect.name == "sqlite":  # with the checks, in one pass
                        value = self._survey_stamps(model)[0]
                    else:
                        value = conn.execute(stmt).scalar()
                except DBAPIError as exc:
                    # Name the source or column it could not read, at its file and line,
                    # as a read of the model would.
                    query = self.query(model, now=datetime.now(timezone.utc))
                    raise self._diagnose(conn, f"model/{model}", query, exc) from None
        except SQLAlchemyError as exc:
            raise self._error(f"cannot read the greatest updated_at of model/{model}",
                              exc) from None
        return as_utc(value)

    def _bad_key(self, model: str, text: Any) -> WarehouseError:
        primary = self.project.primary_source(model)
        return WarehouseError(
            f"app/{self.app_name}: key column {primary.key!r} of {primary.ref} holds {text}, "
            f"which is not a whole number: a key of model/{model} becomes a Braze external_id "
            "and must be text or a whole number. Fix the row, or turn the column into text or "
            "an integer in the warehouse (a query source with CAST)")

    def _rows(self, model: str, query: ModelQuery, batch_size: int, *,
              row_hash: bool = False) -> Iterator[ModelRow]:
        return self._stream(f"model/{model}", query, batch_size,
                            self._record(model, query, row_hash=row_hash))

    def _record(self, model: str, query: ModelQuery, *, row_hash: bool = False
                ) -> Callable[[Any], ModelRow]:
        """A row of ``query`` -> its ModelRow (a refused key raises). ``row_hash``: the
        record hash SQLite's would be (its values, then its group flags: the row's columns
        between the key and ``kbad``), computed here from the row."""
        names = tuple(query.properties)
        groups = tuple(query.groups)
        n, g = len(names), len(groups)
        bad = n + 1 + g
        hashed = query.hashed
        # The group flags of a row, as a tuple, -> its frozenset of names: a model has few
        # distinct combinations, so each set is built once (and shared; it is frozen).
        memberships: dict[tuple[bool, ...], frozenset[str]] = {}

        def record(row: Any) -> ModelRow:
            if row[bad] is not None:
                raise self._bad_key(model, row[bad])
            key = row[0]
            flags = tuple(map(bool, row[n + 1:bad]))
            member = memberships.get(flags)
            if member is None:
                member = memberships[flags] = frozenset(
                    name for name, flag in zip(groups, flags, strict=True) if flag)
            return ModelRow("" if key is None else key if type(key) is str else str(key),
                            dict(zip(names, row[1:n + 1], strict=True)), member,
                            sqlite_record_hash(row[1:bad]) if row_hash
                            else _hash_bytes(row[bad + 1]) if hashed else None)

        return record

    def _stream(self, what: str, query: ModelQuery, batch_size: int,
                make: Callable[[Any], T], *, attach: Path | None = None) -> Iterator[T]:
        """``attach``: a SQLite file attached (read-only) as STATE_ALIAS while it runs."""
        def run(conn: Connection) -> Iterator[T]:
            if attach is not None:  # an attached file gets SQLite's default cache
                try:
                    conn.exec_driver_sql(
                        f"PRAGMA {STATE_ALIAS}.cache_size = -{SQLITE_CACHE_KIB}")
                except DBAPIError as exc:
                    raise self._diagnose(conn, what, query, exc) from None
            return self._results(conn, what, query, make)
        return self._read(what, run, batch_size=batch_size, attach=attach)

    def _read(self, what: str, run: Callable[[Connection], Iterator[T]], *,
              batch_size: int = 5000, attach: Path | None = None) -> Iterator[T]:
        """What ``run`` yields, on a connection of its own that streams ``batch_size`` rows
        at a time, rolled back (and ``attach`` detached) when done."""
        try:
            conn = self.engine.connect()
        except SQLAlchemyError as exc:
            raise self._error(f"cannot connect to read {what}", exc) from None
        with conn:
            if self.engine.dialect.name == "sqlite":
                _register_sqlite_hash(conn)
            if attach is not None:
                try:
                    conn.exec_driver_sql(f"ATTACH DATABASE ? AS {STATE_ALIAS}",
                                         (attach.resolve().as_uri() + "?mode=ro",))
                except DBAPIError as exc:
                    raise self._error(f"cannot read the state file {attach} with {what}",
                                      exc) from None
            conn = conn.execution_options(stream_results=True, yield_per=batch_size)
            try:
                yield from run(conn)
            finally:
                _rollback(conn)
                if attach is not None:
                    try:
                        conn.exec_driver_sql(f"DETACH DATABASE {STATE_ALIAS}")
                    except DBAPIError:  # never back to the pool with the state attached
                        conn.invalidate()

    def _results(self, conn: Connection, what: str, query: ModelQuery,
                 make: Callable[[Any], T], params: dict[str, Any] | None = None
                 ) -> Iterator[T]:
        """The rows of ``query`` on ``conn``, each through ``make``."""
        try:
            result = conn.execute(query.select, params)
        except DBAPIError as exc:
            raise self._diagnose(conn, what, query, exc) from None
        try:
            for row in result:
                yield make(row)
        except DBAPIError as exc:
            raise self._error(f"reading {what} failed", exc) from None
        finally:
            result.close()

    def _error(self, what: str, exc: BaseException) -> WarehouseError:
        message = driver_message(exc, self._secrets)
        if self.engine.dialect.name == "duckdb" and "Out of Memory" in message:
            # DuckDB's own advice names SET statements the user cannot type here
            message = message.split(" Possible solutions:")[0] + (
                f". Raise options.memory_limit of app/{self.app_name} (e.g. memory_limit: 1GB)")
        return WarehouseError(f"app/{self.app_name}: {what}: {message}")

    def _diagnose(self, conn: Connection, what: str, query: ModelQuery,
                  exc: DBAPIError) -> WarehouseError:
        """Find which source or column the failed query could not read, by probing each."""
        dialect = self.engine.dialect
        root = self.project.settings.root
        _rollback(conn)
        for source_name, columns in query.needs.items():
            source = self.project.sources[source_name]
            problem = _probe(conn, source_from(source, [], "t", dialect, root), None)
            if problem is not None:
                return WarehouseError(
                    f"{_at(source, 'query' if source.query else 'table')}"
                    f"app/{self.app_name}: {source.ref} cannot be read "
                    f"({source.query and 'query' or source.table}): "
                    f"{scrub(problem, self._secrets)}. Check the source's table or query.")
            for col, users in columns.items():
                frm = source_from(source, [col], "t", dialect, root)
                problem = _probe(conn, frm, col)
                if problem is not None:
                    who = ", ".join(dict.fromkeys(users))
                    return WarehouseError(
                        f"{self._where(users[0], col)}app/{self.app_name}: column {col!r} of {source.ref}, used by {who}, "
                        f"cannot be read: {scrub(problem, self._secrets)}. "
                        "Check the column name (and its case) in the warehouse.")
        return self._error(f"the query for {what} failed", exc)

    def _where(self, ref: str, col: str) -> str:
        """``file:line:col: `` of the key that names ``col`` in resource ``ref``: a missing
        column is a config error, and brazecfg knows which line asked for it."""
        kind, _, name = ref.partition("/")
        if kind == "property" and name in self.project.properties:
            prop = self.project.properties[name]
            key = ("sort" if col == prop.sort and col != prop.column else
                   "column" if prop.column == col else
                   "name" if col == prop.name and not prop.column else "filters")
            return _at(prop, key)
        if kind == "source" and name in self.project.sources:
            src = self.project.sources[name]
            key = next((k for k in ("key", "updated_at") if getattr(src, k, None) == col),
                       "key")
            return _at(src, key)
        return ""

    def close(self) -> None:
        self.engine.dispose()
        if self._on_close is not None:
            self._on_close()  # e.g. DuckDB's temporary directory
            self._on_close = None


# marshal's format version for the record hash: 2 is the last without references (3 and
# later write an object met twice in one call as a reference to the first, so the bytes
# would depend on which values are the same object, not only on the values).
_MARSHAL_VERSION = 2


def sqlite_row_hash(*values: Any) -> bytes:
    """SQLite's record hash (compile.row_hash): BLAKE2b, 8 bytes, of the values' ``marshal``
    encoding (format version 2), written in C: each value with its type and length (an
    integer whole, a float as its 8 IEEE-754 bytes, text as UTF-8, a BLOB as its bytes,
    NULL as None). Two different lists of values never share it, and the same values
    always give it. 1.2 us a row in SQLite, against 3.0 us for the same kind of typed text
    built in Python (bench/README.md). A Python whose marshal wrote other bytes would only
    make plans read those records in full again, never skip a change."""
    return _blake2b(_marshal(values, _MARSHAL_VERSION), digest_size=8).digest()


def _plain_table(src: Source) -> str | None:
    """SQLite: the name of a table source in the main database (its one quoting removed);
    None for a query, a table function or a schema-qualified name."""
    if not src.table or "(" in src.table or "." in src.table.strip('"'):
        return None
    return src.table.strip('"')


def sqlite_record_hash(values: Sequence[Any]) -> bytes:
    """The record hash SQLite computes over ``values`` (compile._sqlite_hash): one call of
    ``sqlite_row_hash``, or past SQLITE_MAX_FUNCTION_ARGS values the hash of the hashes of
    parts of MAX_FUNCTION_ARGS values."""
    if len(values) <= SQLITE_MAX_FUNCTION_ARGS:
        return sqlite_row_hash(*values)
    return sqlite_record_hash([sqlite_row_hash(*values[i:i + MAX_FUNCTION_ARGS])
                               for i in range(0, len(values), MAX_FUNCTION_ARGS)])


_blake2b = hashlib.blake2b
_marshal = marshal.dumps


def _register_sqlite_hash(conn: Connection) -> None:
    raw = conn.connection.driver_connection
    if raw is not None and not getattr(raw, "_brazecfg_row_hash", False):
        raw.create_function(SQLITE_ROW_HASH, -1, sqlite_row_hash, deterministic=True)
        try:
            raw._brazecfg_row_hash = True
        except AttributeError:  # sqlite3.Connection takes no attributes: register again
            pass


def _hash_bytes(value: Any) -> bytes | None:
    """A record hash as bytes: SQLite gives them (8 bytes of BLAKE2b for values; for
    related-row counts the counts' own text, whole); md5 gives 32 hex digits (8 bytes kept)."""
    if value is None:
        return None
    if isinstance(value, str):
        return bytes.fromhex(value[:16])
    return bytes(value)


# PostgreSQL type OIDs: int2, int4, int8, float4, float8, numeric.
_PG_NUMERIC = frozenset({21, 23, 20, 700, 701, 1700})
_DUCKDB_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT",
                   "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL")


def _is_numeric(dialect: str, type_code: Any) -> bool:
    if type_code is None:
        return False
    if dialect == "postgresql":
        return type_code in _PG_NUMERIC
    return str(type_code).upper().split("(")[0] in _DUCKDB_NUMERIC


def as_utc(value: Any) -> datetime | None:
    """A time stamp the warehouse returned (a datetime, a date-time text such as SQLite's
    ``datetime()``) as an aware UTC datetime; a naive one is UTC already. None if it is none."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _at(resource: Any, key: str) -> str:
    where = resource.where(key) if hasattr(resource, "where") else None
    return f"{where}: " if where is not None and where.line else ""


def _slots(keys: list[str | None]) -> dict[str, str | None]:
    """A batch of keys as the parameters of a slotted query (compile.KEY_SLOT)."""
    return {KEY_SLOT.format(i): k for i, k in enumerate(keys)}


def _sqlite_parameters(conn: Connection) -> int:
    """How many parameters one SQLite statement takes on ``conn`` (999 where Python cannot
    ask: before 3.11; SQLite's own default before 3.32)."""
    raw = conn.connection.driver_connection
    getlimit = getattr(raw, "getlimit", None)
    if getlimit is None:
        return 999
    return int(getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))


def _rollback(conn: Connection) -> None:
    try:
        conn.rollback()
    except SQLAlchemyError:
        pass


def _probe(conn: Connection, frm: Any, col: str | None) -> str | None:
    """The warehouse's message if selecting ``col`` (or a constant) from ``frm`` fails."""
    stmt = select(frm.c[col] if col else literal(1)).select_from(frm).where(false())
    try:
        conn.execute(stmt).close()
        return None
    except DBAPIError as exc:
        _rollback(conn)
        return driver_message(exc)
