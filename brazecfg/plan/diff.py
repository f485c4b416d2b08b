"""The merge-diff: warehouse records and ledger records, both in external_id byte order,
walked together once like a sorted merge join (DESIGN.md invariant 4).

Per record, field hashes decide what to send: only fields whose keyed hash differs from the
ledger's, and None for a field Braze holds that became empty. Memory stays flat: the only
buffers are a few samples and, in enrich mode, up to 50 ids waiting for an existence check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import IO

from brazecfg.errors import WarehouseError
from brazecfg.model.resources import Destination, Project
from brazecfg.plan.definition import (
    ISSUE_SAMPLE_SIZE,
    SAMPLE_SIZE,
    Action,
    DestinationPlan,
    Issue,
    RecordChange,
)
from brazecfg.plan.intents import Intent
from brazecfg.plan.records import Desired, RecordBuilder
from brazecfg.state.hashing import Hasher
from brazecfg.state.ledger import LedgerRecord
from brazecfg.warehouse.base import ModelRow

# Given up to 50 external ids, which of them Braze has (enrich mode). Read-only.
ExistsCheck = Callable[[list[str]], set[str]]
EXISTS_BATCH = 50


def _ordered(rows: Iterable[ModelRow], issues: list[Issue], skipped: list[int]
             ) -> Iterator[ModelRow]:
    """Guard the merge's precondition; drop rows with no key and duplicate keys (reported)."""
    previous: str | None = None
    for row in rows:
        if row.key is None or row.key == "":
            issues.append(Issue("", "external_id", "a row has an empty primary key; it is skipped"))
            skipped[0] += 1
            continue
        if previous is not None:
            if row.key == previous:
                issues.append(Issue(row.key, "external_id",
                                    "duplicate primary key in the primary source; only the first row is used"))
                skipped[0] += 1
                continue
            if row.key < previous:
                raise WarehouseError(
                    "the warehouse returned records out of key order "
                    f"({row.key!r} after {previous!r}); its collation must compare bytes")
        previous = row.key
        yield row


def merge(rows: Iterator[ModelRow], ledger: Iterator[LedgerRecord]
          ) -> Iterator[tuple[ModelRow | None, LedgerRecord | None]]:
    r = next(rows, None)
    led = next(ledger, None)
    while r is not None or led is not None:
        if led is None or (r is not None and r.key < led.external_id):
            yield r, None
            r = next(rows, None)
        elif r is None or led.external_id < r.key:
            yield None, led
            led = next(ledger, None)
        else:
            yield r, led
            r, led = next(rows, None), next(ledger, None)


class KeyCursor:
    """Membership tests against a sorted key stream, for increasing keys, in one pass."""

    def __init__(self, keys: Iterator[str]) -> None:
        self._keys = keys
        self._current = next(keys, None)

    def contains(self, key: str) -> bool:
        while self._current is not None and self._current < key:
            self._current = next(self._keys, None)
        return self._current == key


class _Diff:
    def __init__(self, project: Project, destination: Destination, hasher: Hasher,
                 spool: IO[str] | None, exists: ExistsCheck | None) -> None:
        self.dest = destination
        self.mode = destination.mode
        self.builder = RecordBuilder(project, destination)
        self.hasher = hasher
        self.spool = spool
        self.exists = exists
        self.plan = DestinationPlan(destination.name, destination.mode, destination.model)
        self.issues: list[Issue] = []
        self._enrich_waiting: list[RecordChange] = []

    # -- emitting ---------------------------------------------------------------------------
    def emit(self, change: RecordChange) -> None:
        plan = self.plan
        plan.counts[change.action.value] += 1
        for f, v in change.attributes.items():
            (plan.field_removals if v is None else plan.field_sets)[f] += 1
        for g in change.joins:
            plan.joins[g] += 1
        for g in change.leaves:
            plan.leaves[g] += 1
        if sum(1 for s in plan.samples if s.action is change.action) < SAMPLE_SIZE:
            plan.samples.append(change)
        line = change.to_json()
        plan.add_to_digest(line)
        if self.spool is not None:
            self.spool.write(line + "\n")

    def _flush_issues(self) -> None:
        for issue in self.issues:
            self.plan.issue_count += 1
            if len(self.plan.issues) < ISSUE_SAMPLE_SIZE:
                self.plan.issues.append(issue)
        self.issues.clear()

    # -- per record -------------------------------------------------------------------------
    def new_record(self, want: Desired) -> None:
        attrs = {f: v for f, v in want.values.items() if v is not None}
        fields = {f: self.hasher.field(f, v) for f, v in attrs.items()}
        joins = tuple(sorted(want.groups & self.builder.subscribed_groups))
        action = Action.ENRICH if self.mode == "enrich" else Action.CREATE
        change = RecordChange(action, want.external_id, attrs, fields, want.groups, joins, ())
        if action is Action.ENRICH and self.exists is not None:
            self._enrich_waiting.append(change)
            if len(self._enrich_waiting) >= EXISTS_BATCH:
                self._check_existing()
        else:
            self.emit(change)

    def _check_existing(self) -> None:
        waiting, self._enrich_waiting = self._enrich_waiting, []
        if not waiting or self.exists is None:
            return
        known = self.exists([c.external_id for c in waiting])
        for change in waiting:
            if change.external_id in known:
                self.emit(change)
            else:
                self.plan.counts["skipped"] += 1  # not in Braze: enrich never creates

    def existing_record(self, want: Desired, had: LedgerRecord) -> None:
        attrs: dict[str, object] = {}
        fields = dict(had.fields)
        for f, v in want.values.items():
            if f in want.invalid:
                continue
            if v is None:
                if f in fields:
                    attrs[f] = None
                    del fields[f]
                continue
            h = self.hasher.field(f, v)
            if fields.get(f) != h:
                attrs[f] = v
                fields[f] = h
        for f in list(fields):
            if f not in self.builder.field_names:  # no longer mapped
                if self.mode == "sync":
                    attrs[f] = None  # config is the truth: remove what brazecfg put there
                del fields[f]  # other modes: leave Braze's value, stop tracking it
        joins = tuple(sorted((want.groups - had.groups) & self.builder.subscribed_groups))
        leaving = had.groups - want.groups
        leaves = tuple(sorted(leaving & self.builder.subscribed_groups)) if (
            self.dest.unsubscribe_on_leave) else ()
        if not attrs and want.groups == had.groups:
            # Nothing to send. A field that left the mapping in additive/enrich mode is only
            # forgotten when the record is next written: not worth a write of its own.
            self.plan.counts["unchanged"] += 1
            return
        self.emit(RecordChange(Action.UPDATE, want.external_id, attrs, fields, want.groups,
                               joins, leaves))

    def gone(self, had: LedgerRecord) -> None:
        if self.mode == "sync":
            self.emit(RecordChange(Action.DELETE, had.external_id))
        else:
            self.plan.counts["kept"] += 1  # additive and enrich never delete

    def run(self, rows: Iterable[ModelRow], ledger: Iterator[LedgerRecord],
            keys: Iterator[str] | None) -> DestinationPlan:
        skipped = [0]
        present = KeyCursor(keys) if keys is not None else None
        for row, had in merge(_ordered(rows, self.issues, skipped), ledger):
            if row is None:
                assert had is not None
                if present is not None and present.contains(had.external_id):
                    self.plan.counts["unchanged"] += 1  # incremental: not changed since
                else:
                    self.gone(had)
                continue
            want = self.builder.build(row, self.issues)
            if want is None:
                # A bad row is skipped, never taken for a deletion of what Braze holds.
                self.plan.counts["skipped"] += 1
            elif had is None or isinstance(had, Intent):  # an intent: never confirmed
                self.new_record(want)
            else:
                self.existing_record(want, had)
            if self.issues:
                self._flush_issues()
        self._check_existing()
        self._flush_issues()
        self.plan.counts["skipped"] += skipped[0]
        return self.plan


def diff_destination(project: Project, destination: Destination, rows: Iterable[ModelRow],
                     ledger: Iterator[LedgerRecord], hasher: Hasher, *,
                     spool: IO[str] | None = None, exists: ExistsCheck | None = None,
                     keys: Iterator[str] | None = None) -> DestinationPlan:
    """Compare what the warehouse wants with what Braze confirmed, for one destination.

    Incremental reads pass only the records changed since the last run as ``rows``, and
    ``keys``, every record key: a ledger record absent from ``rows`` is then unchanged if its
    key is still in ``keys``, and gone (a deletion) otherwise."""
    return _Diff(project, destination, hasher, spool, exists).run(rows, ledger, keys)
