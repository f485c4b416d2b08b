"""connect(): an app of type sqlite, duckdb, postgres or sqlalchemy -> a Warehouse.

All four are one implementation over SQLAlchemy (engine.SqlWarehouse); this module only
turns an app's options into an engine and checks it can connect. Errors name the app and
where it points, never the password (scrubbed from URLs and from driver messages).

Options by type:

- ``sqlite``: ``path`` (relative to the project root). Opened read-only: planning writes nothing.
  ``seed``: a SQL file that builds the database when ``path`` does not exist yet (examples).
- ``duckdb``: ``path`` (relative to the project root, or ``:memory:``). Files are opened
  read-only; relative data-file paths in sources resolve against the project root.
  ``memory_limit`` (default ``256MB``): DuckDB runs inside the brazecfg process and sorts the
  model there, by default with up to 80% of the machine's memory; with a limit and a private
  temporary directory (created on connect, removed on close) it spills to disk instead, so
  the process stays flat whatever the model's size. ``threads`` (default: one per 256MB of
  ``memory_limit``, at most one per core): each thread sorts and joins its own share within
  the one limit, so more threads need more memory (``duckdb_threads``).
- ``postgres``: ``host``, ``port`` (5432), ``database``, ``user``, ``password``, ``sslmode``,
  ``connect_timeout`` (10 s); or ``url``. Driver: psycopg 3.
- ``sqlalchemy``: ``url`` (any dialect; install its driver, e.g. ``brazecfg[snowflake]``),
  optional ``connect_args``.

Every session runs in UTC (PostgreSQL, Redshift, MySQL/MariaDB, Snowflake and DuckDB are told
so on connect, whatever the app's type), so a ``timestamptz`` or ``TIMESTAMP_LTZ`` column is
read as the same instant everywhere, and incremental reads compare like with like.
"""

from __future__ import annotations

import os
import re
import stat
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from brazecfg.errors import WarehouseError
from brazecfg.model.resources import App, Project
from brazecfg.scratch import Scratch
from brazecfg.warehouse.base import Warehouse
from brazecfg.warehouse.engine import (
    SQLITE_CACHE_KIB,
    SqlWarehouse,
    driver_message,
    limit_sqlite_heap,
    scrub,
)

DUCKDB_MEMORY_LIMIT = "256MB"
# DuckDB's own size syntax; the app schema (defs.json, duckdb_options) checks the same.
# A size as DuckDB reads one ("256MB", "1.5GiB") and renders one ("244.1 MiB").
_DUCKDB_SIZE = re.compile(r"^([0-9]+(?:[.][0-9]+)?)\s*([KMGT]I?)?B$", re.IGNORECASE)
# One statement per backend that puts the session in UTC (BigQuery and SQLite always are).
_UTC_SESSION = {
    "postgresql": "SET TIME ZONE 'UTC'",
    "redshift": "SET TIME ZONE 'UTC'",
    "mysql": "SET time_zone = '+00:00'",
    "mariadb": "SET time_zone = '+00:00'",
    "snowflake": "ALTER SESSION SET TIMEZONE = 'UTC'",
}
# DuckDB opens a file once per process, with one configuration. When the state lives in a
# DuckDB warehouse and apply holds it open for writing, the warehouse must open it the same
# way (it still only reads); brazecfg.state adds such paths here.
DUCKDB_READ_WRITE: set[str] = set()

_EXTRAS = {"snowflake": "snowflake", "bigquery": "bigquery", "redshift": "redshift",
           "mysql": "mysql", "postgresql": "postgres", "duckdb": "duckdb"}
# A missing driver module (its top-level name) -> the extra that installs it.
_MODULE_EXTRAS = {"pymysql": "mysql", "MySQLdb": "mysql", "psycopg": "postgres",
                  "psycopg2": "postgres", "duckdb": "duckdb", "duckdb_engine": "duckdb",
                  "snowflake": "snowflake", "sqlalchemy_bigquery": "bigquery",
                  "google": "bigquery", "sqlalchemy_redshift": "redshift",
                  "redshift_connector": "redshift"}


def connect(app: App, project: Project) -> Warehouse:
    """A connected warehouse for ``app``. Raises WarehouseError (naming the app, never the
    password) when the options are wrong, the driver is missing or the server refuses."""
    options: Mapping[str, Any] = app.options or {}
    url: URL | None = None
    cleanup: Callable[[], None] = _nothing
    secrets: tuple[str, ...] = tuple(str(options[k]) for k in ("password",) if options.get(k))
    try:
        url, kwargs, hint = _engine_args(app, options, project.settings.root)
        if url.password:
            secrets = (*secrets, str(url.password))
        backend = url.get_backend_name()
        engine = create_engine(url, **kwargs)
        if backend == "duckdb":
            temp_dir, cleanup = DUCKDB_SPILL.acquire(str(url.database or ""))
            event.listen(engine, "connect",
                         _duckdb_session(_memory_limit(app, options), temp_dir,
                                         duckdb_threads(app, options)))
        elif backend == "sqlite":
            event.listen(engine, "connect", _sqlite_session)
        elif backend in _UTC_SESSION:
            event.listen(engine, "connect", _utc_session(_UTC_SESSION[backend]))
    except WarehouseError:
        cleanup()
        raise
    except NoSuchModuleError as exc:
        cleanup()
        backend = url.get_backend_name() if url is not None else "?"
        extra = _EXTRAS.get(backend, backend)
        raise WarehouseError(
            f"app/{app.name}: no SQLAlchemy driver for {backend!r} ({scrub(str(exc), secrets)}); "
            f"install it, e.g. pip install 'brazecfg[{extra}]'") from None
    except (ArgumentError, ValueError):
        cleanup()
        # The parser's own message quotes pieces of the URL, which may be pieces of a
        # password (an unencoded '@', ':' or '/' splits it): never show it.
        raise WarehouseError(
            f"app/{app.name}: invalid connection options: the URL or port cannot be parsed; "
            "check its form (driver://user:password@host:port/database) and percent-encode "
            "'@', ':' and '/' inside the user name or password") from None
    except ImportError as exc:
        cleanup()
        missing = (exc.name or "").split(".")[0] if isinstance(exc, ModuleNotFoundError) else ""
        if missing:
            backend = url.get_backend_name() if url is not None else ""
            extra_name = _MODULE_EXTRAS.get(missing) or _EXTRAS.get(backend)
            how = (f"pip install 'brazecfg[{extra_name}]'" if extra_name
                   else f"pip install the package that provides {missing!r}")
            raise WarehouseError(f"app/{app.name}: the driver package {missing!r} is not "
                                 f"installed; install it: {how}") from None
        raise WarehouseError(f"app/{app.name}: invalid connection options: "
                             f"{scrub(str(exc), secrets)}") from None
    where = url.render_as_string(hide_password=True)
    try:
        with engine.connect():
            pass
    except (SQLAlchemyError, OSError) as exc:
        engine.dispose()
        cleanup()
        raise WarehouseError(
            f"cannot connect to app/{app.name} ({scrub(where, secrets)}): "
            f"{driver_message(exc, secrets)}. Check {hint}.") from None
    return SqlWarehouse(app, project, engine, secrets, on_close=cleanup)


def _nothing() -> None:
    return None


class _SpillDirectories:
    """Where DuckDB spills. ``temp_directory`` is a database instance's setting, and a
    process has one instance per file, which every engine on it shares (the warehouse's, the
    state's own when it lives there): they share one directory, removed when the last of
    them closes. A directory removed while another engine still used the instance failed
    that engine's next spill ("Cannot open file .../duckdb_temp_..."). An in-memory database
    is an instance of its own, with a directory of its own (two instances spilling into one
    directory would give their files the same names)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dirs: dict[str, tuple[Scratch, int]] = {}

    def acquire(self, database: str) -> tuple[Path, Callable[[], None]]:
        """The directory for ``database`` (a file's path) and what releases it, once."""
        if database in ("", ":memory:"):
            own = Scratch("duckdb")
            return own.path, own.cleanup
        with self._lock:
            scratch, users = self._dirs.get(database) or (Scratch("duckdb"), 0)
            self._dirs[database] = (scratch, users + 1)
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                held, left = self._dirs[database]
                if left > 1:
                    self._dirs[database] = (held, left - 1)
                    return
                del self._dirs[database]
            held.cleanup()

        return scratch.path, release


DUCKDB_SPILL = _SpillDirectories()


def spill_to(dbapi_connection: Any, temp_dir: Path) -> None:
    """Point a new DuckDB connection's instance at ``temp_dir``, unless it is there already
    or has begun spilling elsewhere: DuckDB refuses to change the setting once the directory
    was used, even to the same path, and that refusal failed every later connection
    ("Cannot switch temporary directory after the current one has been used": plans of 3M
    users with the state in DuckDB)."""
    current = dbapi_connection.execute("SELECT current_setting('temp_directory')").fetchone()[0]
    if current == str(temp_dir):
        return
    path = str(temp_dir).replace("'", "''")
    try:
        dbapi_connection.execute(f"SET temp_directory = '{path}'")
    except Exception as exc:  # noqa: BLE001 - duckdb's NotImplementedException
        if "Cannot switch temporary directory" not in str(exc):
            raise


def _memory_limit(app: App, options: Mapping[str, Any]) -> str:
    limit = str(options.get("memory_limit") or DUCKDB_MEMORY_LIMIT).strip()
    if not _DUCKDB_SIZE.match(limit):
        raise WarehouseError(f"app/{app.name}: options.memory_limit {limit!r} is not a size; "
                             "write a number and a unit, e.g. 256MB or 2GB")
    return limit


# The share of memory_limit each DuckDB thread gets by default (duckdb_threads): 256MB, in
# DuckDB's own units (MB = 10^6 bytes, MiB = 2^20).
DUCKDB_MEMORY_PER_THREAD = 256 * 10 ** 6
_UNITS = {"": 1, "K": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12,
          "KI": 2 ** 10, "MI": 2 ** 20, "GI": 2 ** 30, "TI": 2 ** 40}


def duckdb_bytes(size: str) -> float | None:
    """Bytes in a DuckDB size: one written in options.memory_limit or one DuckDB renders
    (``current_setting('memory_limit')``: "244.1 MiB", "12 bytes"); None for anything else."""
    text = size.strip()
    if text.endswith(" bytes"):
        text = text[:-len(" bytes")] + "B"
    m = _DUCKDB_SIZE.match(text)
    return None if m is None else float(m.group(1)) * _UNITS[(m.group(2) or "").upper()]


def duckdb_threads(app: App, options: Mapping[str, Any]) -> int:
    """The threads DuckDB runs on: ``options.threads``, else one per
    DUCKDB_MEMORY_PER_THREAD of the memory limit (at least one, at most the cores). The
    limit holds for all threads together, and each sorts and joins its own share: with the
    default 256MB, 10M users (30M purchases) ran out of memory on 2 threads and finished on
    one (bench/README.md); at 1M one thread costs the plan little, its Python being the
    bottleneck."""
    threads = options.get("threads")
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise WarehouseError(f"app/{app.name}: options.threads must be a whole number "
                                 "of at least 1")
        return threads
    size = duckdb_bytes(_memory_limit(app, options))
    assert size is not None  # _memory_limit checked it
    return max(1, min(os.cpu_count() or 1, int(size // DUCKDB_MEMORY_PER_THREAD)))


def _engine_args(app: App, options: Mapping[str, Any], root: str
                 ) -> tuple[URL, dict[str, Any], str]:
    """(url, create_engine keyword arguments, what to check when connecting fails)."""
    match app.type:
        case "sqlite":
            path = _local_path(app, options, root)
            # read-only: plan is pure, and a typo'd path must not create an empty database
            url = make_url("sqlite://").set(database=f"file:{path}",
                                            query={"mode": "ro", "uri": "true"})
            return url, {}, f"options.path of app/{app.name} (resolved to {path})"
        case "duckdb":
            # data files named by sources (read_csv_auto('data/x.csv')) resolve from the root
            config = {"file_search_path": str(Path(root).resolve())}
            if str(options.get("path", ":memory:")) == ":memory:":
                return (make_url("duckdb:///:memory:"), {"connect_args": {"config": config}},
                        f"options.path of app/{app.name}")
            path = _local_path(app, options, root)
            args = {"connect_args": {"read_only": str(path) not in DUCKDB_READ_WRITE,
                                     "config": config}}
            return (make_url("duckdb://").set(database=str(path)), args,
                    f"options.path of app/{app.name} (resolved to {path}) and that no other "
                    "process holds the file open for writing")
        case "postgres":
            url = _postgres_url(options)
            connect_args: dict[str, Any] = {
                "connect_timeout": int(options.get("connect_timeout", 10)),
                # relative dates are computed in UTC: make the session agree
                "options": "-c TimeZone=UTC",
            }
            return (url, {"connect_args": connect_args},
                    "host, port, database, user and password (or url), that the server is "
                    "running and accepts connections from this machine, and sslmode")
        case "sqlalchemy":
            if not options.get("url"):
                raise WarehouseError(f"app/{app.name}: a sqlalchemy app needs options.url")
            url = make_url(str(options["url"]))
            kwargs: dict[str, Any] = {}
            if options.get("connect_args"):
                kwargs["connect_args"] = dict(options["connect_args"])
            return url, kwargs, "options.url (driver, host, credentials, database)"
        case _:
            raise WarehouseError(f"app/{app.name} has type {app.type!r}, which is not a "
                                 "warehouse (sqlite, duckdb, postgres, sqlalchemy)")


def _local_path(app: App, options: Mapping[str, Any], root: str) -> Path:
    if not options.get("path"):
        raise WarehouseError(f"app/{app.name}: options.path is required for a {app.type} app")
    path = Path(str(options["path"]))
    if not path.is_absolute():
        path = Path(root) / path
    try:
        path = path.resolve()
        exists = path.is_file()
        if not exists and options.get("seed"):
            _seed(app, path, Path(root) / str(options["seed"]), Path(root))
            exists = path.is_file()
    except OSError as exc:  # a name too long, a loop of links, a folder we may not enter
        raise WarehouseError(f"app/{app.name}: options.path cannot be used: "
                             f"{exc.strerror or type(exc).__name__}; check options.path "
                             "(relative paths start at the project root)") from None
    if not exists:
        raise WarehouseError(f"app/{app.name}: database file {path} does not exist; check "
                             f"options.path (relative paths start at the project root)")
    return path


MAX_SEED_BYTES = 64 * 1024 * 1024


def _read_seed(app: App, script: Path, root: Path) -> str:
    """The seed's SQL: a regular file inside the project folder, at most MAX_SEED_BYTES.
    A config author must not make brazecfg read /dev/zero, a FIFO or /etc/passwd."""
    where = f"app/{app.name}: options.seed {script.name}"
    try:
        real = script.resolve()
        if not real.is_relative_to(root.resolve()):
            raise WarehouseError(f"{where} is outside the project folder; keep the seed SQL "
                                 "in the project")
        st = real.stat()
        if not stat.S_ISREG(st.st_mode):
            raise WarehouseError(f"{where} is not a regular file; give a SQL file")
        if st.st_size > MAX_SEED_BYTES:
            raise WarehouseError(f"{where} is larger than {MAX_SEED_BYTES // 2**20} MiB; "
                                 "build big databases outside brazecfg")
        with real.open("rb") as f:
            data = f.read(MAX_SEED_BYTES + 1)
    except OSError as exc:
        raise WarehouseError(f"app/{app.name}: cannot read options.seed {script}: "
                             f"{exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_SEED_BYTES:
        raise WarehouseError(f"{where} is larger than {MAX_SEED_BYTES // 2**20} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise WarehouseError(f"{where} is not UTF-8 text") from None


def _unquoted(message: str) -> str:
    """A driver message without the text it quotes (``near "TOKEN": syntax error``): the
    quoted text is a piece of the file, which is not ours to print."""
    return _QUOTED.sub("…", message)


_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")


def _seed(app: App, path: Path, script: Path, root: Path) -> None:
    """Build a missing example database from checked-in SQL (``options.seed``), so example
    projects need no binary in git. Never touches an existing database."""
    sql = _read_seed(app, script, root)
    tmp = path.with_name(f".{path.name}.seeding")
    tmp.unlink(missing_ok=True)
    try:
        if app.type == "duckdb":
            import duckdb

            duck = duckdb.connect(str(tmp))
            duck.execute(sql)
            duck.close()
        else:
            import sqlite3

            lite = sqlite3.connect(tmp)
            lite.executescript(sql)
            lite.commit()
            lite.close()
        tmp.replace(path)
    except Exception as exc:  # the seed is user SQL: report, don't crash
        tmp.unlink(missing_ok=True)
        raise WarehouseError(f"app/{app.name}: options.seed {script.name} failed: "
                             f"{scrub(_unquoted(str(exc)))}") from None


def _postgres_url(options: Mapping[str, Any]) -> URL:
    if options.get("url"):
        url = make_url(str(options["url"]))
        if url.drivername in ("postgres", "postgresql"):
            url = url.set(drivername="postgresql+psycopg")
        return url
    query: dict[str, str] = {}
    host = options.get("host")
    if host and str(host).startswith("/"):  # a unix socket directory
        query["host"] = str(host)
        host = None
    if options.get("sslmode"):
        query["sslmode"] = str(options["sslmode"])
    port = options.get("port")
    return URL.create(
        "postgresql+psycopg",
        username=options.get("user"),
        password=options.get("password"),
        host=host,
        port=int(port) if port else None,
        database=options.get("database"),
        query=query,
    )


def _duckdb_session(memory_limit: str, temp_dir: Path, threads: int
                    ) -> Callable[[Any, Any], None]:
    """Set up each DuckDB connection: a memory limit and its threads, a temporary
    directory of our own to spill to, and UTC."""
    def setup(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"SET memory_limit = '{memory_limit}'")
        dbapi_connection.execute(f"SET threads = {int(threads)}")
        spill_to(dbapi_connection, temp_dir)
        # every query brazecfg sends says its ORDER BY: keeping scan order only costs memory
        dbapi_connection.execute("SET preserve_insertion_order = false")
        # DuckDB draws a progress bar on stdout for a query over 2 s: into a JSON plan
        dbapi_connection.execute("SET enable_progress_bar = false")
        # Timestamps with a time zone are compared in UTC, like everywhere else.
        try:
            dbapi_connection.execute("SET TimeZone = 'UTC'")
        except Exception:  # noqa: BLE001 - without ICU, DuckDB is in UTC already
            pass
    return setup


def _sqlite_session(dbapi_connection: Any, _record: Any) -> None:
    """Each SQLite warehouse connection's page cache (engine.SQLITE_CACHE_KIB) and the
    process's soft heap limit."""
    dbapi_connection.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
    limit_sqlite_heap(dbapi_connection)


def _utc_session(statement: str) -> Callable[[Any, Any], None]:
    """Put each new connection in UTC: timestamps with a zone are then read as UTC times."""
    def setup(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(statement)
        finally:
            cursor.close()
        if hasattr(dbapi_connection, "commit"):
            dbapi_connection.commit()  # psycopg opens a transaction for the SET: keep it
    return setup
