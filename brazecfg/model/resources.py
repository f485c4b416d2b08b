"""Typed, frozen resources: what project files become once they passed their JSON Schema.

Each resource keeps where it was declared (for diagnostics) and is never validated again.
Field names follow the YAML keys one to one, so the schemas in ``schemas/`` are the reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from brazecfg.errors import Location

Kind = Literal["app", "model", "source", "property", "group", "destination"]
KINDS: tuple[Kind, ...] = ("app", "model", "source", "property", "group", "destination")

AppType = Literal["sqlite", "duckdb", "postgres", "sqlalchemy", "braze"]
WAREHOUSE_TYPES: tuple[str, ...] = ("sqlite", "duckdb", "postgres", "sqlalchemy")

PropertyType = Literal[
    "string", "integer", "float", "boolean", "date", "datetime", "email", "phone", "url",
    "string_array",
]
Aggregate = Literal["count", "sum", "avg", "min", "max", "most_recent", "least_recent"]
FilterOp = Literal[
    "eq", "ne", "gt", "gte", "lt", "lte", "contains", "not_contains", "starts_with", "in",
    "exists", "not_exists", "within", "not_within",
]
Mode = Literal["sync", "additive", "enrich"]


class SyncMode(str, Enum):
    SYNC = "sync"  # create, update, delete
    ADDITIVE = "additive"  # create, update; never delete
    ENRICH = "enrich"  # update users Braze already has; never create or delete


@dataclass(frozen=True)
class Resource:
    kind: str
    name: str
    location: Location
    # Where each top-level key was declared, for diagnostics pointing inside the resource.
    key_locations: Mapping[str, Location] = field(default_factory=dict, compare=False, repr=False)
    description: str = ""
    # The resource as declared, before templating: fingerprints and config diffs use this, so
    # a secret rendered from the environment never reaches a hash, a lockfile or a plan.
    declared: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    def where(self, key: str) -> Location:
        return self.key_locations.get(key, self.location)


@dataclass(frozen=True)
class App(Resource):
    type: str = "sqlite"
    # Rendered options (templating done). May hold secrets: never print, hash or serialise them.
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Model(Resource):
    primary_key: str = ""  # name of a property of this model


@dataclass(frozen=True)
class Source(Resource):
    app: str = ""
    model: str = ""
    table: str | None = None
    query: str | None = None
    key: str = ""  # column holding the model's primary key value
    updated_at: str | None = None
    schedule: str | None = None


@dataclass(frozen=True)
class Filter:
    column: str
    op: str
    value: Any = None


@dataclass(frozen=True)
class Property(Resource):
    source: str = ""
    type: str = "string"
    column: str | None = None
    aggregate: str | None = None
    sort: str | None = None  # for most_recent / least_recent
    filters: tuple[Filter, ...] = ()


@dataclass(frozen=True)
class Rule:
    """A condition on a property (``property`` + ``op`` + ``value``), or membership of another
    group of the same model (``group``, with op ``member`` or ``not_member``)."""

    property: str | None = None
    op: str = "eq"
    value: Any = None
    group: str | None = None


@dataclass(frozen=True)
class Group(Resource):
    model: str = ""
    match: str = "all"  # all | any
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class SubscriptionMapping:
    group: str
    subscription_group_id: str


@dataclass(frozen=True)
class EventSpec:
    """Rows of a source sent as Braze custom events or purchases, each row exactly once.

    ``key`` names the column that identifies a row for good (the ledger remembers which keys
    Braze confirmed); ``user`` the column holding the user's primary key (default: the
    source's ``key``). For purchases, ``product_id``/``price``/``quantity`` name columns and
    ``currency`` is either a column or a literal three-letter code (``currency_code``).
    """

    name: str  # event name for custom events; also names this stream in the ledger
    source: str
    type: str = "event"  # event | purchase
    key: str = "id"
    user: str | None = None
    time: str = "created_at"
    properties: Mapping[str, str] = field(default_factory=dict)  # event property -> column
    product_id: str | None = None
    price: str | None = None
    quantity: str | None = None
    currency: str | None = None  # column
    currency_code: str | None = None  # literal, e.g. USD
    since: str | None = None  # ISO date-time: older rows are never sent (no history backfill)
    id: str | None = None  # the stream's identity in the state, when not derived (see identity)

    @property
    def identity(self) -> str:
        """What keys this stream's rows in the state: its source, key column and type (or an
        explicit ``id``), never its display name, so renaming ``name`` resends nothing."""
        return self.id or f"{self.source}:{self.key}:{self.type}"


@dataclass(frozen=True)
class Destination(Resource):
    app: str = ""
    model: str = ""
    mode: str = "sync"
    mapping: Mapping[str, str] = field(default_factory=dict)  # Braze standard field -> property
    custom_attributes: Mapping[str, str] = field(default_factory=dict)  # attribute -> property
    subscription_groups: tuple[SubscriptionMapping, ...] = ()
    unsubscribe_on_leave: bool = True
    groups_attribute: str | None = None  # array custom attribute listing group names
    events: tuple[EventSpec, ...] = ()
    schedule: str | None = None  # when `brazecfg run` applies it (wins over its sources')
    group: str | None = None  # tracked group: only its members are records of this destination
    # additive/enrich: a record that leaves the model leaves its synced groups (profile kept)
    unsubscribe_leavers: bool = False
    # never subscribe a member who unsubscribed from that group in Braze (asked at plan time)
    respect_opt_outs: bool = True
    guardrails: Mapping[str, Any] = field(default_factory=dict)  # see plan/guardrails.py

    def fields(self) -> dict[str, str]:
        """Every Braze field this destination writes, except external_id, -> property name."""
        out = {k: v for k, v in self.mapping.items() if k != "external_id"}
        out.update(self.custom_attributes)
        return out


@dataclass(frozen=True)
class ProjectSettings:
    name: str
    root: str
    vars: Mapping[str, Any] = field(default_factory=dict)
    state_dir: str = ".brazecfg"  # relative to root: ledger + local hash key
    lockfile: str = "brazecfg.lock.json"  # relative to root
    # Declared renames (Terraform's moved blocks): (from ref, to ref), e.g.
    # ("destination/old", "destination/new") or ("destination/d/events/a", "destination/d/events/b").
    moved: tuple[tuple[str, str], ...] = ()
    guardrails: Mapping[str, Any] = field(default_factory=dict)  # see plan/guardrails.py
    # Where the state lives (brazecfg/state/backends.py): local | postgres | warehouse.
    state_backend: str = "local"
    state_url: str | None = field(default=None, repr=False)  # postgres: a secret, never shown
    state_schema: str | None = None
    state_app: str | None = None  # warehouse: one of the project's warehouse apps
    state_lock_ttl: float | None = None  # seconds


@dataclass(frozen=True)
class Project:
    """A loaded, validated project: every resource by kind and name."""

    settings: ProjectSettings
    apps: Mapping[str, App]
    models: Mapping[str, Model]
    sources: Mapping[str, Source]
    properties: Mapping[str, Property]
    groups: Mapping[str, Group]
    destinations: Mapping[str, Destination]

    def all(self) -> list[Resource]:
        out: list[Resource] = []
        for coll in (self.apps, self.models, self.sources, self.properties, self.groups,
                     self.destinations):
            out.extend(coll[k] for k in sorted(coll))
        return out

    def model_properties(self, model: str) -> list[Property]:
        """Properties of a model, sorted by name (through their sources)."""
        return [p for n, p in sorted(self.properties.items())
                if self.sources[p.source].model == model]

    def model_groups(self, model: str) -> list[Group]:
        return [g for n, g in sorted(self.groups.items()) if g.model == model]

    def primary_source(self, model: str) -> Source:
        """The source of the model's primary-key property: its rows are the model's records."""
        pk = self.properties[self.models[model].primary_key]
        return self.sources[pk.source]
