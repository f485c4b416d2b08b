"""The JSON Schemas shipped in ``brazecfg/schemas/``, loaded once from the installed package.

``$ref``s between files (``defs.json#/$defs/name``) resolve through one ``referencing``
registry: nothing is ever fetched from the network. That each schema is valid against the
2020-12 metaschema is checked by the tests (tests/config/test_schemas.py), not on every
command: the check took a third of `validate`'s time on a small project.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator, validators
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SCHEMA_FILES: tuple[str, ...] = (
    "defs.json", "project.json", "app.json", "model.json", "source.json", "property.json",
    "group.json", "destination.json", "plan.json",
)
BASE_URI = "https://brazecfg.dev/schemas/"


def load_schema(filename: str) -> dict[str, Any]:
    """One schema file's JSON, read from the installed package."""
    text = files("brazecfg.schemas").joinpath(filename).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def registry() -> Registry[Any]:
    """Every shipped schema, keyed by its ``$id``."""
    resources = []
    for filename in SCHEMA_FILES:
        schema = load_schema(filename)
        resources.append((schema["$id"], Resource.from_contents(schema,
                                                                default_specification=DRAFT202012)))
    reg: Registry[Any] = Registry().with_resources(resources)
    return reg.crawl()


def _as_number(instance: Any) -> Any:
    """A number written as text (a rendered template such as ``"{{ env('N', 30) }}"``) as a
    float, so ranges apply to it as to the number; anything else unchanged."""
    if isinstance(instance, str):
        try:
            return float(instance.strip())
        except ValueError:
            return instance
    return instance


def _ranged(check: Any) -> Any:
    def run(validator: Any, bound: Any, instance: Any, schema: Any) -> Any:
        return check(validator, bound, _as_number(instance), schema)
    return run


# minimum/maximum also hold for numbers written as text (templates render to text).
_Validator = validators.extend(Draft202012Validator, {
    k: _ranged(Draft202012Validator.VALIDATORS[k])
    for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")})


@cache
def validator(name: str) -> Draft202012Validator:
    """The validator of ``<name>.json`` (a kind, or "project")."""
    schema = registry().contents(BASE_URI + f"{name}.json")
    v: Draft202012Validator = _Validator(schema, registry=registry())
    return v
