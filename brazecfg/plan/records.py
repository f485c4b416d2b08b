"""A warehouse row becomes the record a destination wants Braze to hold.

Each mapped property is normalised to its type and checked against the Braze field it feeds;
a value that fails is reported (record, field, reason) and left out: not sent, not removed,
so Braze keeps what it had. The rest of the record still syncs.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from brazecfg.braze.standard_fields import hash_of, nest_hashes
from brazecfg.model.resources import Destination, Project
from brazecfg.plan.definition import Issue
from brazecfg.plan.values import Convert, ValueProblem, converter
from brazecfg.warehouse.base import ModelRow

MAX_EXTERNAL_ID_BYTES = 987
_NONE: frozenset[str] = frozenset()
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def key_problem(key: str) -> str:
    """Why ``key`` cannot be an external id as it is ("" when it can). A key with leading or
    trailing whitespace, or a control character, looks like another key but is not one."""
    if key != key.strip():
        return ("has leading or trailing whitespace; skipped (trim it in the warehouse, "
                "e.g. TRIM(id), if that is the id you mean)")
    if _CONTROL.search(key):
        return "holds a control character (tab, newline, escape); skipped (fix it in the warehouse)"
    return ""


class Desired(NamedTuple):  # one per row: a tuple is the cheapest frozen record
    external_id: str
    values: dict[str, Any]  # Braze field -> value (None: empty, remove if Braze has it)
    invalid: frozenset[str]  # fields whose value failed a check: leave Braze's value alone
    groups: frozenset[str]  # synced groups the record belongs to


class RecordBuilder:
    def __init__(self, project: Project, destination: Destination) -> None:
        self.destination = destination
        # (field, property, its normalise + check_field compiled once: values.converter)
        self._fields: list[tuple[str, str, Convert]] = []
        standard = set(destination.mapping)
        for braze_field, prop in sorted(destination.fields().items()):
            self._fields.append((braze_field, prop, converter(
                project.properties[prop].type, braze_field if braze_field in standard else None)))
        self._nests = any(hash_of(f) for f, *_ in self._fields)  # facebook.id and the like
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
    def nests(self) -> bool:
        """Whether a field's value can be a nested object (facebook, twitter: nest_hashes)."""
        return self._nests

    @property
    def field_names(self) -> frozenset[str]:
        return self._field_names

    def build(self, row: ModelRow, issues: list[Issue]) -> Desired | None:
        """The desired record, or None when the row has no usable external id."""
        key = row.key
        problem = key_problem(key) if key != key.strip() or _CONTROL.search(key) else ""
        if problem:
            # Never sent in silence: " 42" and "42" would be two users in Braze.
            issues.append(Issue(key[:60], "external_id", problem))
            return None
        if len(key.encode()) > MAX_EXTERNAL_ID_BYTES:
            issues.append(Issue(key[:40] + "...", "external_id",
                                f"longer than Braze's {MAX_EXTERNAL_ID_BYTES}-byte limit; skipped"))
            return None
        values: dict[str, Any] = {}
        invalid: set[str] | None = None
        raw = row.values
        for braze_field, prop, convert in self._fields:
            try:
                values[braze_field] = convert(raw.get(prop))
            except ValueProblem as problem:
                issues.append(Issue(key, braze_field, str(problem)))
                if invalid is None:
                    invalid = set()
                invalid.add(braze_field)
        if invalid is None:
            invalid = set()
        if self._nests:
            nest_hashes(values, invalid)  # facebook / twitter go as one hash each
        if self.groups_attribute:
            values[self.groups_attribute] = sorted(row.groups) or None
        return Desired(key, values, frozenset(invalid) if invalid else _NONE,
                       row.groups & self.synced_groups if row.groups else _NONE)
