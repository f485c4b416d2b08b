"""A warehouse row becomes the record a destination wants Braze to hold.

Each mapped property is normalised to its type and checked against the Braze field it feeds;
a value that fails is reported (record, field, reason) and left out: not sent, not removed,
so Braze keeps what it had. The rest of the record still syncs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from brazecfg.braze.standard_fields import hash_of, nest_hashes
from brazecfg.model.resources import Destination, Project
from brazecfg.plan.definition import Issue
from brazecfg.plan.values import ValueProblem, check_field, normalise
from brazecfg.warehouse.base import ModelRow

MAX_EXTERNAL_ID_BYTES = 987


@dataclass(frozen=True)
class Desired:
    external_id: str
    values: dict[str, Any]  # Braze field -> value (None: empty, remove if Braze has it)
    invalid: frozenset[str]  # fields whose value failed a check: leave Braze's value alone
    groups: frozenset[str]  # synced groups the record belongs to


class RecordBuilder:
    def __init__(self, project: Project, destination: Destination) -> None:
        self.destination = destination
        self._fields: list[tuple[str, str, str, bool]] = []  # (field, property, type, standard)
        standard = set(destination.mapping)
        for braze_field, prop in sorted(destination.fields().items()):
            self._fields.append((braze_field, prop, project.properties[prop].type,
                                 braze_field in standard))
        self.subscribed_groups = frozenset(s.group for s in destination.subscription_groups)
        model_groups = frozenset(g.name for g in project.model_groups(destination.model))
        self.groups_attribute = destination.groups_attribute
        # Memberships the ledger follows: those Braze hears about, through subscription groups
        # or through the groups array attribute.
        names = {hash_of(f) or f for f, *_ in self._fields}  # facebook.id -> facebook
        if self.groups_attribute:
            names.add(self.groups_attribute)
        self._field_names = frozenset(names)  # read per field of every record: build once
        self.synced_groups = (model_groups if self.groups_attribute else frozenset()) | (
            self.subscribed_groups)

    @property
    def field_names(self) -> frozenset[str]:
        return self._field_names

    def build(self, row: ModelRow, issues: list[Issue]) -> Desired | None:
        """The desired record, or None when the row has no usable external id."""
        key = row.key
        if len(key.encode()) > MAX_EXTERNAL_ID_BYTES:
            issues.append(Issue(key[:40] + "...", "external_id",
                                f"longer than Braze's {MAX_EXTERNAL_ID_BYTES}-byte limit; skipped"))
            return None
        values: dict[str, Any] = {}
        invalid: set[str] = set()
        for braze_field, prop, type_, standard in self._fields:
            try:
                value = normalise(row.values.get(prop), type_)
                if standard or value is not None:
                    value = check_field(braze_field if standard else "", value)
            except ValueProblem as problem:
                issues.append(Issue(key, braze_field, str(problem)))
                invalid.add(braze_field)
                continue
            values[braze_field] = value
        nest_hashes(values, invalid)  # facebook / twitter go as one hash each
        if self.groups_attribute:
            values[self.groups_attribute] = sorted(row.groups) or None
        return Desired(key, values, frozenset(invalid), row.groups & self.synced_groups)
