from __future__ import annotations

import json
from importlib.resources import files

import pytest
from jsonschema import Draft202012Validator

from brazecfg.braze.standard_fields import STANDARD_FIELDS
from brazecfg.model.resources import KINDS
from brazecfg.schema import SCHEMA_FILES, load_schema, registry, validator


def test_every_shipped_schema_is_listed_and_valid_2020_12() -> None:
    shipped = sorted(p.name for p in files("brazecfg.schemas").iterdir() if p.name.endswith(".json"))
    assert shipped == sorted(SCHEMA_FILES)
    for name in shipped:
        schema = json.loads(files("brazecfg.schemas").joinpath(name).read_text(encoding="utf-8"))
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(schema)
    assert registry()  # builds, resolving every $ref without the network


@pytest.mark.parametrize("kind", KINDS)
def test_one_schema_per_kind_rejecting_unknown_keys(kind: str) -> None:
    schema = load_schema(f"{kind}.json")
    assert schema["additionalProperties"] is False
    assert schema["properties"]["kind"]["const"] == kind
    errors = list(validator(kind).iter_errors({"kind": kind, "name": "x", "zzz": 1}))
    assert any(e.validator == "additionalProperties" for e in errors)


def test_destination_mapping_keys_are_the_standard_fields() -> None:
    mapping = load_schema("destination.json")["properties"]["mapping"]
    assert set(mapping["properties"]) == set(STANDARD_FIELDS)
    assert mapping["additionalProperties"] is False


def test_every_object_schema_is_closed() -> None:
    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert "additionalProperties" in node, where
            for k, v in node.items():
                walk(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")
    for name in SCHEMA_FILES:
        walk(load_schema(name), name)
