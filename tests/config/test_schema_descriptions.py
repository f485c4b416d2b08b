"""Every key in brazecfg/schemas has a description (issue 11, item 3): an editor shows it on
hover and in completion. Conditional branches (if/then/else) only restrict keys described
where they are declared."""

from __future__ import annotations

from typing import Any

from brazecfg.schema.store import SCHEMA_FILES, load_schema


def undescribed(node: Any, path: str) -> list[str]:
    out: list[str] = []
    if not isinstance(node, dict):
        return out
    for section in ("properties", "patternProperties"):
        for key, sub in (node.get(section) or {}).items():
            if isinstance(sub, dict) and not str(sub.get("description", "")).strip():
                out.append(f"{path}/{key}")
            out += undescribed(sub, f"{path}/{key}")
    for key, sub in (node.get("$defs") or {}).items():
        out += undescribed(sub, f"{path}#/$defs/{key}")
    for key in ("items", "additionalProperties", "not", "propertyNames"):
        out += undescribed(node.get(key), f"{path}/{key}")
    for key in ("allOf", "anyOf", "oneOf", "prefixItems"):
        for i, sub in enumerate(node.get(key) or []):
            if isinstance(sub, dict):
                trimmed = {k: v for k, v in sub.items() if k not in ("if", "then", "else")}
                out += undescribed(trimmed, f"{path}/{key}/{i}")
    return out


def test_every_key_has_a_description() -> None:
    missing = [m for f in SCHEMA_FILES for m in undescribed(load_schema(f), f)]
    assert missing == []


def test_the_check_finds_a_key_without_one() -> None:
    schema = {"properties": {"a": {"description": "x", "properties": {"b": {"type": "string"}}}}}
    assert undescribed(schema, "s") == ["s/a/b"]
