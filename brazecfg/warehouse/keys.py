"""Key identity in SQL: one canonical text for a key, compared and sorted in byte order.

A record key becomes a Braze ``external_id`` (a string), and the same key appears on several
sides of a read: the model's primary key, the key of every related source joined to it, an
event's own ``key`` and its ``user``, and the filter that keeps events to records of the model.
If any two of them rendered or compared a key differently, a join would give one user another's
rows, an event would reach a phantom user, or the merge with the ledger would see keys out of
order and take a live user for a deleted one. So every one of them is built here.

**The canonical key text** (``key_text``):

- text is taken byte for byte (``'01'`` stays ``'01'``; ``'Bob'`` and ``'bob'`` are two keys);
- an integer is written in decimal (``1`` -> ``'1'``);
- a float or decimal that is a whole number is written as that integer (``1.0`` -> ``'1'``,
  ``1.00`` -> ``'1'``), so reloading an integer key column as REAL or DECIMAL changes nothing;
  floats only within the 64-bit integer range (beyond it a float is no longer an exact id);
- any other number (``1.5``, a float past 2**63, NaN) is no key: ``key_text`` is NULL, so it
  matches nothing, and ``bad_key`` gives its text so the model's read can refuse it with an
  error naming the source and column (``engine.SqlWarehouse``).

On SQLite (values are typed per row) and on PostgreSQL and DuckDB (typed per column) the type
is tested in SQL (``typeof``/``pg_typeof``), so joins, filters and ``ORDER BY`` all see the
canonical text. Other dialects get ``CAST(key AS VARCHAR)``: there, make a float key column
an integer or text in the warehouse (a ``query`` source) if it is one.

SQLite type affinity would also compare ``'01'`` equal to ``1`` in a join: comparing canonical
texts (never the raw columns) keeps ``'01'`` and ``1`` apart.

**Binary collation** (``binary``): every ``ORDER BY``, ``GROUP BY``, ``PARTITION BY``, join
condition and ``IN`` on a key names an explicit byte-order collation, because a column's own
collation survives ``CAST`` (a SQLite ``COLLATE NOCASE`` column, a PostgreSQL ICU collation, a
DuckDB ``NOCASE`` column, case-insensitive Snowflake, BigQuery, SQL Server and Redshift
columns): SQLite ``BINARY``, PostgreSQL ``"C"``, DuckDB ``"binary"``, MySQL/MariaDB
``utf8mb4_bin``, SQL Server ``Latin1_General_BIN2``, Snowflake ``COLLATE(x, 'utf8')``,
BigQuery ``COLLATE(x, '')``, Redshift ``COLLATE(x, 'case_sensitive')``. UTF-8 byte order is
code point order, which is how Python compares the ``str`` keys the ledger is merged with.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, and_, case, cast, collate, func, literal_column, not_, null
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnElement, quoted_name
from sqlalchemy.types import BigInteger, Double, Numeric

# Collation names used with ``expr COLLATE name``.
_COLLATE: dict[str, str] = {
    "sqlite": "BINARY",
    "postgresql": "C",
    "duckdb": "binary",
    "mysql": "utf8mb4_bin",
    "mariadb": "utf8mb4_bin",
    "mssql": "Latin1_General_BIN2",
}
# Dialects whose binary collation is the function form ``COLLATE(expr, 'spec')``.
_COLLATE_FUNCTION: dict[str, str] = {
    "snowflake": "utf8",
    "bigquery": "",
    "redshift": "case_sensitive",
}
_INT64 = "9223372036854775807"  # floats beyond it are not exact integers any more


def _sql(text: str) -> ColumnElement[Any]:
    """A constant written into the SQL, never a bound parameter: the same expression appears
    in SELECT and GROUP BY, and a warehouse matches the two only when their text is equal."""
    return literal_column(text)


def _str(text: str) -> ColumnElement[Any]:
    return _sql("'" + text.replace("'", "''") + "'")


def binary(expr: ColumnElement[Any], dialect: Dialect) -> ColumnElement[Any]:
    """``expr`` (text) with the dialect's explicit byte-order collation."""
    name = dialect.name
    if name in _COLLATE:
        # "C" and "binary" must be quoted (case, keyword); the others must not be.
        quote = name in ("postgresql", "duckdb")
        return collate(expr, quoted_name(_COLLATE[name], quote=quote))
    if name in _COLLATE_FUNCTION:
        return func.collate(expr, _str(_COLLATE_FUNCTION[name]), type_=String())
    return expr


def key_text(expr: ColumnElement[Any], dialect: Dialect) -> ColumnElement[Any]:
    """The canonical text of a key (see the module docstring); NULL for NULL and for a number
    that is no key. Not collated: use ``key_ref`` to compare, group or sort."""
    name = dialect.name
    as_text = cast(expr, String())
    kind: ColumnElement[Any]
    if name == "sqlite":
        kind = func.typeof(expr)
        as_int = cast(expr, BigInteger())
        return case(
            (kind == _str("integer"), as_text),
            (kind == _str("real"), case((_sqlite_whole(expr), cast(as_int, String())))),
            else_=as_text)
    if name == "postgresql":
        kind = cast(func.pg_typeof(expr), String())
        n = cast(as_text, Numeric())
        return case(
            (kind.in_([_str("real"), _str("double precision")]),
             case((_whole_float(n), cast(func.trunc(n), String())))),
            (kind == _str("numeric"), case((n == func.trunc(n), cast(func.trunc(n), String())))),
            else_=as_text)
    if name == "duckdb":
        kind = func.typeof(expr)
        d: ColumnElement[Any] = cast(as_text, Double())
        stripped = func.regexp_replace(as_text, _str(r"\.0*$"), _str(""))
        return case(
            (kind.in_([_str("FLOAT"), _str("DOUBLE")]),
             case((_whole_float(d), cast(cast(func.trunc(d), BigInteger()), String())))),
            (kind.like(_str("DECIMAL%")),
             case((not_(func.contains(stripped, _str("."))), stripped))),
            else_=as_text)
    return as_text


def bad_key(expr: ColumnElement[Any], dialect: Dialect) -> ColumnElement[Any]:
    """The key's own text when it is a number that is no key (``key_text`` is NULL though the
    value is not); NULL otherwise. Lets a read refuse such a key with a located error."""
    if dialect.name not in ("sqlite", "postgresql", "duckdb"):
        return null()
    return case((and_(expr.is_not(None), key_text(expr, dialect).is_(None)),
                 cast(expr, String())))


def key_ref(expr: ColumnElement[Any], dialect: Dialect) -> ColumnElement[Any]:
    """The canonical key text in byte-order collation: what joins, filters and sorts use."""
    return binary(key_text(expr, dialect), dialect)


def key_order(key: ColumnElement[Any], dialect: Dialect) -> list[ColumnElement[Any]]:
    """ORDER BY a key text in byte order, NULL keys last (same place on every dialect)."""
    return [case((key.is_(None), 1), else_=0), binary(key, dialect)]


def _sqlite_whole(expr: ColumnElement[Any]) -> ColumnElement[bool]:
    return and_(expr == cast(expr, BigInteger()), func.abs(expr) < _sql(_INT64))


def _whole_float(n: ColumnElement[Any]) -> ColumnElement[bool]:
    # The bound also excludes NaN and the infinities (both sort above every number).
    return and_(n == func.trunc(n), func.abs(n) < _sql(_INT64))
