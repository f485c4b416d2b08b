"""Errors name the app, the source or property, and the next step; never the password."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from brazecfg.errors import WarehouseError
from brazecfg.model.resources import App, Project
from brazecfg.warehouse.connect import connect
from tests.pg import free_port
from tests.warehouse import build as b
from tests.warehouse import data
from tests.warehouse.conftest import Backend

SECRET = "s3cr3t-Pa55word"


def rows(app: App, project: Project) -> list[object]:
    wh = connect(app, project)
    try:
        return list(wh.stream_model(b.MODEL, now=data.NOW))
    finally:
        wh.close()


def test_missing_table_names_the_source(sqlite_backend: Backend) -> None:
    project = sqlite_backend.project(sources=[
        b.source("users", "main.users", key="id"), b.source("purchases", "main.purchasez"),
        b.source("events", "main.events")])
    with pytest.raises(WarehouseError) as err:
        rows(sqlite_backend.app, project)
    msg = str(err.value)
    assert "app/wh" in msg and "source/purchases" in msg and "no such table" in msg


def test_missing_column_names_the_property(sqlite_backend: Backend) -> None:
    project = sqlite_backend.project([
        b.prop("ltv", "purchases", "amount_usd", aggregate="sum", filters=data.PAID)])
    with pytest.raises(WarehouseError) as err:
        rows(sqlite_backend.app, project)
    msg = str(err.value)
    assert "property/ltv" in msg and "amount_usd" in msg and "source/purchases" in msg
    assert "no such column" in msg


def test_missing_sqlite_file(tmp_path: Path) -> None:
    project = b.project(str(tmp_path), b.app("sqlite", path="nope.db"),
                        [b.source("users", "users", key="id")], [b.prop("user_id", "users", "id")])
    with pytest.raises(WarehouseError, match=r"app/wh: database file .*nope\.db does not exist"):
        connect(project.apps["wh"], project)
    assert not (tmp_path / "nope.db").exists()


def test_sqlite_is_opened_read_only(sqlite_backend: Backend) -> None:
    wh = connect(sqlite_backend.app, sqlite_backend.project())
    try:
        with wh.engine.connect() as conn, pytest.raises(sa.exc.OperationalError,  # type: ignore[attr-defined]
                                                        match="readonly"):
            conn.execute(sa.text("DELETE FROM users"))
    finally:
        wh.close()


def test_config_errors_name_the_resource(sqlite_backend: Backend) -> None:
    bad_op = sqlite_backend.project(groups=[b.group("g", b.rule("age", "around", 3))])
    with pytest.raises(WarehouseError, match=r"group/g: rule on 'age': unknown operator"):
        rows(sqlite_backend.app, bad_op)
    bad_within = sqlite_backend.project(groups=[b.group("g", b.rule("age", "within", "soon"))])
    with pytest.raises(WarehouseError, match=r"group/g: .*'soon' is not a relative duration"):
        rows(sqlite_backend.app, bad_within)
    unknown = sqlite_backend.project(groups=[b.group("g", b.member("ghost"))])
    with pytest.raises(WarehouseError, match=r"group/g: rule refers to group/ghost"):
        rows(sqlite_backend.app, unknown)
    no_agg = sqlite_backend.project([b.prop("status", "purchases")])
    with pytest.raises(WarehouseError, match=r"property/status .* give it an aggregate"):
        rows(sqlite_backend.app, no_agg)


def test_sources_of_one_model_must_share_an_app(sqlite_backend: Backend) -> None:
    other = dataclasses.replace(b.source("purchases", "purchases"), app="elsewhere")
    project = sqlite_backend.project(sources=[b.source("users", "users", key="id"), other,
                                              b.source("events", "events")])
    with pytest.raises(WarehouseError, match="same warehouse"):
        rows(sqlite_backend.app, project)


def test_sqlite_query_error_mid_query_is_a_warehouse_error(sqlite_backend: Backend) -> None:
    project = sqlite_backend.project(sources=[
        b.source("users", query="SELECT id, email FROM users WHERE nosuch(id)", key="id"),
        b.source("purchases", "purchases"), b.source("events", "events")],
        properties=[b.prop("user_id", "users", "id")])
    with pytest.raises(WarehouseError, match=r"source/users cannot be read .*nosuch"):
        rows(sqlite_backend.app, project)


# -- connection failures -----------------------------------------------------------------

def _pg_project(the_app: App) -> Project:
    return b.project("/", the_app, [b.source("users", "users", key="id")],
                     [b.prop("user_id", "users", "id")])


def _assert_connection_error(the_app: App, *fragments: str) -> str:
    with pytest.raises(WarehouseError) as err:
        connect(the_app, _pg_project(the_app))
    msg = str(err.value)
    assert "app/wh" in msg
    for fragment in fragments:
        assert fragment in msg
    assert SECRET not in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__
    return msg


def test_unreachable_postgres_names_app_and_host_not_password() -> None:
    the_app = b.app("postgres", host="127.0.0.1", port=free_port(), database="db", user="me",
                    password=SECRET, connect_timeout=3)
    msg = _assert_connection_error(the_app, "127.0.0.1", "Check host, port")
    assert "me:***@" in msg


def test_wrong_postgres_password(pg_warehouse_url: sa.URL) -> None:
    url = pg_warehouse_url
    the_app = b.app("postgres", host=url.host, port=url.port, database=url.database,
                    user=url.username, password=SECRET)
    msg = _assert_connection_error(the_app, "password authentication failed", str(url.host))
    url_app = b.app("postgres", url=url.set(password=SECRET).render_as_string(hide_password=False))
    _assert_connection_error(url_app, "password authentication failed")
    assert "sslmode" in msg


def test_postgres_url_option_works(pg_warehouse_url: sa.URL) -> None:
    plain = pg_warehouse_url.set(drivername="postgresql")
    the_app = b.app("postgres", url=plain.render_as_string(hide_password=False))
    project = b.project("/", the_app, data.core_sources("analytics."), data.CORE_PROPERTIES)
    assert [r.key for r in rows(the_app, project)] == sorted(u[0] for u in data.USERS)


def test_missing_driver_says_what_to_install() -> None:
    the_app = b.app("sqlalchemy", url=f"snowflake://me:{SECRET}@acct/db")
    msg = _assert_connection_error(the_app, "brazecfg[snowflake]")
    assert "snowflake" in msg


def test_sqlalchemy_app_with_any_url(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE users (id INTEGER, name TEXT)")
        conn.executemany("INSERT INTO users VALUES (?, ?)", [(42, "x"), (7, "y"), (100, None)])
    conn.close()
    the_app = b.app("sqlalchemy", url=f"sqlite:///{db}")
    project = b.project(str(tmp_path), the_app, [b.source("users", "users", key="id")],
                        [b.prop("user_id", "users", "id"), b.prop("name", "users")])
    got = rows(the_app, project)
    # integer keys render as "42" (not "42.0") and sort as text
    assert [r.key for r in got] == ["100", "42", "7"]  # type: ignore[attr-defined]
    assert [r.values["user_id"] for r in got] == [100, 42, 7]  # type: ignore[attr-defined]
