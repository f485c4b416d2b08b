"""Self-contained schemas for editors and stock validators (``brazecfg schema [KIND]``).

The shipped files refer to each other (``defs.json#/$defs/name``) under a web ``$id``; a stock
validator without brazecfg's registry would try to resolve those against the web address and
fail offline. A bundle copies the shared definitions in and rewrites every ``$ref`` to a local
``#/$defs/...``, so it resolves from the one document, with no network and no registry.

The combined schema accepts a document of any kind, chosen by its ``kind``, for files that mix
kinds (one modeline for every document of a multi-document YAML file).
"""

from __future__ import annotations

import copy
from typing import Any

from brazecfg.model.resources import KINDS
from brazecfg.schema.store import BASE_URI, load_schema

RESOURCE_KINDS: tuple[str, ...] = KINDS
BUNDLE_NAMES: tuple[str, ...] = (*RESOURCE_KINDS, "project", "plan")
_SHARED = "defs.json#/$defs/"


def _local(node: Any) -> Any:
    """``node`` with every ``defs.json#/$defs/X`` reference made local (``#/$defs/X``)."""
    if isinstance(node, dict):
        out = {k: _local(v) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SHARED):
            out["$ref"] = "#/$defs/" + ref[len(_SHARED):]
        return out
    if isinstance(node, list):
        return [_local(v) for v in node]
    return node


def _shared_defs() -> dict[str, Any]:
    defs: dict[str, Any] = copy.deepcopy(load_schema("defs.json")["$defs"])
    return defs


def bundle(name: str) -> dict[str, Any]:
    """One schema (a kind, ``project`` or ``plan``) with the shared definitions inside."""
    if name not in BUNDLE_NAMES:
        raise ValueError(f"no schema {name!r}")
    schema: dict[str, Any] = _local(load_schema(f"{name}.json"))
    defs = _shared_defs()
    for key, value in (schema.get("$defs") or {}).items():
        if key in defs and defs[key] != value:
            raise ValueError(f"{name}.json and defs.json both define {key!r}")
        defs[key] = value
    schema["$defs"] = defs
    return schema


def combined() -> dict[str, Any]:
    """One schema for any resource document: ``kind`` chooses which kind's schema applies."""
    defs = _shared_defs()
    branches = []
    for kind in RESOURCE_KINDS:
        schema = _local(load_schema(f"{kind}.json"))
        for key in ("$schema", "$id"):
            schema.pop(key, None)
        ref = f"kind-{kind}"
        if ref in defs:
            raise ValueError(f"defs.json defines {ref!r}, which the combined schema uses")
        defs[ref] = schema
        branches.append({"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                         "then": {"$ref": f"#/$defs/{ref}"}})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": BASE_URI + "brazecfg.json",
        "title": "A brazecfg resource (any kind)",
        "description": "One resource document; its kind chooses the schema that applies. "
                       "brazecfg.yml has its own schema: `brazecfg schema project`.",
        "type": "object",
        "required": ["kind"],
        "properties": {"kind": {"enum": list(RESOURCE_KINDS),
                                "description": "What this document declares."}},
        "allOf": branches,
        "$defs": defs,
    }
