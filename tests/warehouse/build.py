"""Small builders for Project objects, straight from the dataclasses (no YAML involved)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from brazecfg.errors import Location
from brazecfg.model.resources import (
    App,
    Filter,
    Group,
    Model,
    Project,
    ProjectSettings,
    Property,
    Rule,
    Source,
)

L = Location("test.yml", 1, 1)
APP = "wh"
MODEL = "users"


def app(type_: str, **options: Any) -> App:
    return App(kind="app", name=APP, location=L, type=type_, options=options)


def source(name: str, table: str | None = None, *, key: str = "user_id",
           query: str | None = None, updated_at: str | None = None) -> Source:
    return Source(kind="source", name=name, location=L, app=APP, model=MODEL, table=table,
                  query=query, key=key, updated_at=updated_at)


def prop(name: str, source: str, column: str | None = None, *, aggregate: str | None = None,
         sort: str | None = None, filters: Iterable[tuple[str, str, Any]] = (),
         type_: str = "string") -> Property:
    return Property(kind="property", name=name, location=L, source=source, type=type_,
                    column=column, aggregate=aggregate, sort=sort,
                    filters=tuple(Filter(c, op, v) for c, op, v in filters))


def rule(property_: str, op: str, value: Any = None) -> Rule:
    return Rule(property=property_, op=op, value=value)


def member(group: str) -> Rule:
    return Rule(group=group, op="member")


def not_member(group: str) -> Rule:
    return Rule(group=group, op="not_member")


def group(name: str, *rules: Rule, match: str = "all") -> Group:
    return Group(kind="group", name=name, location=L, model=MODEL, match=match, rules=rules)


def project(root: str, the_app: App, sources: Iterable[Source], properties: Iterable[Property],
            groups: Iterable[Group] = (), primary_key: str = "user_id") -> Project:
    def by_name(items: Iterable[Any]) -> Mapping[str, Any]:
        return {i.name: i for i in items}

    return Project(
        settings=ProjectSettings(name="t", root=root),
        apps={APP: the_app},
        models={MODEL: Model(kind="model", name=MODEL, location=L, primary_key=primary_key)},
        sources=by_name(sources),
        properties=by_name(properties),
        groups=by_name(groups),
        destinations={},
    )
