"""Filter and rule operators as SQL conditions, with values always bound as parameters.

NULL semantics: every condition is two-valued. A condition on a NULL value is false, for
every operator (``ne``, ``not_contains`` and ``not_within`` included), except ``not_exists``,
which is true exactly for NULL. So ``not_member`` of a group is the plain negation of
``member``, and a record with an unknown value is never in a group by accident.

Dates: when the value is a datetime, a date or an ISO 8601 string (``2024-01-01``,
``2024-01-01 10:00:00``, ``2024-01-01T10:00:00Z``, ``...+02:00``), ``eq ne gt gte lt lte``
compare as datetimes in UTC; ``within``/``not_within`` take a relative duration
(``"30 days"``, see ``dates.parse_relative``) and compare with ``now - duration``:

- ``within``: value >= now - duration (future dates count as within);
- ``not_within``: value < now - duration (NULL is false: combine with ``not_exists`` under
  ``match: any`` for "never or long ago").

How a warehouse reads a column as a datetime (``Dates.column``; the same for filters, group
rules and the incremental reads' ``updated_at``):

- SQLite ``datetime(col)``: ISO text with "T" or a space, optional fraction, ``Z`` or offset;
  a number (or a text of digits) is a Unix epoch time, in seconds, or in milliseconds from
  1e11 and microseconds from 1e14 (1e11 seconds is the year 5138), except that numbers up to
  5373484.5 are Julian day numbers as SQLite reads them; compared to the second. A value it
  cannot read is NULL (incremental reads then always read that row: a change is never lost).
- PostgreSQL and DuckDB ``CAST(col AS TIMESTAMP)`` in a UTC session (timestamp, timestamptz,
  date or ISO text; every session is put in UTC on connect, ``connect.py``). An ``updated_at``
  column of a numeric type is read as Unix epoch times like SQLite's (``Dates.epoch``; the
  engine looks up the column's type first).
- other dialects: the column as is against a UTC datetime, in a UTC session where the
  dialect has one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, and_, case, cast, false, func, literal_column, not_, or_, true
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import REAL, TIMESTAMP, BigInteger, Double

from brazecfg.warehouse.dates import SQLITE_FORMAT, as_datetime, parse_relative

OPS: tuple[str, ...] = (
    "eq", "ne", "gt", "gte", "lt", "lte", "contains", "not_contains", "starts_with", "in",
    "exists", "not_exists", "within", "not_within",
)
_ORDERED = {"eq", "ne", "gt", "gte", "lt", "lte"}


class Dates:
    """How one dialect compares datetimes; ``now`` is already naive UTC."""

    def __init__(self, dialect: Dialect, now: datetime) -> None:
        self.name = dialect.name
        self.now = now

    def column(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        if self.name == "sqlite":
            return sqlite_datetime(expr)
        if self.name in ("postgresql", "duckdb"):
            return cast(expr, TIMESTAMP())
        return expr

    def epoch(self, expr: ColumnElement[Any]) -> ColumnElement[Any]:
        """A numeric column of Unix epoch times (seconds, or milliseconds from 1e11 and
        microseconds from 1e14) as this dialect's UTC datetime; the column as is where the
        dialect has no conversion here. For columns known to be numeric (typed per column:
        PostgreSQL, DuckDB); SQLite's ``column`` tests each value itself."""
        if self.name == "sqlite":
            return sqlite_datetime(expr)
        n: ColumnElement[Any] = cast(expr, Double())
        if self.name == "postgresql":
            seconds = case((n >= literal_column("1e14"), n / literal_column("1e6")),
                           (n >= literal_column("1e11"), n / literal_column("1e3")), else_=n)
            return func.timezone(literal_column("'UTC'"), func.to_timestamp(seconds))
        if self.name == "duckdb":
            millis = case((n >= literal_column("1e14"), n / literal_column("1e3")),
                          (n >= literal_column("1e11"), n), else_=n * literal_column("1e3"))
            return func.epoch_ms(cast(millis, BigInteger()))
        return expr

    def value(self, value: datetime) -> Any:
        # SQLite keeps datetimes as text: compare with the text its datetime() produces.
        return value.strftime(SQLITE_FORMAT) if self.name == "sqlite" else value


def sqlite_datetime(expr: ColumnElement[Any]) -> ColumnElement[Any]:
    """``expr`` as SQLite's datetime text (see the module docstring): ISO text, Julian day
    numbers, and Unix epoch seconds, milliseconds or microseconds."""
    kind = func.typeof(expr)
    digits = and_(kind == literal_column("'text'"), expr != literal_column("''"),
                  expr.op("NOT GLOB")(literal_column("'*[^0-9.]*'")))
    num = case((kind.in_([literal_column("'integer'"), literal_column("'real'")]), expr),
               (digits, cast(expr, REAL())))
    epoch: ColumnElement[Any] = literal_column("'unixepoch'")
    return case(
        (num.is_(None), func.datetime(expr)),
        (num >= literal_column("1e14"), func.datetime(num / literal_column("1e6"), epoch)),
        (num >= literal_column("1e11"), func.datetime(num / literal_column("1e3"), epoch)),
        (or_(num > literal_column("5373484.5"), num < literal_column("0")),
         func.datetime(num, epoch)),
        else_=func.datetime(num))


def _contains(expr: ColumnElement[Any], value: str, dialect: str) -> ColumnElement[bool]:
    text_expr = cast(expr, String())
    if dialect in ("sqlite", "duckdb"):
        # instr is case-sensitive; SQLite's LIKE is not (for ASCII).
        return func.instr(text_expr, value) > 0
    if dialect == "postgresql":
        return func.strpos(text_expr, cast(value, String())) > 0
    return text_expr.contains(value, autoescape=True)


def _starts_with(expr: ColumnElement[Any], value: str, dialect: str) -> ColumnElement[bool]:
    text_expr = cast(expr, String())
    if dialect in ("sqlite", "duckdb", "postgresql"):
        return func.substr(text_expr, 1, len(value)) == cast(value, String())
    return text_expr.startswith(value, autoescape=True)


def condition(expr: ColumnElement[Any], op: str, value: Any, dates: Dates,
              ) -> ColumnElement[bool]:
    """``expr <op> value`` as a two-valued SQL condition. Raises ValueError on a bad op/value."""
    if op == "exists":
        return expr.is_not(None)
    if op == "not_exists":
        return expr.is_(None)
    if op in ("eq", "ne") and value is None:
        return expr.is_(None) if op == "eq" else expr.is_not(None)
    present = expr.is_not(None)
    if op in ("within", "not_within"):
        if not isinstance(value, str):
            raise ValueError(f"{op} takes a duration such as '30 days', not {value!r}")
        since = dates.value(dates.now - parse_relative(value))
        col = dates.column(expr)
        return and_(present, col >= since if op == "within" else col < since)
    if op in _ORDERED:
        when = as_datetime(value) if not isinstance(value, (int, float, bool)) else None
        left, right = (dates.column(expr), dates.value(when)) if when else (expr, value)
        cmp = {
            "eq": lambda: left == right, "ne": lambda: left != right,
            "gt": lambda: left > right, "gte": lambda: left >= right,
            "lt": lambda: left < right, "lte": lambda: left <= right,
        }[op]()
        if when is not None:
            # SQLite's datetime() of an unparseable value is NULL: keep the condition
            # two-valued by testing the converted value.
            present = left.is_not(None)
        return and_(present, cmp)
    if op in ("contains", "not_contains", "starts_with"):
        if not isinstance(value, str):
            raise ValueError(f"{op} takes a string, not {value!r}")
        if op == "starts_with":
            return and_(present, _starts_with(expr, value, dates.name))
        found = _contains(expr, value, dates.name)
        return and_(present, found if op == "contains" else not_(found))
    if op == "in":
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        values = [v for v in values if v is not None]
        if not values:
            return false()
        return and_(present, expr.in_(values))
    raise ValueError(f"unknown operator {op!r}; expected one of {', '.join(OPS)}")


def all_of(conds: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    return and_(*conds) if conds else true()
