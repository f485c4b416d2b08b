"""Validated dicts -> frozen resources. Runs only on values that passed their JSON Schema, so it
trusts their shape and never validates again."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from brazecfg.errors import Location
from brazecfg.model.resources import (
    App,
    Destination,
    EventSpec,
    Filter,
    Group,
    Model,
    ProjectSettings,
    Property,
    Resource,
    Rule,
    Source,
    SubscriptionMapping,
)


def _plain(value: Any) -> Any:
    """A deep copy of plain JSON data (dicts, lists, scalars): it stays JSON-serialisable."""
    return copy.deepcopy(value)


def _value(value: Any) -> Any:
    """A rule or filter value: lists become tuples so Filter and Rule stay hashable."""
    return tuple(value) if isinstance(value, list) else value


def _filters(items: list[dict[str, Any]] | None) -> tuple[Filter, ...]:
    return tuple(Filter(f["column"], f["op"], _value(f.get("value"))) for f in items or [])


def _rules(items: list[dict[str, Any]]) -> tuple[Rule, ...]:
    out = []
    for r in items:
        if "group" in r:
            out.append(Rule(group=r["group"], op=r.get("op", "member")))
        else:
            out.append(Rule(property=r["property"], op=r["op"], value=_value(r.get("value"))))
    return tuple(out)


def _events(items: list[dict[str, Any]] | None) -> tuple[EventSpec, ...]:
    return tuple(EventSpec(**{**e, "properties": dict(e.get("properties") or {})})
                 for e in items or [])


def build_resource(data: Mapping[str, Any], declared: Mapping[str, Any], location: Location,
                   key_locations: Mapping[str, Location]) -> Resource:
    """One resource from its rendered, validated ``data``; ``declared`` is kept unrendered."""
    common: dict[str, Any] = dict(
        kind=data["kind"], name=data["name"], location=location,
        key_locations=dict(key_locations),
        description=data.get("description", ""), declared=_plain(dict(declared)))
    match data["kind"]:
        case "app":
            return App(**common, type=data["type"], options=_plain(data.get("options", {})))
        case "model":
            return Model(**common, primary_key=data["primary_key"])
        case "source":
            return Source(**common, app=data["app"], model=data["model"],
                          table=data.get("table"), query=data.get("query"), key=data["key"],
                          updated_at=data.get("updated_at"), schedule=data.get("schedule"))
        case "property":
            return Property(**common, source=data["source"], type=data["type"],
                            column=data.get("column"), aggregate=data.get("aggregate"),
                            sort=data.get("sort"), filters=_filters(data.get("filters")))
        case "group":
            return Group(**common, model=data["model"], match=data.get("match", "all"),
                         rules=_rules(data["rules"]))
        case "destination":
            subs = sorted((data.get("subscription_groups") or {}).items())
            return Destination(
                **common, app=data["app"], model=data["model"], mode=data.get("mode", "sync"),
                mapping=dict(data["mapping"]),
                custom_attributes=dict(data.get("custom_attributes") or {}),
                subscription_groups=tuple(SubscriptionMapping(g, i) for g, i in subs),
                unsubscribe_on_leave=data.get("unsubscribe_on_leave", True),
                groups_attribute=data.get("groups_attribute"),
                events=_events(data.get("events")), schedule=data.get("schedule"),
                group=data.get("group"),
                unsubscribe_leavers=data.get("unsubscribe_leavers", False),
                respect_opt_outs=data.get("respect_opt_outs", True),
                guardrails=dict(data.get("guardrails") or {}))
    raise ValueError(f"unknown kind {data['kind']!r}")  # the loader checked kinds already


def build_settings(data: Mapping[str, Any], root: Path) -> ProjectSettings:
    state = data.get("state") or {}
    return ProjectSettings(
        name=data["name"], root=str(root.resolve()), vars=_plain(dict(data.get("vars") or {})),
        state_dir=state.get("dir", ".brazecfg"), lockfile=state.get("lockfile", "brazecfg.lock.json"),
        moved=tuple((m["from"], m["to"]) for m in data.get("moved") or []),
        guardrails=dict(data.get("guardrails") or {}),
        state_backend=state.get("backend", "local"), state_url=state.get("url"),
        state_schema=state.get("schema"), state_app=state.get("app"),
        state_lock_ttl=float(state["lock_ttl"]) if "lock_ttl" in state else None)
