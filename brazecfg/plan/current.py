"""``plan --show-current``: what Braze holds now for the plan's sampled updates.

A plan compares the warehouse with the state, so an update shows only the new value. Opt in,
and the few users a plan samples for its updates (``DestinationPlan.samples``, at most a
handful per destination) are read back from Braze after the plan is made, with
``/users/export/ids`` and ``fields_to_export`` naming just the fields their updates change:
one call per Braze app for up to 50 such users (ceil(samples / 50) calls). It never changes
the plan. A key without the ``users.export.ids`` permission, or a Braze that cannot be read,
gives a note instead of old values; the plan stands.

Values are for the terminal only: ``summary`` (the JSON) holds ids, field names and counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from brazecfg.braze.client import BrazeClient
from brazecfg.braze.standard_fields import STANDARD_FIELDS
from brazecfg.errors import BrazeError
from brazecfg.model.resources import App, Destination, Project
from brazecfg.plan.definition import Action, Plan, RecordChange
from brazecfg.plan.values import ValueProblem, check_field, normalise

BATCH = 50  # /users/export/ids takes at most 50 external ids a call
PERMISSION = "users.export.ids"


@dataclass(frozen=True)
class DestinationCurrent:
    """Braze's values now for one destination's sampled updates."""

    destination: str
    ids: tuple[str, ...] = ()  # the sampled updates looked up
    values: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> field -> now
    missing: frozenset[str] = frozenset()  # sampled ids Braze has no profile for
    note: str = ""  # why the values could not be read (then ``values`` is empty)

    def summary(self, samples: list[RecordChange],
                same_value: Callable[[str, Any, Any], bool] | None = None) -> dict[str, Any]:
        """JSON-safe: ids, and per field how many sampled users Braze already holds the
        planned value for, and how many it holds another value; never a value."""
        same: dict[str, int] = {}
        other: dict[str, int] = {}
        for s in samples:
            now = self.values.get(s.external_id)
            if now is None:
                continue
            for f, new in s.attributes.items():
                equal = (same_value or _equal)(f, now.get(f), new)
                bucket = same if equal else other
                bucket[f] = bucket.get(f, 0) + 1
        return {"destination": self.destination, "sampled_updates": list(self.ids),
                "read": not self.note, "note": self.note or None,
                "not_in_braze": sorted(self.missing),
                "fields_already_current": dict(sorted(same.items())),
                "fields_differing": dict(sorted(other.items()))}


@dataclass(frozen=True)
class CurrentValues:
    destinations: dict[str, DestinationCurrent]
    requests: int  # /users/export/ids calls made

    types: dict[str, dict[str, str]] = field(default_factory=dict)  # dest -> field -> type

    def same(self, destination: str, name: str, now: Any, new: Any) -> bool:
        """Braze's value read as the plan reads a warehouse value (a date-time Braze shows
        for a date is the same date), equal to the planned one."""
        type_ = self.types.get(destination, {}).get(name)
        if type_ is not None and now is not None:
            try:
                now = check_field(name, normalise(now, type_))
            except ValueProblem:
                return False
        return _equal(name, now, new)

    def to_dict(self, plan: Plan) -> dict[str, Any]:
        return {"requests": self.requests, "destinations": [
            self.destinations[d.destination].summary(
                updates(d.samples), partial(self.same, d.destination))
            for d in plan.destinations if d.destination in self.destinations]}


def _equal(name: str, now: Any, new: Any) -> bool:
    return bool(now == new)


def updates(samples: list[RecordChange]) -> list[RecordChange]:
    """The sampled updates whose current values are worth reading (attributes change)."""
    return [s for s in samples if s.action is Action.UPDATE and s.attributes]


def _read(user: dict[str, Any], dest: Destination, name: str) -> Any:
    """A field's value in an exported profile: standard fields at the top, the rest among
    the custom attributes (as drift reads them)."""
    if name in dest.mapping and name in STANDARD_FIELDS:
        return user.get(name)
    return (user.get("custom_attributes") or {}).get(name)


def read_current(project: Project, plan: Plan, clients: Callable[[App], BrazeClient]
                 ) -> CurrentValues:
    """Braze's current values of the fields each sampled update changes."""
    by_app: dict[str, list[tuple[Destination, list[RecordChange]]]] = {}
    for d in plan.destinations:
        dest = project.destinations.get(d.destination)
        if dest is not None and updates(d.samples):
            by_app.setdefault(dest.app, []).append((dest, updates(d.samples)))
    out: dict[str, DestinationCurrent] = {}
    calls = 0
    for app, parts in sorted(by_app.items()):
        ids = list(dict.fromkeys(s.external_id for _, samples in parts for s in samples))
        fields = {"external_id"}
        for dest, samples in parts:
            for s in samples:
                fields |= {f if f in dest.mapping and f in STANDARD_FIELDS
                           else "custom_attributes" for f in s.attributes}
        users: dict[str, dict[str, Any]] = {}
        note = ""
        try:
            client = clients(project.apps[app])
            for i in range(0, len(ids), BATCH):
                calls += 1
                found, _ = client.export_users(ids[i:i + BATCH], sorted(fields))
                users.update({str(u.get("external_id")): u for u in found})
        except BrazeError as exc:
            note = (f"the API key of app/{app} lacks the {PERMISSION} permission, so Braze's "
                    "current values are not shown (the plan is unaffected; give the key that "
                    "permission to see them)" if exc.status == 403 else
                    f"Braze's current values are not shown: {exc} (the plan is unaffected)")
            users = {}
        for dest, samples in parts:
            if note:
                out[dest.name] = DestinationCurrent(
                    dest.name, tuple(s.external_id for s in samples), note=note)
                continue
            values = {s.external_id: {f: _read(users[s.external_id], dest, f)
                                      for f in s.attributes}
                      for s in samples if s.external_id in users}
            out[dest.name] = DestinationCurrent(
                dest.name, tuple(s.external_id for s in samples), values,
                frozenset(s.external_id for s in samples if s.external_id not in users))
    types = {d.name: {f: project.properties[p].type for f, p in d.fields().items()
                      if p in project.properties}
             for d in project.destinations.values() if d.name in out}
    return CurrentValues(out, calls, types)
