"""``brazecfg init``: a small working project to start from (issue 11, item 4).

Each template writes the same resources (a warehouse app, the Braze app reading the
environment, a model, a source, properties and a destination); only the warehouse app and its
SQL differ. The SQLite and DuckDB templates build their database from ``warehouse.sql`` on
first use (``options.seed``), so the result validates and plans against the emulator at once.
Existing files are never overwritten.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from brazecfg.errors import BrazecfgError
from brazecfg.schema.bundle import bundle, combined

SCHEMA = ".brazecfg.schema.json"  # `brazecfg schema`: any resource, chosen by its kind
PROJECT_SCHEMA = ".brazecfg.project.schema.json"  # `brazecfg schema project`: brazecfg.yml
TEMPLATES: tuple[str, ...] = ("sqlite", "duckdb", "postgres")

_ROWS = """INSERT INTO users VALUES
  (1, 'ada@example.com',   'Ada',   'GB', '2026-01-05 09:00:00'),
  (2, 'alan@example.com',  'Alan',  'GB', '2026-01-05 09:00:00'),
  (3, 'grace@example.com', 'Grace', 'US', '2026-01-05 09:00:00');
"""

_SQL = {
    "sqlite": "CREATE TABLE users (\n  id INTEGER PRIMARY KEY,\n  email TEXT,\n"
              "  first_name TEXT,\n  country TEXT,\n  updated_at TEXT NOT NULL\n);\n",
    "duckdb": "CREATE TABLE users (\n  id INTEGER PRIMARY KEY,\n  email VARCHAR,\n"
              "  first_name VARCHAR,\n  country VARCHAR,\n  updated_at TIMESTAMP NOT NULL\n);\n",
    "postgres": "CREATE TABLE users (\n  id INTEGER PRIMARY KEY,\n  email TEXT,\n"
                "  first_name TEXT,\n  country TEXT,\n  updated_at TIMESTAMP NOT NULL\n);\n",
}

_WAREHOUSE = {
    "sqlite": """kind: app
name: warehouse
description: A SQLite file, built from warehouse.sql when it does not exist yet.
type: sqlite
options:
  path: warehouse.db
  seed: warehouse.sql
""",
    "duckdb": """kind: app
name: warehouse
description: A DuckDB file, built from warehouse.sql when it does not exist yet.
type: duckdb
options:
  path: warehouse.duckdb
  seed: warehouse.sql
""",
    "postgres": """kind: app
name: warehouse
description: >
  A PostgreSQL database; set DATABASE_URL (postgresql://user:password@host:5432/db) and
  create the table with `psql "$DATABASE_URL" -f warehouse.sql`.
type: postgres
options:
  url: "{{ env('DATABASE_URL', 'postgresql://localhost:5432/postgres') }}"
""",
}

_FILES = {
    "apps/braze.yml": """kind: app
name: braze
description: >
  The local Braze emulator (`brazecfg emulator`) unless BRAZE_REST_ENDPOINT and BRAZE_API_KEY
  point at a real workspace.
type: braze
options:
  api_key: "{{ env('BRAZE_API_KEY', 'local-emulator-key') }}"
  rest_endpoint: "{{ env('BRAZE_REST_ENDPOINT', 'http://127.0.0.1:4567') }}"
""",
    "models/users.yml": """kind: model
name: users
primary_key: user_id
""",
    "sources/users.yml": """kind: source
name: users_table
app: warehouse
model: users
table: users
key: id
updated_at: updated_at
""",
    "properties/users.yml": """kind: property
name: user_id
source: users_table
type: string
column: id
---
kind: property
name: email
source: users_table
type: email
column: email
---
kind: property
name: first_name
source: users_table
type: string
column: first_name
---
kind: property
name: country
source: users_table
type: string
column: country
""",
    "destinations/braze_users.yml": """kind: destination
name: braze_users
app: braze
model: users
mode: sync            # sync | additive | enrich
mapping:              # Braze standard field: property
  external_id: user_id
  first_name: first_name
  email: email
  country: country
""",
}


def project_files(name: str, template: str) -> dict[str, str]:
    """The files of a new project (relative path -> text) for ``template``."""
    if template not in TEMPLATES:
        raise BrazecfgError(f"no template {template!r}; choose one of {', '.join(TEMPLATES)}")
    settings = ("# Project settings: see the README (paths:, exclude:, state:, guardrails:).\n"
                f"name: {json.dumps(name, ensure_ascii=False)}\n")
    if template == "postgres":
        settings += "env: [DATABASE_URL]  # environment variables templates may read\n"
    ignored = {"sqlite": "warehouse.db\n", "duckdb": "warehouse.duckdb\n", "postgres": ""}
    resources = {"apps/warehouse.yml": _WAREHOUSE[template], **_FILES}
    return {
        "brazecfg.yml": _modeline(PROJECT_SCHEMA) + settings,
        **{rel: _modeline("../" * rel.count("/") + SCHEMA) + text
           for rel, text in resources.items()},
        "warehouse.sql": _SQL[template] + _ROWS,
        ".gitignore": ".brazecfg/\n" + ignored[template],
        # what the modelines point at, so an editor needs no network (hidden: never a resource)
        SCHEMA: _json(combined()),
        PROJECT_SCHEMA: _json(bundle("project")),
    }


def _modeline(schema: str) -> str:
    """The first line of a YAML file: yaml-language-server's schema for it (every document)."""
    return f"# yaml-language-server: $schema={schema}\n"


def _json(schema: dict[str, Any]) -> str:
    """As `brazecfg schema` prints it."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def init_project(folder: Path, template: str) -> list[Path]:
    """Write a new project into ``folder`` (created if missing); returns the files written.
    Refuses, writing nothing, when any of them exists already."""
    name = "".join(c if c.isalnum() or c in "_-" else "_" for c in folder.resolve().name)
    files = project_files(name.strip("_-") or "my_project", template)
    clash = sorted(rel for rel in files if (folder / rel).exists())
    if clash:
        raise BrazecfgError(f"{folder} already has {', '.join(clash)}; brazecfg init never "
                            "overwrites a file: choose an empty folder")
    written = []
    for rel, text in files.items():
        path = folder / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise BrazecfgError(f"cannot write {path}: {exc.strerror or exc}") from None
        written.append(path)
    return written
