"""JSON Schema: the one definition of each file's shape (schemas live in ``brazecfg/schemas``)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from brazecfg.config.yaml import Document, PathElem
from brazecfg.errors import Diagnostic
from brazecfg.schema.diagnostics import Reporter
from brazecfg.schema.store import SCHEMA_FILES, load_schema, registry, validator

__all__ = ["SCHEMA_FILES", "load_schema", "registry", "validate", "validator"]


def validate(doc: Document, instance: Any, schema: str, *, resource: str = "",
             skip: Collection[tuple[PathElem, ...]] = ()) -> list[Diagnostic]:
    """Every problem of ``instance`` (the rendered value of ``doc``) against ``<schema>.json``.

    Errors at or below a path in ``skip`` (templates that failed to render) are left out: those
    strings already have a diagnostic.
    """
    reporter = Reporter(doc, resource, instance)
    out: list[Diagnostic] = []
    seen: set[tuple[object, str]] = set()
    for error in validator(schema).iter_errors(instance):
        path = tuple(error.absolute_path)
        if any(path[:len(s)] == s for s in skip):
            continue
        for d in reporter.report(error):
            if (d.location, d.message) not in seen:
                seen.add((d.location, d.message))
                out.append(d)
    return out
