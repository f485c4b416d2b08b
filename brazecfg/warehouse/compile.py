"""One model -> one SQL query computing every property and every group flag per record.

The shape (``r`` is the inner query, one row per row of the primary source)::

    SELECT r.k, r.v0 .. r.vN, CASE WHEN <group 0> THEN 1 ELSE 0 END AS g0, .., r.kbad
    FROM (
        SELECT <key text of p.<key>> AS k,     -- keys.key_text: one canonical text per key
               p.<column>                          -- plain properties of the primary source
               COALESCE(a0.v3, 0), a0.v4, ..       -- count / sum / avg / min / max
               w0.v5, ..                           -- most_recent / least_recent
               <text of a numeric key that is no key> AS kbad   -- refused by the engine
        FROM <primary source> AS p
        LEFT JOIN (SELECT <key ref> AS k, COUNT(CASE WHEN <filters> THEN 1 END) AS v3,
                          SUM(CASE WHEN <filters> THEN amount END) AS v4, ..
                   FROM <source> GROUP BY <key ref>) AS a0 ON a0.k = <key ref of p.<key>>
        LEFT JOIN (SELECT k, v5 FROM (SELECT <key ref> AS k, <column> AS v5,
                          ROW_NUMBER() OVER (PARTITION BY <key ref> ORDER BY <sort> DESC) AS rn
                          FROM <source> WHERE <sort> IS NOT NULL AND <filters>) AS w0_r
                   WHERE rn = 1) AS w0 ON w0.k = <key ref of p.<key>>
        [WHERE <key ref of p.<key>> IN (<key refs changed since>)]
    ) AS r
    ORDER BY (r.k IS NULL), r.k COLLATE <binary>,
             (r.v0 IS NULL), CAST(r.v0 AS VARCHAR) COLLATE <binary>, ..   -- duplicate keys

On SQLite an incremental read is two steps instead (``SqlWarehouse.stream_model``): the
changed keys in byte order (``build_changed_keys_query``), then this query for a batch of them
at a time, the ``IN`` over ``key_slots`` bound parameters (``slotted_keys``), all in one read
transaction: the same rows in the same order, with the memory of one batch.

A *key ref* is the canonical key text in byte-order collation (``keys.key_ref``): every join,
``GROUP BY``, ``PARTITION BY``, ``IN`` and ``ORDER BY`` on a key uses it, never the raw
column, so a column's own collation (``COLLATE NOCASE``, an ICU collation) or SQLite's type
affinity (``'01' = 1``) cannot merge two keys or reorder them.

One grouped subquery per related source (each property's filters inside its aggregate, so
the source is scanned once), one window subquery per (source, sort, direction, filters).
On DuckDB the windows are aggregates of the grouped subquery too (``_Builder.pick``:
``arg_max_null`` of the values by the window's ranking as a tuple). With the related-row
counts (HASH_COUNTS), a source that has a grouped subquery counts its rows there
(``COUNT(*) AS n``) instead of in a GROUP BY of its own.
Group flags are computed over the named property columns of ``r``; a ``member`` rule inlines
the other group's condition. Every value from a filter or rule is a bound parameter.

Aggregates: ``count`` counts the matching rows (or, with ``column``, the matching rows where
it is not NULL) and is 0 with none; the others are NULL with no matching row. ``most_recent``
and ``least_recent`` ignore rows whose ``sort`` is NULL; ties go to the greatest ``column``
value (for most_recent; the smallest for least_recent), NULL values last, and values the
column's collation calls equal are settled by their text in byte order. A property of the
primary source with an aggregate is aggregated over the primary source's rows of the same key.
A property without ``column`` reads the column named like the property.

Ordering: by the key text in byte order (UTF-8 bytes = code points = Python's ``sorted()``),
with an explicit binary collation on every dialect (see ``keys``). Rows with a NULL key come
last with key ``""``.

Duplicate primary keys (two rows of the primary source with the same key text): the rows of
one key are ordered by every property value, as text in byte order, NULL last, property by
property in the model's order, and the merge keeps the first (``plan.diff`` reports the
others). So the same row wins whatever order a loader wrote the table in.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    LargeBinary,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    column,
    false,
    func,
    literal,
    literal_column,
    not_,
    null,
    or_,
    select,
    text,
    union,
    union_all,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import FromClause

from brazecfg.errors import WarehouseError
from brazecfg.model.resources import Group, Project, Property, Rule, Source
from brazecfg.state.base import StateTable
from brazecfg.warehouse.conditions import Dates, all_of, condition
from brazecfg.warehouse.dates import utc_naive
from brazecfg.warehouse.keys import bad_key, binary, key_order, key_ref, key_text
from brazecfg.warehouse.sources import source_from

_SIMPLE = {"count", "sum", "avg", "min", "max"}
_WINDOW = {"most_recent", "least_recent"}
# Dialects that pick the most/least recent row with an aggregate in the grouped subquery
# (``_Builder.pick``) instead of a window subquery, when ``_picks_match_windows``.
PICK_DIALECTS = frozenset({"duckdb"})


@functools.cache
def _picks_match_windows() -> bool:
    """Whether the installed DuckDB compares a tuple's text fields under their column's
    collation, as ORDER BY does: 2.0 does; 1.1 to 1.5 compare them in byte order (a
    ``COLLATE NOCASE`` column's 'Pro' then loses to 'apple', which the window ranks first), and
    1.0 has no ``arg_max_null`` over a tuple. Older ones keep the window."""
    try:
        return int(version("duckdb").split(".")[0]) >= 2
    except (PackageNotFoundError, ValueError):
        return False


@dataclass
class ModelQuery:
    """The query for one model, and how to read its rows back."""

    select: Select[Any]
    properties: tuple[str, ...]  # names of the value columns, in order after the key
    groups: tuple[str, ...]  # names of the group flag columns, in order after the values
    # source name -> column -> resources needing it ("property/x"), for error diagnostics
    needs: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    hashed: bool = False  # a record hash column follows ``kbad`` (see ``row_hash``)
    hash_kind: str = "values"  # what that hash covers: HASH_VALUES, HASH_COUNTS (HASH_NONE: none)


# What a record hash covers (README "How it works", record hashes). HASH_VALUES: every
# property value and group flag (plans that cannot read incrementally compare it and read
# only the records whose values changed). HASH_COUNTS: how many rows each source an aggregate
# reads holds for the record (incremental plans compare it to find the records that lost a
# related row without any stamped row to show it: a row moved to another record, or deleted).
HASH_VALUES = "values"
HASH_COUNTS = "counts"
# No record hash at all: for a plan whose changes nothing will store (``brazecfg plan``
# without --out), the hash would be computed for every row and dropped.
HASH_NONE = "none"
# The counts hash of a model with no aggregate: nothing to count, the same for every record.
NO_COUNTS = "0000000000000000"


def counted_sources(project: Project, model: str) -> list[str]:
    """The sources whose rows per record HASH_COUNTS counts: those an aggregate reads (every
    related source, and the primary source when a property aggregates its rows)."""
    return list(dict.fromkeys(p.source for p in project.model_properties(model)
                              if p.aggregate))


# The SQLite function computing record hashes (engine.py registers it on every connection).
SQLITE_ROW_HASH = "brazecfg_row_hash"


def hashes_supported(dialect: Dialect) -> bool:
    """Whether record hashes are computed in this warehouse: SQLite (a registered function),
    DuckDB and PostgreSQL (md5). Other dialects read every record in full, as before."""
    return dialect.name in ("sqlite", "duckdb", "postgresql")


def row_hash(values: list[ColumnElement[Any]], dialect: Dialect) -> ColumnElement[Any]:
    """The record hash over ``values`` (every property value, then every group flag), in
    the warehouse. A filter for what to read (plan/diff.py), so it must change whenever a
    value does: each value is written as its text with its length (or ``~`` for NULL),
    which no two different lists of values share. SQLite: ``brazecfg_row_hash`` (typed
    values, engine.sqlite_row_hash); DuckDB and PostgreSQL: md5 of the canonical text."""
    if dialect.name == "sqlite":
        return _sqlite_hash(values)
    parts: list[ColumnElement[Any]] = []
    for i, v in enumerate(values):
        as_text = cast(v, String())
        if i:
            parts.append(literal_column("','"))
        parts.append(case((v.is_(None), literal_column("'~'")),
                          else_=func.concat(cast(func.length(as_text), String()),
                                            literal_column("':'"), as_text)))
    return func.md5(_concat(parts))


# A function call takes at most this many arguments: SQLite's SQLITE_MAX_FUNCTION_ARG is 127
# by default, PostgreSQL's FUNC_MAX_ARGS 100. Past them a record hash is computed in parts:
# one call over every value failed the plan of a model of more than 127 properties and group
# flags on SQLite, more than 50 on PostgreSQL (two arguments a value there;
# tests/test_wide_models.py).
MAX_FUNCTION_ARGS = 100
SQLITE_MAX_FUNCTION_ARGS = 127


def _concat(parts: list[ColumnElement[Any]]) -> ColumnElement[Any]:
    """concat(*parts), nested in calls of at most MAX_FUNCTION_ARGS: the same text."""
    while len(parts) > MAX_FUNCTION_ARGS:
        groups = [parts[i:i + MAX_FUNCTION_ARGS] for i in range(0, len(parts), MAX_FUNCTION_ARGS)]
        parts = [func.concat(*g) if len(g) > 1 else g[0] for g in groups]
    return func.concat(*parts) if len(parts) > 1 else parts[0]


def _sqlite_hash(values: list[ColumnElement[Any]]) -> ColumnElement[Any]:
    """brazecfg_row_hash(*values); past SQLITE_MAX_FUNCTION_ARGS values, the hash of the
    hashes of parts of MAX_FUNCTION_ARGS values (the values' order kept; a model that
    narrow keeps its one call, so its stored hashes stay valid). engine.sqlite_record_hash
    computes the same from a row's values."""
    fn = getattr(func, SQLITE_ROW_HASH)
    if len(values) <= SQLITE_MAX_FUNCTION_ARGS:
        one: ColumnElement[Any] = fn(*values)
        return one
    return _sqlite_hash([fn(*values[i:i + MAX_FUNCTION_ARGS])
                         for i in range(0, len(values), MAX_FUNCTION_ARGS)])


def get_dialect(dialect: Dialect | str) -> Dialect:
    if isinstance(dialect, str):
        from sqlalchemy.dialects import registry

        return registry.load(dialect)()  # type: ignore[no-any-return]
    return dialect


def compile_model_query(project: Project, model: str, *, now: datetime,
                        dialect: Dialect | str, changed_since: datetime | None = None,
                        ) -> Select[Any]:
    """The SELECT computing ``model`` (see the module docstring). For tests and ``--show-sql``.

    ``dialect`` is a SQLAlchemy dialect or its name ("sqlite", "postgresql", "duckdb", ..).
    """
    return build_model_query(project, model, now=now, dialect=dialect,
                             changed_since=changed_since).select


class _Builder:
    def __init__(self, project: Project, model: str, dialect: Dialect, now: datetime,
                 numeric_stamps: frozenset[str] = frozenset(),
                 text_stamps: frozenset[str] = frozenset(), text_key: bool = False,
                 numeric_keys: frozenset[str] = frozenset(), unique_key: bool = False,
                 indexed_keys: frozenset[str] = frozenset()) -> None:
        self.numeric_stamps = numeric_stamps
        # SQLite, the primary key a rowid: the counted sources whose key column holds only
        # numbers (``row_counts`` joins their counts on the raw values), and of those the
        # ones whose key column leads an index (``row_counts`` seeks each record's rows)
        self.numeric_keys = numeric_keys if dialect.name == "sqlite" else frozenset()
        self.indexed_keys = indexed_keys & self.numeric_keys
        self.text_stamps = text_stamps if dialect.name == "sqlite" else frozenset()
        self.text_key = text_key and dialect.name == "sqlite"
        # SQLite: no two rows of the primary source share a key (a text key, or an INTEGER
        # PRIMARY KEY), and every other source joins one row per key: no duplicate to settle
        self.unique_key = (unique_key or text_key) and dialect.name == "sqlite"
        self.project = project
        self.model = model
        self.dialect = dialect
        self.dates = Dates(dialect, utc_naive(now))
        self.primary = project.primary_source(model)
        self.props = project.model_properties(model)
        self.groups = project.model_groups(model)
        self.needs: dict[str, dict[str, list[str]]] = {}
        self._aliases = 0
        self.only_keys: list[str] | None = None
        self.key_range: KeyRange | None = None
        self.changed: Select[Any] | None = None  # the keys changed since (build)

    # -- columns and sources -------------------------------------------------------------

    def need(self, source: Source, col: str | None, who: str) -> None:
        if col:
            self.needs.setdefault(source.name, {}).setdefault(col, []).append(who)

    def collect_needs(self, changed_since: datetime | None) -> None:
        for name in self.source_names():
            src = self.project.sources[name]
            self.need(src, src.key, src.ref)
            if changed_since is not None:
                self.need(src, src.updated_at, src.ref)
        for prop in self.props:
            src = self.project.sources[prop.source]
            if prop.aggregate != "count" or prop.column:
                self.need(src, column_of(prop), prop.ref)
            self.need(src, prop.sort, prop.ref)
            for f in prop.filters:
                self.need(src, f.column, prop.ref)

    def source_names(self) -> list[str]:
        names = dict.fromkeys([self.primary.name, *(p.source for p in self.props)])
        return list(names)

    def from_(self, source: Source, prefix: str) -> FromClause:
        self._aliases += 1
        cols = list(self.needs.get(source.name, {}))
        return source_from(source, cols, f"{prefix}{self._aliases}", self.dialect,
                           self.project.settings.root)

    def filters(self, prop: Property, src: FromClause) -> list[ColumnElement[bool]]:
        out = []
        for f in prop.filters:
            try:
                out.append(condition(src.c[f.column], f.op, f.value, self.dates))
            except ValueError as exc:
                raise WarehouseError(f"{prop.ref}: filter on {f.column!r}: {exc}") from None
        return out

    # -- properties ------------------------------------------------------------------------

    def build(self, changed_since: datetime | None,
              only_keys: list[str] | None = None, *, keys_only: bool = False,
              hash_kind: str = HASH_VALUES, key_slots: int = 0,
              key_range: KeyRange | None = None) -> ModelQuery:
        self.only_keys = only_keys
        self.key_range = key_range
        self.check_apps()
        self.collect_needs(changed_since)
        if keys_only and hash_kind == HASH_COUNTS:
            return self.build_counts()
        # The keys changed since (incremental reads), computed once and pushed into every
        # related source's subquery too, so only the changed records' rows are aggregated.
        # ``key_slots``: the changed keys are instead ``key_slots`` parameters (KEY_SLOT),
        # a batch of build_changed_keys_query's keys at a time (SqlWarehouse.stream_model).
        self.changed = None
        if changed_since is not None or key_slots:
            changed = (slotted_keys(key_slots, self.dialect) if key_slots
                       else self.changed_keys(changed_since) if changed_since is not None
                       else None)
            if changed is not None:
                cte = changed.cte("changed_keys")
                self.changed = select(cte.c[0])
                self.changed_ints = select(cast(cte.c[0], BigInteger()))
                self.changed_bytes = select(cast(cte.c[0], LargeBinary()))
        p = self.from_(self.primary, "p")
        pkey = p.c[self.primary.key]
        pkey_ref = key_ref(pkey, self.dialect)
        exprs: dict[str, ColumnElement[Any]] = {}
        joined: FromClause = p
        simple: dict[str, list[Property]] = {}
        windows: dict[tuple[str, str, str, str], list[Property]] = {}
        for prop in self.props:
            agg = prop.aggregate
            if not agg:
                if prop.source != self.primary.name:
                    raise WarehouseError(
                        f"{prop.ref} reads source/{prop.source}, which is not the primary "
                        f"source of model/{self.model} (source/{self.primary.name}): give it "
                        "an aggregate (count, sum, avg, min, max, most_recent, least_recent)")
                col = p.c[column_of(prop)]
                conds = self.filters(prop, p)
                exprs[prop.name] = case((all_of(conds), col)) if conds else col
            elif agg in _SIMPLE:
                simple.setdefault(prop.source, []).append(prop)
            elif agg in _WINDOW:
                if not prop.sort:
                    raise WarehouseError(f"{prop.ref}: {agg} needs a sort column")
                window_key = (prop.source, prop.sort, agg, repr(prop.filters))
                windows.setdefault(window_key, []).append(prop)
            else:
                raise WarehouseError(f"{prop.ref}: unknown aggregate {agg!r}")
        # DuckDB picks the most/least recent row with an aggregate (``pick``), so those
        # join the source's grouped subquery; elsewhere each is a window subquery.
        picks: dict[str, list[tuple[str, str, list[Property]]]] = {}
        if self.dialect.name in PICK_DIALECTS and _picks_match_windows():
            for (source_name, sort, agg, _), props in windows.items():
                picks.setdefault(source_name, []).append((sort, agg, props))
            windows = {}
        counted = set(counted_sources(self.project, self.model)) if hash_kind == HASH_COUNTS \
            else set()
        counted_in: dict[str, ColumnElement[Any]] = {}
        for source_name in dict.fromkeys([*simple, *picks]):
            sq = self.grouped(self.project.sources[source_name], simple.get(source_name, []),
                              exprs, picks=picks.get(source_name, ()),
                              count=source_name in counted)
            joined = joined.outerjoin(sq, binary(sq.c.k, self.dialect) == pkey_ref)
            if source_name in counted:
                counted_in[source_name] = sq.c.n
        for (source_name, sort, agg, _), props in windows.items():
            sq = self.window(self.project.sources[source_name], sort, agg, props, exprs)
            joined = joined.outerjoin(sq, binary(sq.c.k, self.dialect) == pkey_ref)
        counts: list[ColumnElement[Any]] = []
        if hash_kind == HASH_COUNTS:
            joined, counts = self.row_counts(joined, pkey_ref, counted_in=counted_in)

        names = [prop.name for prop in self.props]
        inner = select(key_text(pkey, self.dialect).label("k"),
                       *(exprs[n].label(f"v{i}") for i, n in enumerate(names)),
                       bad_key(pkey, self.dialect).label("kbad"),
                       *([pkey.label("kr")] if self.text_key else []),
                       *(c.label(f"n{i}") for i, c in enumerate(counts)))
        inner = inner.select_from(joined)
        inner = inner.where(*self.key_scope(pkey, primary=True))
        if self.changed is not None:
            inner = inner.where(*([binary(pkey, self.dialect).in_(self.changed)]
                                  if self.text_key else self.changed_filter(pkey)))
        r = inner.subquery("r")
        by_name: dict[str, ColumnElement[Any]] = {n: r.c[f"v{i}"] for i, n in enumerate(names)}
        flags = []
        for i, group in enumerate(self.groups):
            cond = self.group_condition(group, by_name, ())
            flags.append(case((cond, literal(1)), else_=literal(0)).label(f"g{i}"))
        if hash_kind == HASH_COUNTS:
            # a dialect without record hashes has them only when there is nothing to count
            hashed = not counts or hashes_supported(self.dialect)
            digest = [self.counts_hash([r.c[f"n{i}"] for i in range(len(counts))])
                      ] if hashed else []
        elif hash_kind == HASH_NONE:
            hashed, digest = False, []
        else:
            hashed = hashes_supported(self.dialect)
            digest = [row_hash([*(by_name[n] for n in names), *(f.element for f in flags)],
                               self.dialect).label("h")] if hashed else []
        # A unique key column that holds text and no NULL (``text_key``): its own text is
        # the key text, so ORDER BY the raw column in byte order, which its index (the primary key's)
        # already has, instead of sorting the computed text in a temporary B-tree.
        order = ([binary(r.c.kr, self.dialect)] if self.text_key
                 else key_order(r.c.k, self.dialect))
        if keys_only:
            stmt = (select(r.c.k, r.c.kbad, *digest, *flags)
                    .where(or_(r.c.k.is_not(None), r.c.kbad.is_not(None)))
                    .order_by(*order))
            return ModelQuery(stmt, (), tuple(g.name for g in self.groups), self.needs,
                              hashed, hash_kind)
        ties = [e for n in names for e in (case((by_name[n].is_(None), 1), else_=0),
                                           binary(cast(by_name[n], String()), self.dialect))]
        # The values break ties between rows of one key, so that the same duplicate always
        # wins; a unique key has none to settle, and sorting by it alone is a smaller sort
        # (SQLite, the full model of 1M users alone: 16.2 to 16.8 s against 18.4 s).
        stmt = (select(r.c.k, *(by_name[n] for n in names), *flags, r.c.kbad, *digest)
                .order_by(*order, *([] if self.unique_key else ties)))
        if only_keys is not None:
            stmt = stmt.where(r.c.k.in_(only_keys))
        return ModelQuery(stmt, tuple(names), tuple(g.name for g in self.groups), self.needs,
                          hashed, hash_kind)

    def row_counts(self, joined: FromClause, pkey_ref: ColumnElement[Any],
                   rowid: ColumnElement[Any] | None = None, *,
                   counted_in: dict[str, ColumnElement[Any]] | None = None
                   ) -> tuple[FromClause, list[ColumnElement[Any]]]:
        """``joined`` with, per counted source (``counted_sources``), its number of rows for
        the record (0 with none): one GROUP BY over the source's key, nothing else read.
        ``counted_in``: sources whose grouped subquery, already joined, counts their rows
        (``grouped(count=True)``: the same rows, grouped by the same key), used instead.

        SQLite groups twice: first by the raw key column in byte order (an index on it gives
        that order: no sort), then those groups by key text, adding their counts. Values
        equal in the first (the same text, or numbers of equal value: ``1`` and ``1.0``)
        have one key text, so the counts per key text are exactly those of one GROUP BY
        on it, which would sort every row of the source by a computed text. When the
        record's key is a ``rowid`` (an INTEGER PRIMARY KEY) and the source is one of
        ``numeric_keys`` (its key column holds numbers only), a number and a rowid are equal
        exactly when their key texts are (a fractional number has none and equals no
        rowid), so the first groups join the record on the raw values: no second GROUP BY
        and no key text computed per group (1M users, 3M purchases: 1.8 s against 3.5 s).
        When an index leads with that column (``indexed_keys``), each record counts its own
        rows instead, one seek of the index, and no group is materialised and indexed again
        (the diff of 1M users alone in sqlite3: 2.7 to 3.6 s against 4.6 to 5.8 s). Only
        then: without an index SQLite would scan the source once per record."""
        counts: list[ColumnElement[Any]] = []
        for name in counted_sources(self.project, self.model):
            if counted_in and name in counted_in:
                counts.append(func.coalesce(counted_in[name], 0))
                continue
            source = self.project.sources[name]
            s = self.from_(source, "n")
            raw = s.c[source.key]
            skey = key_ref(raw, self.dialect)
            if self.dialect.name == "sqlite":
                first = select(binary(raw, self.dialect).label("rk"), func.count().label("n"))
            else:
                first = select(skey.label("k"), func.count().label("n"))
            conds = [*self.key_scope(raw),
                     *(self.changed_filter(raw) if self.changed is not None else [])]
            first = first.where(*conds)
            if rowid is not None and name in self.indexed_keys:
                seek = (select(func.count()).select_from(s)
                        .where(*conds, binary(raw, self.dialect) == rowid).correlate_except(s))
                counts.append(seek.scalar_subquery())
                continue
            if rowid is not None and name in self.numeric_keys:
                sq = first.group_by(binary(raw, self.dialect)).subquery(f"nc{self._aliases}")
                joined = joined.outerjoin(sq, sq.c.rk == rowid)
                counts.append(func.coalesce(sq.c.n, 0))
                continue
            if self.dialect.name == "sqlite":
                by_raw = first.group_by(binary(raw, self.dialect)).subquery(
                    f"nr{self._aliases}")
                rkey = key_ref(by_raw.c.rk, self.dialect)
                grouped = select(rkey.label("k"), func.sum(by_raw.c.n).label("n")).group_by(rkey)
            else:
                grouped = first.group_by(skey)
            sq = grouped.subquery(f"nc{self._aliases}")
            joined = joined.outerjoin(sq, binary(sq.c.k, self.dialect) == pkey_ref)
            counts.append(func.coalesce(sq.c.n, 0))
        return joined, counts

    def counts_hash(self, counts: list[ColumnElement[Any]]) -> ColumnElement[Any]:
        """HASH_COUNTS over the ``row_counts`` columns; a constant when there are none (any
        dialect: no hash function needed)."""
        if not counts:
            return literal_column(f"'{NO_COUNTS}'").label("h")
        if self.dialect.name == "sqlite":
            # the counts themselves, in hex, as bytes: as exact as a hash, and computed in
            # SQLite's C instead of a Python function called per record
            spec = ",".join(["%x"] * len(counts))
            return cast(func.printf(literal_column(f"'{spec}'"), *counts),
                        LargeBinary()).label("h")
        return row_hash(counts, self.dialect).label("h")

    def build_counts(self) -> ModelQuery:
        """Every record key with its HASH_COUNTS, in key byte order: the primary source's
        keys and one GROUP BY per counted source; no property is computed. Columns: k, kbad,
        h."""
        p = self.from_(self.primary, "p")
        pkey = p.c[self.primary.key]
        joined, counts = self.row_counts(p, key_ref(pkey, self.dialect),
                                         pkey if self.numeric_keys else None)
        order = ([binary(pkey, self.dialect)] if self.text_key
                 else key_order(key_text(pkey, self.dialect), self.dialect))
        stmt = (select(key_text(pkey, self.dialect).label("k"),
                       bad_key(pkey, self.dialect).label("kbad"), self.counts_hash(counts))
                .select_from(joined).where(pkey.is_not(None)).order_by(*order))
        return ModelQuery(stmt, (), (), self.needs, True, HASH_COUNTS)

    def changed_filter(self, col: ColumnElement[Any]) -> list[ColumnElement[bool]]:
        """Rows of a source whose key is one of the keys changed since (``self.changed``):
        the canonical key text compared exactly, and on SQLite first the raw column against
        each key's text, its whole number and its bytes (as ``key_filter`` does for a list
        of keys): a superset that lets an index on the key column seek the changed keys'
        rows instead of computing the key text of every row of the source."""
        assert self.changed is not None
        exact = key_ref(col, self.dialect).in_(self.changed)
        if self.dialect.name != "sqlite":
            return [exact]
        return [or_(col.in_(self.changed), col.in_(self.changed_ints),
                    col.in_(self.changed_bytes)), exact]

    def key_scope(self, col: ColumnElement[Any], *, primary: bool = False
                  ) -> list[ColumnElement[bool]]:
        """The rows of a source (its key column ``col``) that the query reads: those of
        ``only_keys`` (``key_filter``), or of ``key_range``, or all. A range [lo, hi) of key
        text in byte order, the model's order, takes every row of a key or none; the last
        (no hi) also takes the primary source's rows without a key text, which sort last and
        which no related row joins. A text key's column is its key text (``text_key``), and a
        range of it can seek the primary key's index (when that is in BINARY order)."""
        if self.only_keys is not None:
            return self.key_filter(col)
        if self.key_range is None:
            return []
        lo, hi = self.key_range
        k = binary(col, self.dialect) if primary and self.text_key else key_ref(col, self.dialect)
        conds = [*([k >= literal(lo, String())] if lo is not None else []),
                 *([k < literal(hi, String())] if hi is not None else [])]
        if primary and hi is None and not self.text_key:
            return [or_(and_(*conds), k.is_(None))] if conds else []
        return conds

    def key_filter(self, col: ColumnElement[Any]) -> list[ColumnElement[bool]]:
        """Rows of a source whose key is one of ``only_keys``: the canonical key text
        compared exactly, and on SQLite first the raw column against each key's text and
        whole number and its bytes, a superset that lets an index on the key column seek
        instead of scanning (a value whose key text is k equals k's text, k's integer or,
        a BLOB, k's UTF-8 bytes there: key_text casts a BLOB to text).
        Reading by key pushes this into every source's subquery, so a related source is
        read for these keys only, not aggregated whole per batch."""
        keys = self.only_keys or []
        exact = key_ref(col, self.dialect).in_(keys)
        if self.dialect.name != "sqlite":
            return [exact]
        ints = []
        for k in keys:
            if k.lstrip("-").isdigit() and str(int(k)) == k and abs(int(k)) < 2 ** 63:
                ints.append(int(k))
        blobs = [k.encode() for k in keys]
        return [or_(col.in_(keys), col.in_(ints), col.in_(blobs)) if ints else
                or_(col.in_(keys), col.in_(blobs)), exact]

    def check_apps(self) -> None:
        app = self.primary.app
        for name in self.source_names():
            src = self.project.sources[name]
            if src.app != app:
                raise WarehouseError(
                    f"model/{self.model} reads source/{src.name} from app/{src.app} and its "
                    f"primary source from app/{app}: every source of a model must live in "
                    "the same warehouse (join them there, e.g. with a query source)")

    def grouped(self, source: Source, props: list[Property],
                exprs: dict[str, ColumnElement[Any]], *,
                picks: Sequence[tuple[str, str, list[Property]]] = (),
                count: bool = False) -> FromClause:
        """One GROUP BY over ``source`` by key: the aggregates of ``props``, each
        (sort, most_recent/least_recent, properties) of ``picks`` (DuckDB, ``pick``) and,
        with ``count``, its number of rows per key (column ``n``, for ``row_counts``)."""
        s = self.from_(source, "s")
        skey = key_ref(s.c[source.key], self.dialect)
        cols: list[ColumnElement[Any]] = [skey.label("k")]
        labels = [f"v{i}" for i in range(len(props))]
        for prop, label in zip(props, labels, strict=True):
            conds = self.filters(prop, s)
            if prop.aggregate == "count":
                target: ColumnElement[Any] = s.c[prop.column] if prop.column else literal(1)
                if conds:
                    cols.append(func.count(case((all_of(conds), target))).label(label))
                elif prop.column:
                    cols.append(func.count(target).label(label))
                else:
                    cols.append(func.count().label(label))
            else:
                col: ColumnElement[Any] = s.c[column_of(prop)]
                arg = case((all_of(conds), col)) if conds else col
                cols.append(getattr(func, str(prop.aggregate))(arg).label(label))
        for j, (sort, agg, wprops) in enumerate(picks):
            cols.append(self.pick(s, sort, agg, wprops).label(f"w{j}"))
        if count:
            cols.append(func.count().label("n"))
        grouped = select(*cols)
        grouped = grouped.where(*self.key_scope(s.c[source.key]))
        if self.changed is not None:
            grouped = grouped.where(*self.changed_filter(s.c[source.key]))
        sq = grouped.group_by(skey).subquery(f"a{self._aliases}")
        for prop, label in zip(props, labels, strict=True):
            value = sq.c[label]
            exprs[prop.name] = func.coalesce(value, 0) if prop.aggregate == "count" else value
        for j, (_, _, wprops) in enumerate(picks):
            for i, p in enumerate(wprops):
                exprs[p.name] = func.struct_extract(sq.c[f"w{j}"], literal_column(str(i + 1)))
        return sq

    def pick(self, s: FromClause, sort: str, agg: str, props: list[Property]
             ) -> ColumnElement[Any]:
        """DuckDB: the values of ``props`` from the row ``window`` ranks first, as one
        aggregate (a tuple of the values; ``grouped`` takes them apart): ``arg_max_null`` of
        the ranking as a tuple compared field by field, (sort, has a value, value, its text
        in byte order), for most_recent, ``arg_min_null`` with (sort, has no value, value,
        text) for least_recent, over the rows with a sort and the filters. The same row as
        the window's ROW_NUMBER() = 1 (the column's collation compares the value in both),
        without materialising the source's rows partitioned and joining them on their own:
        at 10M users, 30M purchases, the model read through brazecfg 11 to 14% faster and
        45 to 47 MB smaller (bench/README.md)."""
        first = s.c[column_of(props[0])]
        exact = binary(cast(first, String()), self.dialect)
        if agg == "most_recent":
            rank = func.row(s.c[sort], first.is_not(None), first, exact)
            chosen = func.arg_max_null
        else:
            rank = func.row(s.c[sort], first.is_(None), first, exact)
            chosen = func.arg_min_null
        values = func.row(*(s.c[column_of(p)] for p in props))
        return chosen(values, rank).filter(and_(s.c[sort].is_not(None),
                                               *self.filters(props[0], s)))

    def window(self, source: Source, sort: str, agg: str, props: list[Property],
               exprs: dict[str, ColumnElement[Any]]) -> FromClause:
        s = self.from_(source, "s")
        skey = key_ref(s.c[source.key], self.dialect)
        first = s.c[column_of(props[0])]
        # The last term settles values its collation calls equal ('Pro' and 'pro' on a NOCASE
        # column): without it, which one wins would depend on the rows' physical order.
        exact = binary(cast(first, String()), self.dialect)
        if agg == "most_recent":
            order = [s.c[sort].desc(), case((first.is_(None), 1), else_=0), first.desc(),
                     exact.desc()]
        else:
            order = [s.c[sort].asc(), case((first.is_(None), 1), else_=0), first.asc(),
                     exact.asc()]
        rn = func.row_number().over(partition_by=skey, order_by=order).label("rn")
        labels = [f"v{i}" for i in range(len(props))]
        ranked = (select(skey.label("k"),
                         *(s.c[column_of(p)].label(lb) for p, lb in zip(props, labels, strict=True)), rn)
                  .where(s.c[sort].is_not(None), *self.filters(props[0], s),
                         *self.key_scope(s.c[source.key]),
                         *(self.changed_filter(s.c[source.key]) if self.changed is not None
                           else ()))
                  .subquery(f"r{self._aliases}"))
        sq = (select(ranked.c.k, *(ranked.c[lb] for lb in labels))
              .where(ranked.c.rn == 1).subquery(f"w{self._aliases}"))
        for p, lb in zip(props, labels, strict=True):
            exprs[p.name] = sq.c[lb]
        return sq

    def changed_keys(self, since: datetime) -> Select[Any] | None:
        sources = [self.project.sources[n] for n in self.source_names()]
        if any(not s.updated_at for s in sources):
            return None  # some source cannot say what changed: read everything
        bound = self.dates.value(utc_naive(since))
        parts = []
        for src in sources:
            f = self.from_(src, "c")
            stamp = self.stamp(src, f)
            # A stamp the warehouse cannot read as a time (NULL after conversion) never hides
            # a change: such rows are always read.
            changed = or_(stamp >= bound, stamp.is_(None))
            col = f.c[str(src.updated_at)]
            if f"{src.name}.{src.updated_at}" in self.text_stamps:
                # ISO text (``text_stamps``): a stamp at or after ``since`` in any zone
                # (offsets are below 15 hours) sorts at or after the day before ``since``,
                # so that range of the raw column, which an index on it seeks, holds every
                # row the exact test keeps.
                day_before = (utc_naive(since) - timedelta(days=1)).strftime("%Y-%m-%d")
                changed = and_(col >= literal(day_before, String()), changed)
            parts.append(select(key_ref(f.c[src.key], self.dialect).label("k"))
                         .where(changed))
        u = union(*parts).subquery("changed") if len(parts) > 1 else parts[0].subquery("changed")
        return select(binary(u.c.k, self.dialect))

    def stamp(self, src: Source, frm: FromClause) -> ColumnElement[Any]:
        """The source's ``updated_at`` as a UTC datetime: epoch numbers when the column's
        type is numeric (``numeric_stamps``: "source.column"), else ``Dates.column``."""
        col = frm.c[str(src.updated_at)]
        if f"{src.name}.{src.updated_at}" in self.numeric_stamps:
            return self.dates.epoch(col)
        return self.dates.column(col)

    # -- groups ----------------------------------------------------------------------------

    def group_condition(self, group: Group, values: dict[str, ColumnElement[Any]],
                        stack: tuple[str, ...]) -> ColumnElement[bool]:
        if group.name in stack:
            raise WarehouseError(f"{group.ref}: membership rules form a cycle "
                                 f"({' -> '.join((*stack, group.name))})")
        conds = [self.rule_condition(group, rule, values, (*stack, group.name))
                 for rule in group.rules]
        if group.match == "any":
            return or_(*conds) if conds else false()
        return all_of(conds)

    def rule_condition(self, group: Group, rule: Rule, values: dict[str, ColumnElement[Any]],
                       stack: tuple[str, ...]) -> ColumnElement[bool]:
        if rule.group is not None:
            other = self.project.groups.get(rule.group)
            if other is None or other.model != self.model:
                raise WarehouseError(f"{group.ref}: rule refers to group/{rule.group}, which "
                                     f"is not a group of model/{self.model}")
            cond = self.group_condition(other, values, stack)
            if rule.op == "member":
                return cond
            if rule.op == "not_member":
                return not_(cond)
            raise WarehouseError(f"{group.ref}: a group rule takes op member or not_member, "
                                 f"not {rule.op!r}")
        if rule.property not in values:
            raise WarehouseError(f"{group.ref}: rule refers to property/{rule.property}, which "
                                 f"is not a property of model/{self.model}")
        try:
            return condition(values[str(rule.property)], rule.op, rule.value, self.dates)
        except ValueError as exc:
            raise WarehouseError(f"{group.ref}: rule on {rule.property!r}: {exc}") from None


def build_events_query(project: Project, model: str, source: str, *, key: str, user: str,
                       columns: list[str], dialect: Dialect | str,
                       since: datetime | None = None, time_column: str | None = None,
                       ) -> Select[Any]:
    """Rows of an event ``source``: key text, user key text, then ``columns``; ordered by
    key text in byte order; only users that are records of ``model`` (their key is in the
    primary source); only rows whose ``time_column`` >= ``since`` when both are given."""
    d = get_dialect(dialect)
    primary = project.primary_source(model)
    src = project.sources[source]
    if src.app != primary.app:
        raise WarehouseError(f"{src.ref} is in app/{src.app} but model/{model} reads "
                             f"app/{primary.app}: events must come from the model's warehouse")
    need = [key, user, *columns, *([time_column] if since is not None and time_column else [])]
    root = project.settings.root
    e = source_from(src, need, "e", d, root)
    p = source_from(primary, [primary.key], "p", d, root)
    k = key_text(e.c[key], d)
    members = select(key_ref(p.c[primary.key], d)).where(p.c[primary.key].is_not(None))
    stmt = (select(k.label("k"), key_text(e.c[user], d).label("u"),
                   *(e.c[c].label(f"c{i}") for i, c in enumerate(columns)))
            .where(key_ref(e.c[user], d).in_(members)))
    if since is not None and time_column:
        dates = Dates(d, utc_naive(since))
        stmt = stmt.where(dates.column(e.c[time_column]) >= dates.value(utc_naive(since)))
    return stmt.order_by(*key_order(k, d))


def build_hashes_query(project: Project, model: str, *, now: datetime,
                       dialect: Dialect | str, text_key: bool = False,
                       kind: str = HASH_VALUES) -> ModelQuery:
    """Every record key of ``model`` with its record hash, in key byte order. HASH_VALUES
    (``row_hash``): the warehouse computes every property and group as the model query does,
    and only the key, 8 bytes of hash and the group flags per record leave it (columns: k,
    kbad, h, g0..). HASH_COUNTS: the key and the hash of its related-row counts (k, kbad,
    h), no property computed."""
    d = get_dialect(dialect)
    if model not in project.models:
        raise WarehouseError(f"model/{model} does not exist")
    return _Builder(project, model, d, now, text_key=text_key).build(
        None, keys_only=True, hash_kind=kind)


# The name a SQLite warehouse attaches the state's file under (engine.stream_hash_changes).
STATE_ALIAS = "brazecfg_state"


def build_hash_changes_query(project: Project, model: str, *, now: datetime,
                             dialect: Dialect | str, state: StateTable,
                             text_key: bool = False, unique_key: bool = False,
                             kind: str = HASH_COUNTS,
                             numeric_keys: frozenset[str] = frozenset(),
                             indexed_keys: frozenset[str] = frozenset()) -> Select[Any]:
    """The diff of record hashes in the warehouse (README "How it works"): every record key
    of ``model`` with its record hash of ``kind`` (HASH_COUNTS: its related-row counts, for
    incremental reads; HASH_VALUES: every property value and group flag, for full reads),
    full-outer-joined on the key with the state's records of one destination (``state``,
    where ``Ledger.joinable`` says they are), keeping only the keys whose hashes differ: new
    records, records whose hash changed or is unknown, keys gone from the model, duplicate
    keys (``unique_key``: the key cannot repeat). Columns: k, kbad, h (the warehouse's side:
    NULL when it has no such key), sk, sg, sh (the state's: key, groups column, row hash),
    in key byte order. Unchanged records never leave."""
    d = get_dialect(dialect)
    if model not in project.models:
        raise WarehouseError(f"model/{model} does not exist")
    counts = _Builder(project, model, d, now, text_key=text_key,
                      numeric_keys=numeric_keys if unique_key and not text_key else frozenset(),
                      indexed_keys=indexed_keys).build(None, keys_only=True, hash_kind=kind
                              ).select.order_by(None).subquery("wc")
    w: FromClause = counts
    if not unique_key:  # a repeated key is read by key every time: which row wins is settled there
        grouped = binary(counts.c.k, d)
        w = (select(grouped.label("k"), func.max(counts.c.kbad).label("kbad"),
                    case((func.count() == 1, func.max(counts.c.h))).label("h"))
             .group_by(grouped).subquery("w"))
    schema = STATE_ALIAS if state.attach is not None else state.schema
    records = Table(state.table, MetaData(schema=schema), Column("destination"),
                    Column("external_id", String()), Column(state.groups),
                    Column("row_hash", LargeBinary()))
    # The records table itself, its destination in the join condition, so that each key is
    # one seek of its primary key (destination, external_id) and the unmatched records of
    # the full join are one pass; those of other destinations are dropped after.
    s = records.alias("s")
    dest = s.c.destination == literal(state.destination)
    wk, sk = binary(w.c.k, d), binary(s.c.external_id, d)
    unpaired = [w.c.k.is_(None), s.c.external_id.is_(None), s.c.row_hash.is_(None)]
    sh = func.encode(s.c.row_hash, literal_column("'hex'")) if d.name == "postgresql" else (
        func.lower(func.hex(s.c.row_hash)))
    if kind == HASH_COUNTS and not counted_sources(project, model):  # NO_COUNTS, text
        differ = or_(*unpaired, w.c.h.is_(None), w.c.h != sh)
    elif d.name == "sqlite":
        # Both hashes are BLOBs on SQLite (the state writes bytes; the warehouse's is a BLOB
        # or a duplicate's NULL): compared as they are, NULL-safe, so that the record's hash
        # is computed once per record, not once per test of it (1M users: the diff 3.6 to
        # 4.1 s -> 3.0 to 3.4 s). Equal bytes are equal hex, so no change is missed.
        differ = or_(*unpaired, w.c.h.is_distinct_from(s.c.row_hash))
    else:  # compared as 16 hex digits: md5 gives 32
        differ = or_(*unpaired, w.c.h.is_(None), func.substr(w.c.h, 1, 16) != sh)
    if d.name == "sqlite" and unique_key:
        return _split_hash_changes(project, model, d, w, s, records, state,
                                   and_(dest, wk == sk), differ, text_key=text_key)
    joined = w.join(s, and_(dest, wk == sk), full=True)
    return (select(w.c.k, w.c.kbad, w.c.h, s.c.external_id, s.c[state.groups], s.c.row_hash)
            .select_from(joined)
            .where(or_(s.c.external_id.is_(None), dest), differ)
            .order_by(*key_order(func.coalesce(w.c.k, s.c.external_id), d)))


def _split_hash_changes(project: Project, model: str, d: Dialect, w: FromClause,
                        s: FromClause, records: Table, state: StateTable,
                        on: ColumnElement[bool], differ: ColumnElement[bool], *,
                        text_key: bool) -> Select[Any]:
    """``build_hash_changes_query`` on SQLite when no two rows of the primary source share a
    key (a table whose one primary key column is an INTEGER PRIMARY KEY or text NOT NULL):
    the full join as two halves. The warehouse's keys, each seeking the state's primary key
    (a LEFT JOIN SQLite streams), and the state's keys that no row of the primary table has
    (each a seek of that table's key: its rowid, or its text and the same bytes as a BLOB,
    then the exact key text). SQLite runs a FULL JOIN by first writing every record of the
    left side to a temporary table (1M users, interleaved on one file and state: 7.4 to 8.0 s
    for the query, against 5.2 to 5.6 s for the halves; bench/README.md)."""
    primary = project.primary_source(model)
    p = source_from(primary, [primary.key], "x", d, project.settings.root)
    pkey = p.c[primary.key]
    gone = records.alias("g")
    text = gone.c.external_id
    if text_key:  # text, or a BLOB of its bytes (key_text casts one to text)
        seek = or_(pkey == text, pkey == cast(text, LargeBinary()))
    else:  # the rowid: whole numbers
        seek = pkey == cast(text, BigInteger())
    has_row = (select(literal(1)).select_from(p)
               .where(seek, binary(key_text(pkey, d), d) == binary(text, d)).exists())
    kept = (select(w.c.k.label("k"), w.c.kbad.label("kbad"), w.c.h.label("h"),
                   s.c.external_id.label("sk"), s.c[state.groups].label("sg"),
                   s.c.row_hash.label("sh"))
            .select_from(w.outerjoin(s, on)).where(differ))
    missing = (select(null().label("k"), null().label("kbad"), null().label("h"),
                      text.label("sk"), gone.c[state.groups].label("sg"),
                      gone.c.row_hash.label("sh"))
               .where(gone.c.destination == literal(state.destination), not_(has_row)))
    u = union_all(kept, missing).subquery("d")
    return (select(u.c.k, u.c.kbad, u.c.h, u.c.sk, u.c.sg, u.c.sh)
            .order_by(*key_order(func.coalesce(u.c.k, u.c.sk), d)))


def build_max_updated_query(project: Project, model: str, *, dialect: Dialect | str,
                            numeric_stamps: frozenset[str] = frozenset(),
                            ) -> Select[Any] | None:
    """The greatest ``updated_at`` over every source of ``model`` that declares one, read as
    the incremental filter reads it (``Dates.column``: UTC, epoch numbers understood), in one
    row and column; None when no source declares ``updated_at``."""
    d = get_dialect(dialect)
    builder = _Builder(project, model, d, datetime(1970, 1, 1), numeric_stamps)
    parts: list[Select[Any]] = []
    for name in builder.source_names():
        src = project.sources[name]
        if src.updated_at:
            f = source_from(src, [src.updated_at], f"m{len(parts)}", d, project.settings.root)
            parts.append(select(func.max(builder.stamp(src, f)).label("m")))
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    u = union_all(*parts).subquery("maxima")
    return select(func.max(u.c.m).label("m"))


# A value shaped like a date: '-' fifth and eighth, ten characters at least. LIKE, not GLOB
# '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' (over 3M stamps, the bench's purchases at 1M
# users: 0.24 s against 0.55 s, the whole survey 0.8 s against 1.1 s): the survey trusts
# ``undated`` only when SQLite's datetime() read every value (``dated`` not a BLOB), and
# datetime() reads a text with those two '-' only as YYYY-MM-DD, with digits in the eight
# other places, so there the two tests agree.
DATE_SHAPE = "____-__-__%"


@dataclass(frozen=True)
class StampSurvey:
    """One source's ``updated_at`` (SQLite): ``select`` reads the column in one pass, for its
    ends (``low``, ``high``), how many values it holds (``values``), are NULL (``nulls``) or
    are not shaped like a date (``undated``, DATE_SHAPE), and ``dated``: the greatest time
    SQLite reads (datetime()) when it reads every value, else a BLOB (one datetime() a row:
    a value it cannot read counts as X'00', and SQLite orders a BLOB after every text; NULL
    for no rows). ``greatest`` is the greatest stamp as the incremental filter reads any value
    (epoch numbers too), which equals ``dated`` when every value is readable text that
    starts with a date."""

    source: Source
    select: Select[Any]
    greatest: Select[Any]


def build_stamp_surveys(project: Project, model: str, *, dialect: Dialect | str,
                        numeric_stamps: frozenset[str] = frozenset()) -> list[StampSurvey]:
    """Per source of ``model`` that declares ``updated_at``, its StampSurvey: one scan of the
    column gives both the checks that let an incremental read add a range to its filter and,
    for such columns, the greatest stamp (four scans before, one of them converting every
    value with the filter's own CASE)."""
    d = get_dialect(dialect)
    builder = _Builder(project, model, d, datetime(1970, 1, 1), numeric_stamps)
    out: list[StampSurvey] = []
    for name in builder.source_names():
        src = project.sources[name]
        if not src.updated_at:
            continue
        f = source_from(src, [src.updated_at], f"m{len(out)}", d, project.settings.root)
        col = f.c[src.updated_at]
        dt = func.datetime(col)
        undated = case((col.like(literal(DATE_SHAPE)), literal(0)), else_=literal(1))
        out.append(StampSurvey(src, select(
            func.min(col).label("low"), func.max(col).label("high"),
            func.count(col).label("values"), (func.count() - func.count(col)).label("nulls"),
            func.coalesce(func.sum(undated), literal(0)).label("undated"),
            func.max(func.coalesce(dt, literal_column("X'00'"))).label("dated")),
            select(func.max(builder.stamp(src, f)))))
    return out


# The parameter names of a slotted query's keys (``key_slots``): KEY_SLOT.format(i) for i
# from 0. A slot without a key is None, which no key equals.
KEY_SLOT = "changed_{}"


def slotted_keys(slots: int, dialect: Dialect) -> Select[Any]:
    """``slots`` bound parameters as a one-column select of key texts in byte order
    collation (``keys.binary``), as ``changed_keys`` gives them: ``VALUES`` rows, whose
    column SQLite (the one dialect that reads in batches) names ``column1``."""
    rows = ", ".join(f"(:{KEY_SLOT.format(i)})" for i in range(slots))
    values = (text(f"SELECT column1 AS k FROM (VALUES {rows})")
              .bindparams(*(bindparam(KEY_SLOT.format(i), None, type_=String())
                            for i in range(slots)))
              .columns(column("k", String())).subquery("slots"))
    return select(binary(values.c.k, dialect))


def build_changed_keys_query(project: Project, model: str, *, now: datetime,
                             changed_since: datetime, dialect: Dialect | str,
                             numeric_stamps: frozenset[str] = frozenset(),
                             text_stamps: frozenset[str] = frozenset()) -> ModelQuery | None:
    """The key texts of the records an incremental read of ``model`` since ``changed_since``
    returns (``changed_keys``: a row of some source stamped since, or with a stamp the
    warehouse cannot read), NULL keys left out (no key equals NULL), in byte order, one row
    each but for a source's duplicate keys; None when some source has no ``updated_at`` (an
    incremental read then reads everything)."""
    d = get_dialect(dialect)
    builder = _Builder(project, model, d, now, numeric_stamps, text_stamps)
    builder.check_apps()
    builder.collect_needs(changed_since)
    changed = builder.changed_keys(changed_since)
    if changed is None:
        return None
    k = changed.subquery("changed_keys")
    stmt = select(k.c[0]).where(k.c[0].is_not(None)).order_by(binary(k.c[0], d))
    return ModelQuery(stmt, (), (), builder.needs)


# [lo, hi) of key text in byte order; None: unbounded on that side
KeyRange = tuple[str | None, str | None]


def build_key_sample(project: Project, model: str, *, dialect: Dialect | str,
                     one_in: int) -> Select[Any]:
    """SQLite: the key texts of about one in ``one_in`` rows of the model's primary source,
    chosen at random, in byte order (NULLs left out): where a full read's ranges split."""
    d = get_dialect(dialect)
    src = project.primary_source(model)
    p = source_from(src, [src.key], "p1", d, project.settings.root)
    k = key_ref(p.c[src.key], d)
    sample = (select(k.label("k")).select_from(p)
              .where(func.random() % literal(one_in) == 0).subquery("s"))
    return select(sample.c.k).where(sample.c.k.is_not(None)).order_by(binary(sample.c.k, d))


def column_of(prop: Property) -> str:
    return prop.column or prop.name


def build_model_query(project: Project, model: str, *, now: datetime, dialect: Dialect | str,
                      changed_since: datetime | None = None,
                      numeric_stamps: frozenset[str] = frozenset(),
                      only_keys: list[str] | None = None,
                      text_stamps: frozenset[str] = frozenset(),
                      text_key: bool = False, unique_key: bool = False,
                      hash_kind: str = HASH_VALUES, key_slots: int = 0,
                      key_range: KeyRange | None = None) -> ModelQuery:
    """The query for ``model`` and how to read its rows (see the module docstring).
    ``numeric_stamps``: the "source.column" ``updated_at`` columns of a numeric type (epoch
    times), which the engine finds out on warehouses typed per column; ``only_keys``: just
    the records with these keys (key text). SQLite only: ``text_stamps``, the "source.column"
    ``updated_at`` columns seen to hold ISO text (the incremental read seeks their index);
    ``text_key``, the primary key column holds text and never NULL (ordered by itself);
    ``unique_key``, no two rows of the primary source share a key (no duplicates to order).
    ``key_slots``: the records whose key is one of that many bound parameters (KEY_SLOT), as
    an incremental read filters its changed keys. ``key_range``: the records whose key text
    is in [lo, hi) in byte order (None: unbounded), the last range with the keyless rows,
    as a full read is split (SqlWarehouse.stream_model)."""
    if model not in project.models:
        raise WarehouseError(f"model/{model} does not exist")
    return _Builder(project, model, get_dialect(dialect), now, numeric_stamps, text_stamps,
                    text_key, unique_key=unique_key).build(changed_since, only_keys,
                                                           hash_kind=hash_kind,
                                                           key_slots=key_slots,
                                                           key_range=key_range)
