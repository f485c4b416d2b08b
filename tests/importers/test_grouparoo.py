"""`brazecfg import grouparoo` through the CLI, on the real Grouparoo configs in
../shared/fixtures/grouparoo-configs and on small hand-made ones for what cannot translate."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from tests.helpers import NOW, ROOT, cli

FIXTURES = ROOT.parent / "shared" / "fixtures" / "grouparoo-configs"
DIRS = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) if FIXTURES.is_dir() else []


@pytest.mark.parametrize("name", DIRS)
def test_every_fixture_becomes_a_project_that_validates(name: str, tmp_path: Path) -> None:
    out = tmp_path / name
    run = cli("import", "grouparoo", str(FIXTURES / name), "--out", str(out))
    assert run.exit_code == 0, run.output
    assert "carried over:" in run.output
    valid = cli("validate", str(out))
    assert valid.exit_code == 0, valid.output
    summary = (out / "IMPORT.md").read_text()
    assert "## Carried over" in summary and "Destination" in summary


def test_fixtures_are_there() -> None:
    assert DIRS == ["app-example-config", "demo-accounts", "demo-users"]


def _example_warehouse(project: Path) -> None:
    """The tables and columns app-example-config's sources and properties name."""
    db = project / "data" / "source.sqlite"
    db.parent.mkdir(parents=True)
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, first_name TEXT, last_name TEXT,
                            language TEXT, updated_at TEXT);
        INSERT INTO users VALUES (1, 'ana@example.com', 'Ana', 'Ruiz', 'es', '2026-10-01'),
                                 (2, 'bo@example.com', 'Bo', 'Berg', 'sv', '2026-10-01'),
                                 (3, NULL, 'Cy', 'Nomail', 'en', '2026-10-01');
        CREATE TABLE purchases (id INTEGER PRIMARY KEY, user_id INTEGER, price REAL, state TEXT,
                                created_at TEXT);
        INSERT INTO purchases VALUES (1, 1, 150.0, 'successful', '2026-10-02'),
                                     (2, 1, 10.0, 'failed', '2026-10-03'),
                                     (3, 2, 20.0, 'successful', '2026-10-04');
    """)
    con.close()


def test_app_example_config_plans_against_its_warehouse(tmp_path: Path) -> None:
    out = tmp_path / "example"
    assert cli("import", "grouparoo", str(FIXTURES / "app-example-config"), "--out",
               str(out)).exit_code == 0
    _example_warehouse(out)
    plan = cli("plan", str(out), "--now", NOW, "--format", "json")
    assert plan.exit_code == 0, plan.output
    doc = json.loads(plan.stdout)
    (dest,) = doc["destinations"]
    # The newsletter tracked group all_emails (email exists): user 3 has no email.
    assert dest["destination"] == "newsletter"
    assert dest["counts"]["create"] == 2, dest
    text = cli("plan", str(out), "--now", NOW)
    assert "members of group all_emails only" in text.output
    # Grouparoo's additive mode: a record that leaves keeps its profile, loses its groups.
    dest = (out / "destinations" / "newsletter.yml").read_text()
    assert "mode: additive" in dest and "unsubscribe_leavers: true" in dest


def _write(root: Path, rel: str, obj: object | str) -> None:
    path = root / "config" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj, indent=2))


def _small_config(root: Path) -> None:
    _write(root, "apps/db.json", {"class": "App", "id": "db", "name": "DB", "type": "sqlite",
                                  "options": {"file": "w.db"}})
    _write(root, "models/users.json", {"class": "Model", "id": "users", "name": "Users",
                                       "type": "profile"})
    # JSON5: comments and trailing commas are Grouparoo's format too.
    _write(root, "sources/users.json", """[
  // the primary source
  {"class": "Source", "id": "users", "modelId": "users", "name": "Users",
   "type": "sqlite-import-table", "appId": "db", "options": {"table": "users"},
   "mapping": {"id": "user_id"},},
  {"class": "Source", "id": "q", "modelId": "users", "name": "Q",
   "type": "sqlite-import-query", "appId": "db", "options": {}, "mapping": {"id": "user_id"}},
]""")
    for pid, extra in (("user_id", {"options": {"aggregationMethod": "exact", "column": "id"}}),
                       ("email", {"type": "email", "options": {"aggregationMethod": "exact",
                                                               "column": "email"}}),
                       ("seen", {"type": "date", "options": {"aggregationMethod": "exact",
                                                             "column": "seen_at"}}),
                       ("full", {"options": {"customFunction": "() => 'x'"}})):
        _write(root, f"properties/{pid}.json", {
            "class": "Property", "id": pid, "key": pid, "type": "string", "sourceId": "users",
            "unique": False, "isArray": False, "filters": [], **extra})
    _write(root, "groups/ends.json", {"class": "Group", "id": "ends", "name": "Ends",
                                      "modelId": "users", "rules": [
                                          {"propertyId": "email", "op": "exists"},
                                          {"propertyId": "email", "op": "endsWith",
                                           "match": "@x.com"}]})
    _write(root, "groups/recent.json", {"class": "Group", "id": "recent", "name": "Recent",
                                        "modelId": "users", "rules": [
                                            {"propertyId": "seen", "op": "relative_gt",
                                             "relativeMatchNumber": 2,
                                             "relativeMatchUnit": "quarters"}]})
    _write(root, "destinations/braze.json", {
        "class": "Destination", "id": "to_braze", "name": "Braze", "type": "braze-export-users",
        "appId": "b", "modelId": "users", "collection": "model", "syncMode": "sync",
        "mapping": {"external_id": "user_id", "email": "email", "full_name": "full"},
        "destinationGroupMemberships": {"Recent!": "recent"}})
    _write(root, "apps/braze.json", {"class": "App", "id": "b", "name": "Braze", "type": "braze",
                                     "options": {"apiKey": "BRAZE_KEY",
                                                 "restEndpoint": "BRAZE_URL"}})
    (root / "config" / "extra.js").write_text("module.exports = {};\n")


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_what_cannot_translate_is_reported_at_its_file_and_line(tmp_path: Path) -> None:
    src, out = tmp_path / "gr", tmp_path / "out"
    _small_config(src)
    run = cli("import", "grouparoo", str(src), "--out", str(out))
    assert run.exit_code == 0, run.output
    cfg = src / "config"
    expect = {
        f"config/properties/full.json:{_line_of(cfg / 'properties/full.json', 'options')}":
            "calculated property",
        f"config/groups/ends.json:{_line_of(cfg / 'groups/ends.json', 'endsWith')}":
            "op 'endsWith'",
        f"config/sources/users.json:{_line_of(cfg / 'sources/users.json', 'import-query')}":
            "a query source",
        "config/extra.js:1": ".js config file",
    }
    for where, what in expect.items():
        assert re.search(rf"TODO {re.escape(where)}:\d+: .*{re.escape(what)}", run.output), \
            (where, run.output)
    # A group missing one of its rules would hold more users: it is left out, not widened.
    assert not (out / "groups" / "ends.yml").exists()
    recent = (out / "groups" / "recent.yml").read_text()
    assert "op: within" in recent and "value: 6 months" in recent
    dest = (out / "destinations" / "to_braze.yml").read_text()
    assert "# TODO(grouparoo) config/destinations/braze.json:" in dest
    assert "full_name -> full left out" in dest
    assert "groups_attribute: groups" in dest
    app = (out / "apps" / "b.yml").read_text()
    assert "GROUPAROO_OPTION__APP__BRAZE_KEY" in app and "BRAZE_URL" in app
    assert cli("validate", str(out)).exit_code == 0


def test_broken_input_is_an_error_at_its_location_and_writes_nothing(tmp_path: Path) -> None:
    src, out = tmp_path / "gr", tmp_path / "out"
    _write(src, "models/users.json", '{"class": "Model", "id": "users",\n  "type": }\n')
    _write(src, "apps/x.json", {"class": "Widget", "id": "x"})
    run = cli("import", "grouparoo", str(src), "--out", str(out))
    assert run.exit_code == 1
    assert "config/models/users.json:2:" in run.output and "invalid JSON" in run.output
    assert "config/apps/x.json:2:12" in run.output and "unknown or missing class" in run.output
    assert not out.exists()
    assert "Traceback" not in run.output


def test_a_model_without_a_primary_key_is_an_error(tmp_path: Path) -> None:
    src, out = tmp_path / "gr", tmp_path / "out"
    _write(src, "models/users.json", {"class": "Model", "id": "users", "type": "profile"})
    run = cli("import", "grouparoo", str(src), "--out", str(out))
    assert run.exit_code == 1
    assert "config/models/users.json:1:1" in run.output and "primary key" in run.output
    assert not out.exists()
