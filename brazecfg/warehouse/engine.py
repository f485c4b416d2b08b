"""SqlWarehouse: the Warehouse protocol over a SQLAlchemy engine, for every supported dialect.

Rows are streamed: the query runs with ``stream_results``/``yield_per`` (a server-side cursor
on PostgreSQL, fetchmany elsewhere), so memory holds one batch whatever the model's size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import false, literal, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from brazecfg import redact
from brazecfg.errors import WarehouseError
from brazecfg.model.resources import App, Project
from brazecfg.warehouse.base import EventRow, ModelRow
from brazecfg.warehouse.compile import (
    ModelQuery,
    build_events_query,
    build_keys_query,
    build_model_query,
)
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


class SqlWarehouse:
    """A warehouse reached through SQLAlchemy. ``connect()`` builds it; ``close()`` frees it."""

    def __init__(self, app: App, project: Project, engine: Engine,
                 secrets: tuple[str, ...] = ()) -> None:
        self.app_name = app.name
        self.project = project
        self.engine = engine
        self._secrets = secrets

    def query(self, model: str, *, now: datetime,
              changed_since: datetime | None = None) -> ModelQuery:
        return build_model_query(self.project, model, now=now, dialect=self.engine.dialect,
                                 changed_since=changed_since)

    def stream_model(self, model: str, *, now: datetime, batch_size: int = 5000,
                     changed_since: datetime | None = None) -> Iterator[ModelRow]:
        """Every record of ``model`` ordered by key text (byte order), ``batch_size`` at a time.

        ``now`` anchors relative dates. ``changed_since`` (incremental reads): when every source
        the model reads declares ``updated_at``, only records with a row in some source whose
        ``updated_at >= changed_since`` are returned (their aggregates still cover all their
        rows); if any source lacks ``updated_at`` it is ignored and every record is returned.
        An incremental read says nothing about records it does not return: a caller must not
        take them as deleted.

        The query is built here (configuration errors raise at once) and runs on the first
        ``next()``.
        """
        query = self.query(model, now=now, changed_since=changed_since)
        return self._rows(model, query, batch_size)

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

    def stream_keys(self, model: str, *, batch_size: int = 20000) -> Iterator[str]:
        """Every record key of ``model``, as text in byte order (no property is computed)."""
        primary = self.project.primary_source(model)
        stmt = build_keys_query(self.project, model, dialect=self.engine.dialect)
        query = ModelQuery(stmt, (), (), {primary.name: {primary.key: [primary.ref]}})
        return self._stream(f"model/{model}", query, batch_size, lambda row: str(row[0]))

    def _rows(self, model: str, query: ModelQuery, batch_size: int) -> Iterator[ModelRow]:
        n = len(query.properties)

        def record(row: Any) -> ModelRow:
            key = row[0]
            return ModelRow(
                key="" if key is None else str(key),
                values=dict(zip(query.properties, row[1:n + 1], strict=True)),
                groups=frozenset(g for g, flag in zip(query.groups, row[n + 1:], strict=True)
                                 if flag),
            )

        return self._stream(f"model/{model}", query, batch_size, record)

    def _stream(self, what: str, query: ModelQuery, batch_size: int,
                make: Callable[[Any], T]) -> Iterator[T]:
        try:
            conn = self.engine.connect()
        except SQLAlchemyError as exc:
            raise self._error(f"cannot connect to read {what}", exc) from None
        with conn:
            conn = conn.execution_options(stream_results=True, yield_per=batch_size)
            try:
                result = conn.execute(query.select)
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
        return WarehouseError(f"app/{self.app_name}: {what}: "
                              f"{driver_message(exc, self._secrets)}")

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


def _at(resource: Any, key: str) -> str:
    where = resource.where(key) if hasattr(resource, "where") else None
    return f"{where}: " if where is not None and where.line else ""


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
