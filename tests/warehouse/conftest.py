"""The fixture data loaded into each backend: SQLite and DuckDB files, and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from brazecfg.model.resources import App, Group, Project, Property, Source
from brazecfg.warehouse.base import ModelRow
from brazecfg.warehouse.connect import connect
from tests.warehouse import build as b
from tests.warehouse import data

BACKENDS = ("sqlite", "duckdb", "postgres")


@dataclass
class Backend:
    name: str
    root: Path
    app: App
    prefix: str  # schema prefix for table names

    def project(self, properties: Iterable[Property] = (), groups: Iterable[Group] = (),
                sources: Iterable[Source] | None = None, *, updated_at: bool = False,
                ) -> Project:
        props = list(properties) or list(data.CORE_PROPERTIES)
        srcs = list(sources) if sources is not None else data.core_sources(
            self.prefix, updated_at=updated_at)
        if not any(p.name == "user_id" for p in props):
            props.append(b.prop("user_id", "users", "id"))
        return b.project(str(self.root), self.app, srcs, props, groups)

    def rows(self, project: Project, *, now: datetime = data.NOW, **kw: Any) -> list[ModelRow]:
        wh = connect(self.app, project)
        try:
            return list(wh.stream_model(b.MODEL, now=now, **kw))
        finally:
            wh.close()

    def by_key(self, project: Project, **kw: Any) -> dict[str, ModelRow]:
        return {r.key: r for r in self.rows(project, **kw)}


@pytest.fixture(scope="session")
def pg_warehouse_url(postgres_url: str) -> Iterator[sa.URL]:
    """The fixture data in schema ``analytics`` of a database of its own."""
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("CREATE DATABASE brazecfg_wh"))
    admin.dispose()
    url = sa.make_url(postgres_url).set(database="brazecfg_wh")
    engine = sa.create_engine(url)
    data.load(engine, "postgres", "analytics")
    engine.dispose()
    yield url


def make_backend(name: str, root: Path, request: pytest.FixtureRequest) -> Backend:
    if name == "sqlite":
        engine = sa.create_engine(f"sqlite:///{root / 'wh.sqlite'}")
        data.load(engine, "sqlite", None)
        engine.dispose()
        return Backend(name, root, b.app("sqlite", path="wh.sqlite"), "main.")
    if name == "duckdb":
        engine = sa.create_engine(f"duckdb:///{root / 'wh.duckdb'}")
        data.load(engine, "duckdb", "analytics")
        engine.dispose()
        return Backend(name, root, b.app("duckdb", path="wh.duckdb"), "analytics.")
    url: sa.URL = request.getfixturevalue("pg_warehouse_url")
    the_app = b.app("postgres", host=url.host, port=url.port, database=url.database,
                    user=url.username, password=url.password)
    return Backend(name, root, the_app, "analytics.")


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Backend:
    return make_backend(request.param, tmp_path_factory.mktemp(request.param), request)


@pytest.fixture(scope="module")
def sqlite_backend(tmp_path_factory: pytest.TempPathFactory,
                   request: pytest.FixtureRequest) -> Backend:
    return make_backend("sqlite", tmp_path_factory.mktemp("sqlite"), request)
