"""Test helpers: a small project whose apps can hold a state, and a Backend per kind."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from brazecfg.config.loader import load_project
from brazecfg.model.resources import Project
from brazecfg.state.backends import Backend, local_backend, postgres_backend, warehouse_backend

KINDS = ["local", "postgres", "warehouse-sqlite", "warehouse-duckdb", "warehouse-postgres"]


def state_project(root: Path, pg_url: str | None, state: dict[str, object] | None = None
                  ) -> Project:
    """A project with three warehouse apps (sqlite, duckdb, postgres) and no other resource."""
    (root / "apps").mkdir(parents=True, exist_ok=True)
    sqlite3.connect(root / "wh.db").close()
    import duckdb

    duckdb.connect(str(root / "wh.duckdb")).close()
    doc: dict[str, object] = {"name": "statetest"}
    if state:
        doc["state"] = state
    (root / "brazecfg.yml").write_text(json.dumps(doc))
    apps = [{"kind": "app", "name": "lite", "type": "sqlite", "options": {"path": "wh.db"}},
            {"kind": "app", "name": "duck", "type": "duckdb", "options": {"path": "wh.duckdb"}}]
    if pg_url:
        apps.append({"kind": "app", "name": "pg", "type": "postgres",
                     "options": {"url": pg_url}})
    (root / "apps" / "apps.yml").write_text("---\n".join(json.dumps(a) + "\n" for a in apps))
    return load_project(root)


def backend(kind: str, root: Path, pg_url: str | None, schema: str = "brazecfg",
            ttl: float = 60.0) -> Backend:
    project = state_project(root, pg_url)
    match kind:
        case "local":
            return local_backend(root / ".brazecfg" / "ledger.sqlite", lock_ttl=ttl)
        case "postgres":
            assert pg_url
            return postgres_backend(pg_url, schema, lock_ttl=ttl)
        case "warehouse-sqlite":
            return warehouse_backend(project, "lite", schema, lock_ttl=ttl)
        case "warehouse-duckdb":
            return warehouse_backend(project, "duck", schema, lock_ttl=ttl)
        case "warehouse-postgres":
            return warehouse_backend(project, "pg", schema, lock_ttl=ttl)
    raise AssertionError(kind)
