"""Where the state lives, chosen under ``state:`` in brazecfg.yml, as a SQLAlchemy engine.

- ``local`` (default): the SQLite file ``<state.dir>/ledger.sqlite``. Plan opens it read-only.
- ``postgres``: a schema (``state.schema``, default ``brazecfg``) in any PostgreSQL server,
  ``state.url`` (templated, a secret: never printed, hashed or written), driver psycopg 3.
- ``warehouse``: tables in a schema of one of the project's warehouse apps (``state.app``),
  through the app's own connection options. SQLite has no schemas: there the tables are
  named ``<schema>_records`` and so on, in the app's database file.

A backend only says how to connect and how to name tables; the state itself (ledger.py) is
one implementation over SQLAlchemy Core for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from brazecfg.errors import StateError
from brazecfg.model.resources import Project
from brazecfg.warehouse.engine import scrub

BACKENDS = ("local", "postgres", "warehouse")
DEFAULT_SCHEMA = "brazecfg"
DEFAULT_LOCK_TTL = 60.0  # seconds; renewed every third of it by a heartbeat


@dataclass(frozen=True)
class Backend:
    """How to reach one state. ``url`` may hold a password: use ``where`` in messages."""

    name: str  # local | postgres | warehouse
    url: URL = field(repr=False)
    where: str  # safe to print: no password
    schema: str | None = None  # SQL schema of the tables (None: the default one)
    prefix: str = ""  # table name prefix (SQLite warehouses: no schemas)
    path: Path | None = None  # the local file
    connect_args: dict[str, Any] = field(default_factory=dict, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    lock_ttl: float = DEFAULT_LOCK_TTL
    app: str | None = None  # the warehouse app holding the tables (backend warehouse)

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    def scrub(self, text: str) -> str:
        return scrub(text, self.secrets)


def local_backend(path: Path, *, lock_ttl: float = DEFAULT_LOCK_TTL) -> Backend:
    return Backend("local", make_url("sqlite://").set(database=str(path)),
                   f"local file {path}", path=path, lock_ttl=lock_ttl)


def postgres_backend(url: str, schema: str = DEFAULT_SCHEMA, *,
                     lock_ttl: float = DEFAULT_LOCK_TTL) -> Backend:
    try:
        u = make_url(url)
    except ArgumentError:
        raise StateError("state.url is not a PostgreSQL URL (postgresql://USER:PASSWORD@HOST:"
                         "PORT/DATABASE); check brazecfg.yml and the variable it reads") from None
    if not u.drivername.startswith("postgres"):
        raise StateError(f"state.url must be a postgresql:// URL for the postgres backend, not "
                         f"{u.drivername}://")
    u = u.set(drivername="postgresql+psycopg")
    where = f"postgres {u.host or 'localhost'}:{u.port or 5432}/{u.database or ''} schema {schema}"
    return Backend("postgres", u, where, schema=schema,
                   connect_args={"connect_timeout": 10, "options": "-c TimeZone=UTC"},
                   secrets=(str(u.password),) if u.password else (), lock_ttl=lock_ttl)


def warehouse_backend(project: Project, app_name: str, schema: str = DEFAULT_SCHEMA, *,
                      lock_ttl: float = DEFAULT_LOCK_TTL) -> Backend:
    """The state in a warehouse app: the app's own URL and options, the tables in ``schema``."""
    from brazecfg.warehouse.connect import _engine_args  # one place builds warehouse URLs

    app = project.apps.get(app_name)
    if app is None or app.type not in ("sqlite", "duckdb", "postgres", "sqlalchemy"):
        apps = sorted(a.name for a in project.apps.values()
                      if a.type in ("sqlite", "duckdb", "postgres", "sqlalchemy"))
        raise StateError(f"state.app {app_name!r} is not a warehouse app of this project "
                         f"(warehouse apps: {', '.join(apps) or 'none'}); fix state.app in "
                         "brazecfg.yml")
    options = app.options or {}
    secrets = tuple(str(options[k]) for k in ("password",) if options.get(k))
    try:
        url, kwargs, _hint = _engine_args(app, options, project.settings.root)
    except Exception as exc:  # a WarehouseError or a bad URL: both name the app
        raise StateError(f"state in app/{app.name}: {scrub(str(exc), secrets)}") from None
    if url.password:
        secrets = (*secrets, str(url.password))
    backend = url.get_backend_name()
    connect_args = dict(kwargs.get("connect_args") or {})
    path: Path | None = None
    prefix, sql_schema = "", schema  # type: tuple[str, str | None]
    if backend == "sqlite":
        path = Path(str(url.database).removeprefix("file:"))
        url = make_url("sqlite://").set(database=str(path))
        prefix, sql_schema = f"{schema}_", None
    elif backend == "duckdb":
        path = Path(str(url.database)) if url.database not in (None, ":memory:") else None
        connect_args.pop("read_only", None)  # set per open: read-only for plan
    where = f"warehouse app/{app.name} ({scrub(url.render_as_string(hide_password=True), secrets)}) "\
            f"schema {schema}"
    return Backend("warehouse", url, where, schema=sql_schema, prefix=prefix, path=path,
                   connect_args=connect_args, secrets=secrets, lock_ttl=lock_ttl,
                   app=app.name)


def backend_of(project: Project) -> Backend:
    """The backend brazecfg.yml chooses (``state.backend``, default local)."""
    s = project.settings
    ttl = s.state_lock_ttl or DEFAULT_LOCK_TTL
    match s.state_backend:
        case "local":
            return local_backend(Path(s.root) / s.state_dir / "ledger.sqlite", lock_ttl=ttl)
        case "postgres":
            if not s.state_url:
                raise StateError("state.backend is postgres but state.url is empty; set it, "
                                 "e.g. url: \"{{ env('BRAZECFG_STATE_URL') }}\"")
            return postgres_backend(s.state_url, s.state_schema or DEFAULT_SCHEMA, lock_ttl=ttl)
        case "warehouse":
            if not s.state_app:
                raise StateError("state.backend is warehouse but state.app is not set; name "
                                 "one of the project's warehouse apps")
            return warehouse_backend(project, s.state_app, s.state_schema or DEFAULT_SCHEMA,
                                     lock_ttl=ttl)
        case other:
            raise StateError(f"unknown state.backend {other!r}; use one of {', '.join(BACKENDS)}")
