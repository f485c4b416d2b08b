"""``brazecfg schema [KIND]`` (issue 11, item 3), through the CLI: the printed schemas are
self-contained, so a stock validator (plain jsonschema, no brazecfg registry) checks every
example file with the network blocked."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.helpers import EXAMPLE, NOW, cli, copy_example

KINDS = ("app", "model", "source", "property", "group", "destination")


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the network was used")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def printed(*kind: str) -> Any:
    run = cli("schema", *kind)
    assert run.exit_code == 0, run.stdout + run.stderr
    return json.loads(run.stdout)


def resource_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(EXAMPLE.rglob("*.y*ml")):
        if path.name == "brazecfg.yml":
            continue
        docs += [(path, d) for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


def test_the_combined_schema_validates_every_example_file() -> None:
    schema = printed()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    docs = resource_documents()
    assert {d["kind"] for _, d in docs} == set(KINDS)
    for path, doc in docs:
        errors = [e.message for e in validator.iter_errors(doc)]
        assert errors == [], (path, errors)
    project = jsonschema.Draft202012Validator(printed("project"))
    assert list(project.iter_errors(yaml.safe_load((EXAMPLE / "brazecfg.yml").read_text()))) == []


def test_the_combined_schema_checks_the_kind_it_is_given() -> None:
    validator = jsonschema.Draft202012Validator(printed())
    assert not validator.is_valid({"kind": "model", "name": "users"})  # no primary_key
    assert not validator.is_valid({"kind": "modle", "name": "users", "primary_key": "id"})
    assert not validator.is_valid({"name": "users", "primary_key": "id"})
    assert not validator.is_valid({"kind": "model", "name": "bad name!", "primary_key": "id"})
    assert validator.is_valid({"kind": "model", "name": "users", "primary_key": "id"})


def test_each_kind_schema_is_self_contained() -> None:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for _, doc in resource_documents():
        by_kind.setdefault(doc["kind"], []).append(doc)
    for kind in KINDS:
        schema = printed(kind)
        assert "defs.json" not in json.dumps(schema)
        validator = jsonschema.Draft202012Validator(schema)
        for doc in by_kind[kind]:
            assert list(validator.iter_errors(doc)) == [], (kind, doc)


def test_the_plan_schema_validates_a_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", "http://127.0.0.1:9")  # never contacted: no apps
    project = copy_example(tmp_path)
    for path in (project / "destinations").iterdir():
        path.unlink()
    run = cli("plan", str(project), "--now", NOW, "--format", "json")
    assert run.exit_code == 0, run.stdout + run.stderr
    jsonschema.Draft202012Validator(printed("plan")).validate(json.loads(run.stdout))


def test_an_unknown_schema_name_is_one_clear_error() -> None:
    run = cli("schema", "destinaton")
    assert run.exit_code == 1
    assert "no schema for 'destinaton'" in run.stderr and "destination" in run.stderr
