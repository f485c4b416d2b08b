"""The state's tables, as SQLAlchemy Core, and the step-by-step migrations between versions.

Every backend has the same six tables (in its schema, or with a name prefix where there are
no schemas): meta (version, state id, generation, key check, watermarks, bindings), records,
events, failures, intents (creates sent but not yet confirmed) and lease (the lock). Keys are
strings compared in byte order; on PostgreSQL their columns use the "C" collation so the
primary-key index is in that order. Column names are always quoted ("at" is a DuckDB keyword).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import quoted_name

# Today's (v1) local DDL, kept so a new local ledger is built exactly as v1 and then
# migrated: every run exercises the migration path that old ledgers take.
V1_SQLITE = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    destination TEXT NOT NULL, external_id TEXT NOT NULL, fields TEXT NOT NULL,
    groups TEXT NOT NULL, confirmed_at TEXT NOT NULL,
    PRIMARY KEY (destination, external_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    destination TEXT NOT NULL, stream TEXT NOT NULL, row_key TEXT NOT NULL,
    state TEXT NOT NULL, reason TEXT, at TEXT NOT NULL,
    PRIMARY KEY (destination, stream, row_key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS failures (
    destination TEXT NOT NULL, external_id TEXT NOT NULL, reason TEXT NOT NULL,
    failed_at TEXT NOT NULL, PRIMARY KEY (destination, external_id)) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Tables:
    meta: Table
    records: Table
    events: Table
    failures: Table
    intents: Table
    lease: Table
    metadata: MetaData

    @classmethod
    def build(cls, schema: str | None, prefix: str, dialect: str) -> Tables:
        # PostgreSQL: keys in the "C" collation, so the primary key index is in byte order.
        def key() -> String:
            return String(collation="C") if dialect == "postgresql" else String()

        md = MetaData(schema=schema)

        def t(name: str, *cols: Column[Any]) -> Table:
            return Table(prefix + name, md, *cols)

        # SQLite (v4): the compact layout of packing.py, no confirmed_at and no groups (the
        # migration builds that table with its own DDL; the types here only name the
        # columns; "groups" stays named for reading an unmigrated state)
        confirmed = [] if dialect == "sqlite" else [
            _col("confirmed_at", String, nullable=False)]
        return cls(
            meta=t("meta", _col("key", key(), primary_key=True), _col("value", Text, nullable=False)),
            records=t("records", _col("destination", key(), primary_key=True),
                      _col("external_id", key(), primary_key=True),
                      _col("fields", Text, nullable=False), _col("groups", Text, nullable=False),
                      *confirmed,
                      # v4: the warehouse's record hash when Braze confirmed the record
                      _col("row_hash", LargeBinary)),
            events=t("events", _col("destination", key(), primary_key=True),
                     _col("stream", key(), primary_key=True),
                     _col("row_key", key(), primary_key=True),
                     _col("state", String, nullable=False), _col("reason", Text),
                     _col("at", String, nullable=False),
                     # v3: what settling needs to find a row in Braze's export counts
                     _col("user", key()), _col("name", Text), _col("weight", Integer),
                     _col("time", String)),
            failures=t("failures", _col("destination", key(), primary_key=True),
                       _col("external_id", key(), primary_key=True),
                       _col("reason", Text, nullable=False),
                       _col("failed_at", String, nullable=False)),
            intents=t("intents", _col("destination", key(), primary_key=True),
                      _col("external_id", key(), primary_key=True),
                      _col("at", String, nullable=False)),
            lease=t("lease", _col("name", key(), primary_key=True), _col("lock_id", String),
                    _col("owner", Text), _col("fence", Integer, nullable=False),
                    _col("acquired_ms", BigInteger), _col("expires_ms", BigInteger)),
            metadata=md,
        )

    def all(self) -> list[Table]:
        return [self.meta, self.records, self.events, self.failures, self.intents, self.lease]


def _col(name: str, *args: Any, **kwargs: Any) -> Column[Any]:
    """A quoted column: "at", "key", "groups" are keywords in some dialect (DuckDB: at)."""
    return Column(quoted_name(name, True), *args, **kwargs)


def _migrate_1_to_2(conn: Connection, t: Tables) -> None:
    """v2: a state id (the lockfile binds to it), the lease row, create intents."""
    t.intents.create(conn, checkfirst=True)
    t.lease.create(conn, checkfirst=True)
    if conn.execute(select(t.meta.c.value).where(t.meta.c.key == "state_id")).first() is None:
        conn.execute(insert(t.meta).values(key="state_id", value=str(uuid.uuid4())))


EVENT_V3_COLUMNS = (("user", "TEXT"), ("name", "TEXT"), ("weight", "INTEGER"), ("time", "TEXT"))


def _migrate_2_to_3(conn: Connection, t: Tables) -> None:
    """v3: event rows remember the user, name, weight and time they were sent with, so
    `apply --settle-unknown` can compare them with Braze's own counts (old rows: NULL)."""
    prep = conn.dialect.identifier_preparer
    table = prep.format_table(t.events)
    # The columns there are, from a query's own description: works on every dialect (the
    # inspector asks catalogs that DuckDB lacks).
    have = {str(k) for k in conn.execute(text(f"SELECT * FROM {table} WHERE 1 = 0")).keys()}
    for name, sql_type in EVENT_V3_COLUMNS:
        if name not in have:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {prep.quote_identifier(name)} "
                              f"{sql_type}"))


RECORDS_V4_SQLITE = """CREATE TABLE {table} ("destination" INTEGER NOT NULL,
    "external_id" TEXT NOT NULL, "fields" BLOB NOT NULL, "row_hash" BLOB,
    PRIMARY KEY ("destination", "external_id")) WITHOUT ROWID"""


def _migrate_3_to_4(conn: Connection, t: Tables) -> None:
    """v4: records keep the warehouse's record hash (``row_hash``, NULL for old records: they
    are read once more and get one). On SQLite the records table is rebuilt in the compact
    layout (state/packing.py: the same hash values, about 80 bytes a record instead of 315);
    elsewhere the column is added and field hashes stay JSON text."""
    prep = conn.dialect.identifier_preparer
    table = prep.format_table(t.records)
    have = {str(k) for k in conn.execute(text(f"SELECT * FROM {table} WHERE 1 = 0")).keys()}
    if conn.dialect.name != "sqlite":
        if "row_hash" not in have:
            blob = {"postgresql": "BYTEA"}.get(conn.dialect.name, "BLOB")
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN "
                              f"{prep.quote_identifier('row_hash')} {blob}"))
        return
    from brazecfg.state.packing import LEGACY, Codec

    codec = Codec()
    name = t.records.name
    new = prep.quote_identifier(name + "_v4")
    if t.records.schema:
        new = f"{prep.quote_schema(t.records.schema)}.{new}"
    raw = conn.connection.driver_connection
    assert raw is not None
    hashed = "row_hash" in have
    row_hash = '"row_hash"' if hashed else "NULL"
    rows = raw.execute(f'SELECT "destination", "external_id", "fields", "groups", {row_hash} '
                       f'FROM {table} ORDER BY "destination", "external_id"')
    raw.execute(RECORDS_V4_SQLITE.format(table=new))

    loads = json.loads  # v1-v3: field hashes and groups as JSON text
    raw.executemany(f"INSERT INTO {new} VALUES (?, ?, ?, ?)", (
        (codec.dest_id(d, create=True), k, codec.pack(d, loads(f), loads(g)), h)
        for d, k, f, g, h in rows))
    raw.execute(f"DROP TABLE {table}")
    raw.execute(f"ALTER TABLE {new} RENAME TO {prep.quote_identifier(name)}")
    entries = codec.dump()
    conn.execute(t.meta.delete().where(t.meta.c.key.in_([*LEGACY, *(k for k, _ in entries)])))
    for key, value in entries:
        conn.execute(insert(t.meta).values(key=key, value=value))


# Step by step: MIGRATIONS[n] takes a version-n state to n+1, in one transaction.
MIGRATIONS = {1: _migrate_1_to_2, 2: _migrate_2_to_3, 3: _migrate_3_to_4}


