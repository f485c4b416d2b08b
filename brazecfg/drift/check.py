"""``brazecfg drift``: read the current Braze profiles of a sample of synced users and compare
them, field by field, with the state.

A plan compares the warehouse with the state, not with Braze: a value someone changed in
Braze's dashboard (or another integration wrote) is invisible to it. Drift reads Braze
(``/users/export/ids``, 50 users a call, within its rate limit; ``/subscription/status/get``
for synced subscription groups), normalises each value exactly as the plan does (the property's
type, then the Braze field's check) and hashes it with the state's key, so a value Braze merely
spells differently (a date-time for a date) is not drift. It is opt-in and read-only, never
part of a plan; the report holds field names, group names and counts, never values.

With ``repair``, the drifted fields of the sampled users are marked in the state as needing a
write (their hash becomes one no value has), and users Braze no longer has are forgotten, so
the next plan writes them again and shows it. Subscription states changed in Braze are
reported only: an unsubscribe made in Braze is the user's choice (see respect_opt_outs).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from brazecfg.apply.run import Clients
from brazecfg.braze.client import BrazeClient
from brazecfg.braze.standard_fields import STANDARD_FIELDS
from brazecfg.errors import BrazecfgError
from brazecfg.model.resources import App, Destination, Project
from brazecfg.plan.planner import hasher_for
from brazecfg.plan.values import ValueProblem, check_field, normalise
from brazecfg.state.hashing import Hasher
from brazecfg.state.ledger import Failure, Ledger, LedgerRecord
from brazecfg.state.paths import StatePaths
from brazecfg.state.store import locked_state, open_state

BATCH = 50
DRIFTED = "drifted"  # a field hash no value has: the next plan writes the field again
REPAIR_REASON = "changed in Braze (found by brazecfg drift --repair): written again"
SAMPLE_IDS = 5  # ids shown per field in the text report (ids, never values)

ClientFactory = Callable[[App], BrazeClient]


@dataclass
class DestinationDrift:
    destination: str
    sampled: int = 0
    not_in_state: int = 0  # --ids given that the state does not hold
    missing_in_braze: int = 0
    fields: Counter[str] = field(default_factory=Counter)  # field -> users whose value differs
    unsubscribed_in_braze: Counter[str] = field(default_factory=Counter)  # group -> members
    subscribed_in_braze: Counter[str] = field(default_factory=Counter)  # group -> non-members
    example_ids: dict[str, list[str]] = field(default_factory=dict)  # field -> first ids
    repaired_fields: int = 0
    forgotten: int = 0

    @property
    def drifted(self) -> bool:
        return bool(self.missing_in_braze or self.fields or self.unsubscribed_in_braze
                    or self.subscribed_in_braze)

    def to_dict(self) -> dict[str, Any]:
        """Safe to post: counts and names only."""
        return {"destination": self.destination, "sampled": self.sampled,
                "not_in_state": self.not_in_state, "missing_in_braze": self.missing_in_braze,
                "fields": dict(sorted(self.fields.items())),
                "unsubscribed_in_braze": dict(sorted(self.unsubscribed_in_braze.items())),
                "subscribed_in_braze": dict(sorted(self.subscribed_in_braze.items())),
                "repaired_fields": self.repaired_fields, "forgotten": self.forgotten}


def sample_records(records: Iterable[LedgerRecord], n: int, rng: random.Random
                   ) -> list[LedgerRecord]:
    """A uniform sample of ``n`` records in one pass (reservoir sampling): memory is ``n``."""
    out: list[LedgerRecord] = []
    for i, rec in enumerate(records):
        if i < n:
            out.append(rec)
        else:
            j = rng.randrange(i + 1)
            if j < n:
                out[j] = rec
    return sorted(out, key=lambda r: r.external_id)


def pick_records(records: Iterator[LedgerRecord], ids: list[str]
                 ) -> tuple[list[LedgerRecord], int]:
    """The state's records of these ids, and how many ids the state does not hold."""
    wanted = set(ids)
    found = [r for r in records if r.external_id in wanted]
    return found, len(wanted) - len(found)


class _Fields:
    """How each field a destination writes is read back from an exported profile."""

    def __init__(self, project: Project, dest: Destination) -> None:
        self.specs: list[tuple[str, str, bool]] = []  # (field, property type, standard)
        for f, prop in sorted(dest.fields().items()):
            self.specs.append((f, project.properties[prop].type, f in dest.mapping))
        self.groups_attribute = dest.groups_attribute
        self.export_fields = sorted({"external_id", "custom_attributes",
                                     *(f for f, _, std in self.specs if std)})

    def braze_hashes(self, user: dict[str, Any], hasher: Hasher) -> dict[str, str | None]:
        """Field -> the hash of Braze's value normalised like the plan (None: empty; the
        string "unreadable" when it fails the checks a planned value passes)."""
        custom = user.get("custom_attributes") or {}
        out: dict[str, str | None] = {}
        for f, type_, standard in self.specs:
            raw = user.get(f) if standard and f in STANDARD_FIELDS else custom.get(f)
            try:
                value = normalise(raw, type_)
                if standard or value is not None:
                    value = check_field(f if standard else "", value)
            except ValueProblem:
                out[f] = "unreadable"
                continue
            out[f] = None if value is None else hasher.field(f, value)
        if self.groups_attribute:
            raw = custom.get(self.groups_attribute)
            value = sorted(str(v) for v in raw) if isinstance(raw, list) and raw else None
            out[self.groups_attribute] = None if value is None else hasher.field(
                self.groups_attribute, value)
        return out


def check_destination(project: Project, dest: Destination, records: list[LedgerRecord],
                      hasher: Hasher, client: BrazeClient, report: DestinationDrift
                      ) -> tuple[list[LedgerRecord], list[str]]:
    """Compare the sampled records with Braze. Returns the records to mark for a write again
    (fields set to DRIFTED) and the ids Braze no longer has."""
    fields = _Fields(project, dest)
    groups = {s.group: s.subscription_group_id for s in dest.subscription_groups}
    to_mark: list[LedgerRecord] = []
    missing: list[str] = []
    report.sampled += len(records)
    for i in range(0, len(records), BATCH):
        part = records[i:i + BATCH]
        users, unknown = client.export_users([r.external_id for r in part], fields.export_fields)
        by_id = {str(u.get("external_id")): u for u in users}
        present = []
        for rec in part:
            user = by_id.get(rec.external_id)
            if user is None or rec.external_id in unknown:
                report.missing_in_braze += 1
                missing.append(rec.external_id)
                continue
            present.append(rec)
            now = fields.braze_hashes(user, hasher)
            # A field brazecfg never wrote to this user is drift only in sync mode, where the
            # config is the truth; additive and enrich leave other writers' values alone.
            differs = [f for f, h in sorted(now.items()) if rec.fields.get(f) != h
                       and (f in rec.fields or dest.mode == "sync")]
            for f in differs:
                report.fields[f] += 1
                ids = report.example_ids.setdefault(f, [])
                if len(ids) < SAMPLE_IDS:
                    ids.append(rec.external_id)
            if differs:
                marked = dict(rec.fields)
                marked.update({f: DRIFTED for f in differs})
                to_mark.append(LedgerRecord(rec.external_id, marked, rec.groups))
        for g, gid in sorted(groups.items()):
            if not present:
                break
            states = client.subscription_status(gid, [r.external_id for r in present])
            for rec in present:
                state = states.get(rec.external_id)
                if g in rec.groups and state == "Unsubscribed":
                    report.unsubscribed_in_braze[g] += 1
                elif g not in rec.groups and state == "Subscribed":
                    report.subscribed_in_braze[g] += 1
    return to_mark, missing


def check_drift(project: Project, ledger: Ledger, hasher: Hasher, clients: ClientFactory, *,
                sample: int | None = None, ids: list[str] | None = None,
                destinations: list[str] | None = None, repair: bool = False,
                rng: random.Random | None = None) -> list[DestinationDrift]:
    """Drift of every destination (or those named); ``ledger`` is writable when ``repair``."""
    rng = rng or random.Random()
    unknown = sorted(set(destinations or ()) - set(project.destinations))
    if unknown:
        raise BrazecfgError(f"no destination named {', '.join(unknown)} in this project")
    out: list[DestinationDrift] = []
    for name in sorted(project.destinations):
        if destinations and name not in destinations:
            continue
        dest = project.destinations[name]
        report = DestinationDrift(name)
        if ids is not None:
            records, report.not_in_state = pick_records(ledger.stream(name), ids)
        else:
            records = sample_records(ledger.stream(name), sample or 100, rng)
        client = clients(project.apps[dest.app])
        to_mark, missing = check_destination(project, dest, records, hasher, client, report)
        if repair and (to_mark or missing):
            # Listed with the records to retry as well: an incremental read reads those by
            # key, so the next plan sees the marked fields whether or not their rows changed.
            ledger.commit(name, upserts=to_mark, deletes=missing,
                          failures=[Failure(r.external_id, REPAIR_REASON) for r in to_mark])
            report.repaired_fields = sum(report.fields.values())
            report.forgotten = len(missing)
        out.append(report)
    return out


def drift_project(project: Project, *, sample: int | None = None, ids: list[str] | None = None,
                  destinations: list[str] | None = None, repair: bool = False,
                  on_wait: Callable[[str], None] | None = None) -> list[DestinationDrift]:
    """Open the state (read-only; writable under the apply lock with ``repair``), check it
    against Braze, close everything."""
    paths = StatePaths.of(project.settings)
    clients = Clients()
    try:
        if not repair:
            with open_state(project, writable=False) as ledger:
                return _checked(project, ledger, paths, clients, sample, ids, destinations,
                                False)
        with locked_state(project, "brazecfg drift --repair", on_wait=on_wait) as ledger:
            return _checked(project, ledger, paths, clients, sample, ids, destinations, True)
    finally:
        clients.close()


def _checked(project: Project, ledger: Ledger, paths: StatePaths, clients: ClientFactory,
             sample: int | None, ids: list[str] | None, destinations: list[str] | None,
             repair: bool) -> list[DestinationDrift]:
    if not any(ledger.count(d) for d in project.destinations):
        raise BrazecfgError("the state holds no synced users yet: drift compares Braze with "
                            "what brazecfg confirmed, so run `brazecfg apply` first")
    hasher = hasher_for(paths, ledger, create=False)
    return check_drift(project, ledger, hasher, clients, sample=sample, ids=ids,
                       destinations=destinations, repair=repair)
