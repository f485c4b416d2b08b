"""Cross-reference checks: what JSON Schema cannot see, because it needs several resources.

Every check runs and every problem is reported, at the key that is wrong, naming the resource
and saying what to do. Checks never assume a reference resolves: a resource that failed its
schema is still "known" (so its name raises no "unknown" error) but is not looked into.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from brazecfg.braze.standard_fields import RESERVED_ATTRIBUTE_NAMES, STANDARD_FIELDS
from brazecfg.config.yaml import PathElem
from brazecfg.errors import Diagnostic, Location
from brazecfg.model.graph import find_cycle
from brazecfg.model.resources import (
    KINDS,
    WAREHOUSE_TYPES,
    App,
    Destination,
    Group,
    Model,
    Property,
    Resource,
    Source,
)
from brazecfg.schedule.spec import ScheduleError, parse_schedule
from brazecfg.schema.diagnostics import did_you_mean

# In ``known``: names declared by a document whose kind is unknown or whose file could not be
# parsed. A reference to one of them is a knock-on of that error, never reported on its own.
ANY_KIND = "*"

Locator = Callable[[Resource, Sequence[PathElem]], Location]

NUMERIC = frozenset({"integer", "float"})
DATES = frozenset({"date", "datetime"})
TEXT = frozenset({"string", "email", "phone", "url"})
# Which property types each rule operator works on.
OP_TYPES: Mapping[str, frozenset[str]] = {
    "eq": TEXT | NUMERIC | DATES | {"boolean"},
    "ne": TEXT | NUMERIC | DATES | {"boolean"},
    "gt": NUMERIC | DATES, "gte": NUMERIC | DATES, "lt": NUMERIC | DATES, "lte": NUMERIC | DATES,
    "contains": TEXT | {"string_array"}, "not_contains": TEXT | {"string_array"},
    "starts_with": TEXT,
    "in": TEXT | NUMERIC | DATES,
    "exists": TEXT | NUMERIC | DATES | {"boolean", "string_array"},
    "not_exists": TEXT | NUMERIC | DATES | {"boolean", "string_array"},
    "within": DATES, "not_within": DATES,
}
AGGREGATE_TYPES: Mapping[str, frozenset[str]] = {
    "count": frozenset({"integer"}), "sum": NUMERIC, "avg": frozenset({"float"}) | NUMERIC,
}


def _default_locator(resource: Resource, path: Sequence[PathElem]) -> Location:
    return resource.where(str(path[0])) if path else resource.location


RESERVED_EVENT_PROPERTIES = frozenset({"time", "event_name"})


class Checker:
    def __init__(self, resources: Sequence[Resource], known: Mapping[str, set[str]] | None,
                 locate: Locator | None) -> None:
        self.locate = locate or _default_locator
        self.out: list[Diagnostic] = []
        self.by_kind: dict[str, dict[str, Resource]] = {k: {} for k in KINDS}
        self.known: dict[str, set[str]] = defaultdict(set)
        for kind, names in (known or {}).items():
            self.known[kind] |= set(names)
        first: dict[str, Resource] = {}
        for r in resources:
            self.known[r.kind].add(r.name)
            if r.ref in first:
                self._duplicate(r, first[r.ref])
            else:
                first[r.ref] = r
                self.by_kind.setdefault(r.kind, {})[r.name] = r
        self.apps: dict[str, App] = self._typed("app", App)
        self.models: dict[str, Model] = self._typed("model", Model)
        self.sources: dict[str, Source] = self._typed("source", Source)
        self.properties: dict[str, Property] = self._typed("property", Property)
        self.groups: dict[str, Group] = self._typed("group", Group)
        self.destinations: dict[str, Destination] = self._typed("destination", Destination)

    def _typed(self, kind: str, cls: type[Any]) -> dict[str, Any]:
        return {n: r for n, r in self.by_kind.get(kind, {}).items() if isinstance(r, cls)}

    def add(self, r: Resource, path: Sequence[PathElem], message: str, hint: str) -> None:
        self.out.append(Diagnostic(self.locate(r, path), message, resource=r.ref, hint=hint))

    def _duplicate(self, r: Resource, other: Resource) -> None:
        hint = "names are unique within a kind: rename one of them"
        self.add(r, ["name"], f"duplicate name: {r.kind} {r.name!r} is also declared at "
                              f"{self.locate(other, ['name'])}", hint)
        self.add(other, ["name"], f"duplicate name: {r.kind} {r.name!r} is also declared at "
                                  f"{self.locate(r, ['name'])}", hint)

    # --- references -----------------------------------------------------------------------

    def ref(self, r: Resource, path: Sequence[PathElem], kind: str, name: str,
            what: str = "") -> bool:
        """True when ``kind/name`` exists and was built; reports it when it does not exist."""
        if name in self.by_kind.get(kind, {}):
            return True
        if name not in self.known[kind] and name not in self.known[ANY_KIND]:
            maybe = did_you_mean(name, self.known[kind])
            self.add(r, path, f"unknown {what or kind} {name!r}{maybe}",
                     f"declare it (kind: {kind}, name: {name}) or fix the name")
        return False

    def model_of(self, prop: Property) -> str | None:
        src = self.sources.get(prop.source)
        return src.model if src else None

    def primary_source(self, model: str) -> str | None:
        m = self.models.get(model)
        pk = self.properties.get(m.primary_key) if m else None
        return pk.source if pk else None

    # --- per kind -------------------------------------------------------------------------

    def run(self) -> list[Diagnostic]:
        for m in self.models.values():
            self.check_model(m)
        for s in self.sources.values():
            self.check_source(s)
        for p in self.properties.values():
            self.check_property(p)
        for g in self.groups.values():
            self.check_group(g)
        if self.check_group_cycles():
            self.check_group_sizes()
        for d in self.destinations.values():
            self.check_destination(d)
        return self.out

    def check_model(self, m: Model) -> None:
        if not self.ref(m, ["primary_key"], "property", m.primary_key, "primary key property"):
            return
        owner = self.model_of(self.properties[m.primary_key])
        if owner is not None and owner != m.name:
            src = self.properties[m.primary_key].source
            self.add(m, ["primary_key"],
                     f"primary key property {m.primary_key!r} reads from source {src!r}, which "
                     f"belongs to model {owner!r}",
                     f"use a property of a source with model: {m.name}")

    def check_source(self, s: Source) -> None:
        if self.ref(s, ["app"], "app", s.app):
            app = self.apps[s.app]
            if app.type not in WAREHOUSE_TYPES:
                self.add(s, ["app"], f"app {s.app!r} is a {app.type} app; a source reads from a "
                                     "warehouse app", f"use an app of type {', '.join(WAREHOUSE_TYPES)}")
        self.ref(s, ["model"], "model", s.model)
        self.check_schedule(s, s.schedule)

    def check_schedule(self, r: Resource, schedule: str | None) -> None:
        """A schedule the schema's pattern let through must also be one croniter can run
        (``99 * * * *`` has five fields and no meaning)."""
        if schedule is None:
            return
        try:
            parse_schedule(schedule)
        except ScheduleError as exc:
            self.add(r, ["schedule"], str(exc), "fix the schedule")

    def check_property(self, p: Property) -> None:
        if self.ref(p, ["source"], "source", p.source):
            model = self.model_of(p)
            primary = self.primary_source(model) if model else None
            is_pk = model in self.models and self.models[model].primary_key == p.name
            if is_pk and p.aggregate:
                self.add(p, ["aggregate"], f"{p.name!r} is the primary key of model {model!r} "
                                           "and cannot be aggregated", "remove aggregate")
            elif primary is not None and p.source != primary and not p.aggregate:
                self.add(p, ["source"],
                         f"source {p.source!r} is not the primary source of model {model!r} "
                         f"({primary!r}, the source of its primary key), so several rows can "
                         "match one record",
                         "add aggregate: most_recent (with sort), count, sum, avg, min or max")
        if p.aggregate in ("most_recent", "least_recent") and not p.sort:
            self.add(p, ["aggregate"], f"aggregate {p.aggregate} needs sort: the column that "
                                       "orders the rows", "add sort: created_at (for example)")
        if p.aggregate != "count" and not p.column:
            self.add(p, [], "missing column: the source column this property reads",
                     "add column: ..." + ("" if p.aggregate else
                                          " (only aggregate: count needs no column)"))
        allowed = AGGREGATE_TYPES.get(p.aggregate or "")
        if allowed is not None and p.type not in allowed:
            need = " or ".join(sorted(allowed))
            self.add(p, ["type"], f"aggregate {p.aggregate} gives a number, but type is {p.type}",
                     f"set type: {need}")

    def check_group(self, g: Group) -> None:
        self.ref(g, ["model"], "model", g.model)
        for i, rule in enumerate(g.rules):
            if rule.group is not None:
                if rule.group == g.name:
                    continue  # reported as a cycle
                if self.ref(g, ["rules", i, "group"], "group", rule.group):
                    other = self.groups[rule.group]
                    if other.model != g.model:
                        self.add(g, ["rules", i, "group"],
                                 f"group {rule.group!r} is a group of model {other.model!r}, "
                                 f"not {g.model!r}", "a rule can only use groups of the same model")
                continue
            name = rule.property or ""
            if not self.ref(g, ["rules", i, "property"], "property", name):
                continue
            prop = self.properties[name]
            owner = self.model_of(prop)
            if owner is not None and owner != g.model:
                self.add(g, ["rules", i, "property"],
                         f"property {name!r} belongs to model {owner!r}, not {g.model!r}",
                         f"use a property of model {g.model}")
                continue
            types = OP_TYPES.get(rule.op, frozenset())
            if prop.type not in types:
                ops = sorted(op for op, ts in OP_TYPES.items() if prop.type in ts)
                self.add(g, ["rules", i, "op"],
                         f"op {rule.op} does not apply to property {name!r} of type {prop.type}",
                         f"use one of {', '.join(ops)}")
                continue
            problem = _value_problem(rule.op, prop.type, rule.value)
            if problem:
                self.add(g, ["rules", i, "value"], problem, "fix the value")

    def check_group_sizes(self) -> None:
        """A group's condition inlines each group it uses (``member``): a chain of hundreds of
        groups, or groups that each use the previous one twice, would build a query too deep
        or too big (exponential) for any warehouse. Sizes are counted once per group."""
        depth: dict[str, int] = {}
        size: dict[str, int] = {}
        order = _topological(self.groups)
        for name in order:
            g = self.groups[name]
            used = [r.group for r in g.rules if r.group in self.groups]
            depth[name] = 1 + max((depth[u] for u in used), default=0)
            size[name] = min(MAX_GROUP_RULES + 1, sum(size[r.group] if r.group in size else 1
                                                       for r in g.rules) or 1)
        for name in order:
            g = self.groups[name]
            too_deep = depth[name] > MAX_GROUP_DEPTH
            too_big = size[name] > MAX_GROUP_RULES
            if not (too_deep or too_big):
                continue
            # report where it first goes over: a group whose own members are all within
            used = [u for u in (r.group for r in g.rules) if u in self.groups]
            if any(depth[u] > MAX_GROUP_DEPTH or size[u] > MAX_GROUP_RULES for u in used):
                continue
            i = next((i for i, r in enumerate(g.rules) if r.group in self.groups), 0)
            what = (f"nests groups more than {MAX_GROUP_DEPTH} deep" if too_deep else
                    f"expands to more than {MAX_GROUP_RULES:,} rules through the groups it uses")
            self.add(g, ["rules", i, "group"], f"{g.ref} {what}",
                     "use fewer levels of member rules, or compute the flag in the warehouse "
                     "as a property")

    def check_group_cycles(self) -> bool:
        """Report cycles of member rules; True when there are none."""
        graph = {n: [r.group for r in g.rules if r.group in self.groups]
                 for n, g in self.groups.items()}
        reported: set[frozenset[str]] = set()
        while (cycle := find_cycle(graph)) is not None:
            key = frozenset(cycle)
            if key in reported:
                break
            reported.add(key)
            g = self.groups[cycle[0]]
            i = next(i for i, r in enumerate(g.rules) if r.group == cycle[1])
            self.add(g, ["rules", i, "group"],
                     "groups refer to each other in a cycle: " + " -> ".join(cycle),
                     "remove one of these group rules")
            graph[cycle[0]] = [x for x in graph[cycle[0]] if x != cycle[1]]
        return not reported

    def check_destination(self, d: Destination) -> None:
        if self.ref(d, ["app"], "app", d.app) and self.apps[d.app].type != "braze":
            self.add(d, ["app"], f"app {d.app!r} is a {self.apps[d.app].type} app; a destination "
                                 "writes to a braze app", "use an app of type braze")
        has_model = self.ref(d, ["model"], "model", d.model)
        model = self.models.get(d.model) if has_model else None
        if "external_id" not in d.mapping:
            pk = model.primary_key if model else "<primary key property>"
            self.add(d, ["mapping"], "mapping has no external_id: Braze needs it to identify users",
                     f"add external_id: {pk} under mapping")
        elif model is not None and d.mapping["external_id"] != model.primary_key:
            self.add(d, ["mapping", "external_id"],
                     f"external_id is mapped to {d.mapping['external_id']!r}, but the primary "
                     f"key of model {d.model!r} is {model.primary_key!r}",
                     f"map external_id: {model.primary_key}")
        for field_, prop in d.mapping.items():
            if self._mapped_property(d, ["mapping", field_], prop):
                ptype = self.properties[prop].type
                accepted = STANDARD_FIELDS.get(field_, frozenset())
                if ptype not in accepted:
                    self.add(d, ["mapping", field_],
                             f"Braze field {field_} cannot take property {prop!r} of type {ptype}",
                             f"map a property of type {' or '.join(sorted(accepted))}, or put it "
                             "under custom_attributes with another name")
        for attr, prop in d.custom_attributes.items():
            if attr in STANDARD_FIELDS:
                self.add(d, ["custom_attributes", attr],
                         f"custom attribute {attr!r} is a Braze standard field name",
                         "map it under mapping, or give the custom attribute another name")
            elif attr in RESERVED_ATTRIBUTE_NAMES:
                self.add(d, ["custom_attributes", attr],
                         f"custom attribute {attr!r} is a name Braze reserves",
                         "give the custom attribute another name")
            self._mapped_property(d, ["custom_attributes", attr], prop)
        for sub in d.subscription_groups:
            path: list[PathElem] = ["subscription_groups", sub.group]
            if self.ref(d, path, "group", sub.group) and self.groups[sub.group].model != d.model:
                self.add(d, path, f"group {sub.group!r} is a group of model "
                                  f"{self.groups[sub.group].model!r}, not {d.model!r}",
                         f"list groups of model {d.model} only")
        seen_events: set[str] = set()
        identities: dict[str, str] = {}
        for i, ev in enumerate(d.events):
            if ev.name in seen_events:
                self.add(d, ["events", i, "name"], f"two events are named {ev.name!r}",
                         "event names are unique within a destination: rename one")
            seen_events.add(ev.name)
            if ev.identity in identities:
                self.add(d, ["events", i, "id" if ev.id else "source"],
                         f"events {identities[ev.identity]!r} and {ev.name!r} read the same rows "
                         f"as the same type (identity {ev.identity!r}), so the state could not "
                         "tell their rows apart",
                         "give one of them an id: (a name that never changes)")
            identities.setdefault(ev.identity, ev.name)
            for prop_name in ev.properties:
                if prop_name in RESERVED_EVENT_PROPERTIES or prop_name.startswith("$") \
                        or len(prop_name) > 255:
                    self.add(d, ["events", i, "properties", prop_name],
                             f"event property {prop_name[:64]!r} is a name Braze refuses "
                             "(time, event_name, a leading $, or over 255 characters)",
                             "rename the property")
            path = ["events", i, "source"]
            if self.ref(d, path, "source", ev.source) and self.sources[ev.source].model != d.model:
                self.add(d, path, f"source {ev.source!r} belongs to model "
                                  f"{self.sources[ev.source].model!r}, not {d.model!r}",
                         f"send events from sources of model {d.model} only")
        self.check_schedule(d, d.schedule)
        if d.unsubscribe_leavers and d.mode == "sync":
            self.add(d, ["unsubscribe_leavers"], "unsubscribe_leavers applies to additive and "
                     "enrich modes: sync mode deletes the users who leave",
                     "remove it, or choose mode: additive")
        if d.group is not None and self.ref(d, ["group"], "group", d.group) and \
                self.groups[d.group].model != d.model:
            self.add(d, ["group"], f"group {d.group!r} is a group of model "
                                   f"{self.groups[d.group].model!r}, not {d.model!r}",
                     f"track a group of model {d.model}")
        if d.group is not None and d.events:
            # Events go to every record of the model: a non-member's event would create (or,
            # in sync mode, re-create) a profile the tracked group keeps out of Braze.
            self.add(d, ["group"], "a destination with group: cannot send events yet (events "
                                   "of non-members would create their profiles)",
                     "send the events from a destination without group:")
        ga = d.groups_attribute
        if ga is not None:
            if ga in RESERVED_ATTRIBUTE_NAMES:
                self.add(d, ["groups_attribute"], f"groups_attribute {ga!r} is a name Braze "
                                                  "reserves", "choose another attribute name")
            elif ga in d.custom_attributes:
                self.add(d, ["groups_attribute"], f"groups_attribute {ga!r} is also a custom "
                                                  "attribute", "choose another attribute name")

    def _mapped_property(self, d: Destination, path: list[PathElem], prop: str) -> bool:
        if not self.ref(d, path, "property", prop):
            return False
        owner = self.model_of(self.properties[prop])
        if owner is not None and owner != d.model:
            self.add(d, path, f"property {prop!r} belongs to model {owner!r}, not {d.model!r}",
                     f"map properties of model {d.model} only")
            return False
        return True


MAX_GROUP_DEPTH = 32
MAX_GROUP_RULES = 2_000


def _topological(groups: Mapping[str, Group]) -> list[str]:
    """Group names, each after the groups it uses (no cycles: checked before), iteratively."""
    order: list[str] = []
    done: set[str] = set()
    for start in sorted(groups):
        stack: list[tuple[str, bool]] = [(start, False)]
        while stack:
            name, ready = stack.pop()
            if name in done:
                continue
            if ready:
                done.add(name)
                order.append(name)
                continue
            stack.append((name, True))
            stack += [(r.group, False) for r in groups[name].rules
                      if r.group is not None and r.group in groups and r.group not in done]
    return order


def _value_problem(op: str, ptype: str, value: Any) -> str:
    """Why ``value`` cannot be compared with a property of ``ptype``, or "". Never quotes the
    value: it may have been rendered from the environment."""
    if op in ("exists", "not_exists", "within", "not_within"):
        return ""
    for v in value if isinstance(value, (list, tuple)) else [value]:
        if ptype in NUMERIC and not _is_number(v):
            return f"op {op} on a {ptype} property needs a number as value"
        if ptype == "boolean" and not (isinstance(v, bool) or str(v).lower() in ("true", "false")):
            return "a boolean property compares with true or false"
        if ptype not in NUMERIC and ptype != "boolean" and isinstance(v, (bool, int, float)):
            what = "a date" if ptype in DATES else "text"
            got = "true or false" if isinstance(v, bool) else "a number"
            return f"a {ptype} property compares with {what}, not {got}"
    return ""


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    try:
        float(str(v))
    except ValueError:
        return False
    return True


def check_resources(resources: Sequence[Resource], *, known: Mapping[str, set[str]] | None = None,
                    locate: Locator | None = None) -> list[Diagnostic]:
    """Every cross-reference problem among ``resources``.

    ``known``: names (by kind) declared by resources that failed their schema, so references to
    them are not reported as unknown. ``locate``: where a path inside a resource is (defaults to
    the resource's key locations).
    """
    return Checker(resources, known, locate).run()
