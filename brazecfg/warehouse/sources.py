"""A source as a FROM clause: a (schema-qualified) table, a SQL query, or on DuckDB a data file.

Names are split on dots outside double quotes and each part is quoted by the dialect's own
rules, so ``analytics.users``, ``"My Schema".users`` and ``project.dataset.table`` all work.
Only the columns a query needs are declared on the clause; values never appear in it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import column, func, literal, select, table, text
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ColumnClause, quoted_name
from sqlalchemy.sql.selectable import FromClause

from brazecfg.errors import WarehouseError
from brazecfg.model.resources import Source

# DuckDB reads these files directly; the reader is chosen by the file's suffix.
_FILE_READERS: dict[str, str] = {
    ".csv": "read_csv_auto", ".csv.gz": "read_csv_auto", ".tsv": "read_csv_auto",
    ".parquet": "read_parquet",
    ".json": "read_json_auto", ".jsonl": "read_json_auto", ".ndjson": "read_json_auto",
}
# What SQLAlchemy's text() would take for a bind parameter (":name"); see _escape_colons.
_BIND_LIKE = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")


def split_name(name: str) -> list[tuple[str, bool]]:
    """``a."B c".d`` -> [("a", False), ("B c", True), ("d", False)]: parts and whether quoted."""
    parts: list[tuple[str, bool]] = []
    i, n = 0, len(name)
    while i <= n:
        if i < n and name[i] == '"':
            j, buf = i + 1, []
            while True:
                k = name.find('"', j)
                if k < 0:
                    raise ValueError(f"unbalanced double quote in table name {name!r}")
                buf.append(name[j:k])
                if name[k + 1:k + 2] == '"':  # "" inside quotes is a literal quote
                    buf.append('"')
                    j = k + 2
                    continue
                break
            parts.append(("".join(buf), True))
            i = k + 1
        else:
            k = name.find(".", i)
            k = n if k < 0 else k
            part = name[i:k].strip()
            if not part:
                raise ValueError(f"empty part in table name {name!r}")
            parts.append((part, False))
            i = k
        if i < n and name[i] != ".":
            raise ValueError(f"unexpected character after a quoted name in {name!r}")
        i += 1
    return parts


def data_file(source: Source, dialect: Dialect) -> tuple[str, str] | None:
    """(reader function, path) when ``source.table`` names a data file DuckDB can read."""
    if dialect.name != "duckdb" or not source.table:
        return None
    raw = source.table.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        raw = raw[1:-1]
    for suffix, reader in _FILE_READERS.items():
        if raw.lower().endswith(suffix):
            return reader, raw
    return None


def _escape_colons(sql: str) -> str:
    # A query source is the user's SQL, not a template: a ":name" inside it (in a string, or
    # a MySQL/Snowflake-specific syntax) must reach the warehouse as written.
    return _BIND_LIKE.sub(r"\\:\1", sql)


def source_from(source: Source, columns: Iterable[str], alias: str, dialect: Dialect,
                root: str) -> FromClause:
    """The source as ``<table|query|file> AS alias`` with ``columns`` declared."""
    # duckdb_engine quotes with PostgreSQL's reserved words, not DuckDB's (``at`` is reserved
    # there); DuckDB matches quoted names case-insensitively, so quoting everything is safe.
    force = True if dialect.name == "duckdb" else None
    cols: list[ColumnClause[Any]] = [column(quoted_name(c, quote=force))
                                     for c in dict.fromkeys(columns)]
    if source.query:
        return text(_escape_colons(source.query)).columns(*cols).subquery(alias)
    if not source.table:
        raise WarehouseError(f"source/{source.name} has neither a table nor a query")
    file = data_file(source, dialect)
    if file is not None:
        reader, path = file
        if "://" not in path and not Path(path).is_absolute():
            path = str(Path(root) / path)
        # The path is configuration, rendered as a properly escaped SQL string literal
        # (DuckDB table functions take no bound parameters).
        fn = getattr(func, reader)(literal(path, literal_execute=True))
        return select(*cols).select_from(fn.alias(f"{alias}_file")).subquery(alias)
    if dialect.name == "duckdb" and "(" in source.table:
        # A table function written by the user, e.g. read_parquet('events/*.parquet').
        return (text(f"SELECT * FROM {_escape_colons(source.table)}")  # noqa: S608
                .columns(*cols).subquery(alias))
    try:
        parts = split_name(source.table)
    except ValueError as exc:
        raise WarehouseError(f"source/{source.name}: {exc}") from None
    name, forced = parts[-1]
    schema: str | None = None
    if len(parts) == 2:
        schema = quoted_name(parts[0][0], quote=True if parts[0][1] else force)
    elif len(parts) > 2:
        # SQLAlchemy quotes a dotted schema as one identifier; render each part ourselves.
        prep = dialect.identifier_preparer
        schema = quoted_name(
            ".".join(prep.quote(quoted_name(p, quote=True if q else force))
                     for p, q in parts[:-1]),
            quote=False)
    tname = quoted_name(name, quote=True if forced else force)
    return table(tname, *cols, schema=schema).alias(alias)
