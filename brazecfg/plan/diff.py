"""The merge-diff: warehouse records and ledger records, both in external_id byte order,
walked together once like a sorted merge join (DESIGN.md invariant 4).

Per record, field hashes decide what to send: only fields whose keyed hash differs from the
ledger's, and None for a field Braze holds that became empty. Memory stays flat: the only
buffers are a few samples, the changes held behind opt-out checks (HELD_LIMIT), at most
SHAPE_LIMIT tuples of field names being counted and, in enrich mode, up to 50 ids waiting
for an existence check.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import IO, Any, Protocol

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
from brazecfg.plan.merge import HashCursor, merge_join, ordered
from brazecfg.plan.records import Desired, RecordBuilder
from brazecfg.state.base import StoredKey
from brazecfg.state.hashing import Hasher
from brazecfg.state.ledger import LedgerRecord
from brazecfg.threads import leave_signals_to_the_main_thread
from brazecfg.warehouse.base import ModelRow

# Given up to 50 external ids, which of them Braze has (enrich mode). Read-only.
ExistsCheck = Callable[[list[str]], set[str]]
EXISTS_BATCH = 50
# Changes held behind opt-out checks in flight (their joins, and every change that came
# after them), at most: past it the merge waits for the oldest check. Answers are taken
# every DRAIN_EVERY held changes too. Before, an answer was only taken when the next check
# started, so every change between two checks waited in memory (with a joiner every 400
# records, 20,000 changes; tests/plan/test_opt_outs_concurrent.py).
HELD_LIMIT = 2000
DRAIN_EVERY = 100
# Tuples of field names counted per change at most (_Diff._emit): a destination whose
# updates set many different sets of fields must not hold one per change.
SHAPE_LIMIT = 1024


class OptOutCheck(Protocol):
    """Given a subscription group id and up to 50 external ids, which of them unsubscribed
    from it in Braze (respect_opt_outs). Read-only, safe to call from ``workers`` threads at
    once (the Braze client's rate limiter is shared)."""

    workers: int

    def __call__(self, group_id: str, external_ids: list[str]) -> set[str]: ...

    # Optional: ``start(calls: [(group id, external ids)]) -> Pending | None`` makes the
    # calls elsewhere, read from the merge's thread with no thread of its own (None: call
    # on the pool instead; see planner._OptOuts).


class Pending(Protocol):
    """Opt-out calls made elsewhere (OptOutCheck.start): who unsubscribed, per call."""

    def done(self) -> bool: ...

    def result(self) -> list[set[str]]: ...


class _Answers:
    """Pending calls, one per group, answered as the pool's Future would: group -> who
    unsubscribed."""

    def __init__(self, groups: list[str], pending: Pending) -> None:
        self._groups = groups
        self._pending = pending

    def done(self) -> bool:
        return self._pending.done()

    def result(self) -> dict[str, set[str]]:
        return dict(zip(self._groups, self._pending.result(), strict=True))


def _ask_opt_outs(check: OptOutCheck, groups: list[str], calls: list[tuple[str, list[str]]]
                  ) -> dict[str, set[str]]:
    """The calls on a pool thread, one after the other: group -> who unsubscribed."""
    return {g: check(group_id, ids) for g, (group_id, ids) in zip(groups, calls, strict=True)}


DUPLICATE_KEY = "duplicate primary key in the primary source; only the first row is used"


def _unique_rows(rows: Iterable[ModelRow], issues: list[Issue], skipped: list[int]
                 ) -> Iterator[ModelRow]:
    """Model rows in checked key order (:func:`ordered`); rows with no key and duplicate keys
    are dropped and reported (the warehouse sorts duplicates deterministically, so the same
    row always wins)."""
    def keyed() -> Iterator[ModelRow]:
        for row in rows:
            if row.key is None or row.key == "":  # NULL keys sort last; never part of the order
                issues.append(Issue("", "external_id",
                                    "a row has an empty primary key; it is skipped"))
                skipped[0] += 1
                continue
            yield row

    previous: str | None = None
    for row in ordered(keyed(), _row_key, what="model rows"):
        if row.key == previous:
            issues.append(Issue(row.key, "external_id", DUPLICATE_KEY))
            skipped[0] += 1
            continue
        previous = row.key
        yield row


class _Hashers(dict[str, Callable[[Any], str]]):
    """Field name -> ``hasher.for_field(name)``, filled on first use: one dict lookup per value."""

    def __init__(self, hasher: Hasher) -> None:
        super().__init__()
        self._hasher = hasher

    def __missing__(self, name: str) -> Callable[[Any], str]:
        fn = self[name] = self._hasher.for_field(name)
        return fn


def _row_key(row: ModelRow) -> str:
    return row.key or ""


def _ledger_key(record: LedgerRecord) -> str:
    return record.external_id


class _Diff:
    def __init__(self, project: Project, destination: Destination, hasher: Hasher,
                 spool: IO[str] | None, exists: ExistsCheck | None,
                 opted_out: OptOutCheck | None = None) -> None:
        self.dest = destination
        self.opted_out = opted_out
        self._joins_waiting: list[RecordChange] = []
        # opt-out checks in flight, oldest first: (their joins, the answer per group, the
        # changes emitted after them), so changes are emitted in the order they came
        self._checks: deque[tuple[list[RecordChange], Future[dict[str, set[str]]] | _Answers,
                                  list[RecordChange]]] = deque()
        self._pool: ThreadPoolExecutor | None = None
        self._held = 0  # changes in self._checks (HELD_LIMIT)
        self._group_ids = {s.group: s.subscription_group_id
                           for s in destination.subscription_groups}
        self.mode = destination.mode
        self.builder = RecordBuilder(project, destination)
        self.hasher = hasher
        self._hashers = _Hashers(hasher)  # field -> its hash function, looked up per value
        self.spool = spool
        self.exists = exists
        self.plan = DestinationPlan(destination.name, destination.mode, destination.model)
        self.issues: list[Issue] = []
        self._enrich_waiting: list[RecordChange] = []
        # per action, the samples kept so far as (key hash, change): see _sample
        self._samples: dict[Action, list[tuple[bytes, RecordChange]]] = {}
        # record hashes of records being judged, stored with their change when it is emitted
        self._row_hashes: dict[str, bytes] = {}
        # [key, hex hash] lines of records read whose confirmed state already matches: apply
        # stores their hash so the next plan need not read them (None: no apply follows)
        self.rehash: IO[str] | None = None
        # No field of the destination holds a nested object (facebook, twitter): a change
        # with every value set is counted by its fields' tuple (_emit, _count_shapes).
        self._flat = not self.builder.nests
        self._shapes: dict[tuple[str, ...], int] = {}

    # -- emitting ---------------------------------------------------------------------------
    def emit(self, change: RecordChange) -> None:
        if self.opted_out is not None and change.joins:
            self._joins_waiting.append(change)
            if len(self._joins_waiting) >= EXISTS_BATCH:
                self._start_opt_out_check()
            return
        if self._checks and self._held % DRAIN_EVERY == 0:
            self._drain(block=False)  # the answers in: their changes go out now
        if self._checks:
            self._checks[-1][2].append(change)  # after the joins being checked, as it came
            self._held += 1
            if self._held > HELD_LIMIT:
                self._drain(block=True)
            return
        self._emit(change)

    def check_opt_outs(self) -> None:
        """respect_opt_outs: before a member is subscribed, ask Braze whether they
        unsubscribed from that group there (read-only, 50 ids a call). Those are not
        subscribed, and counted per group. The state still records them as members, so the
        next plan does not ask again, and a later leave is planned as usual.

        The calls run on up to ``opted_out.workers`` threads while the merge goes on; every
        change is still emitted in the order it came (the plan, its digest and the spool are
        those of one call at a time). This waits for every call in flight."""
        self._start_opt_out_check()
        self._drain(block=True, every=True)
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _start_opt_out_check(self) -> None:
        waiting, self._joins_waiting = self._joins_waiting, []
        check = self.opted_out
        if not waiting or check is None:
            return
        groups = sorted({g for c in waiting for g in c.joins})
        calls = [(self._group_ids[g], [c.external_id for c in waiting if g in c.joins])
                 for g in groups]  # one per group its joins go to
        start = getattr(check, "start", None)  # made elsewhere, with no thread here waiting
        pending = start(calls) if start is not None else None
        answer: Future[dict[str, set[str]]] | _Answers
        if pending is not None:
            answer = _Answers(groups, pending)
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=max(1, check.workers),
                                                thread_name_prefix="brazecfg-opt-outs",
                                                initializer=leave_signals_to_the_main_thread)
            answer = self._pool.submit(_ask_opt_outs, check, groups, calls)
        self._checks.append((waiting, answer, []))
        self._held += len(waiting)
        self._drain(block=len(self._checks) > max(1, check.workers)
                    or self._held > HELD_LIMIT)

    def _drain(self, *, block: bool, every: bool = False) -> None:
        """Emit the checked joins at the front, and the changes after them; ``block``: wait
        for the oldest call (``every``: for all of them). A call's error is raised here, and
        the calls not started yet are dropped."""
        while self._checks:
            waiting, answer, after = self._checks[0]
            try:
                if not (block or answer.done()):  # (an answer read elsewhere may raise)
                    return
                out = answer.result()
            except BaseException:
                if self._pool is not None:
                    self._pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = None
                self._checks.clear()
                self._held = 0
                raise
            self._checks.popleft()
            self._held -= len(waiting) + len(after)
            self._emit_checked(waiting, out)
            for change in after:
                self._emit(change)
            block = every

    def _emit_checked(self, waiting: list[RecordChange], out: dict[str, set[str]]) -> None:
        for change in waiting:
            kept = tuple(g for g in change.joins if change.external_id not in out[g])
            if len(kept) != len(change.joins):  # most joiners did not opt out: no copy
                for g in change.joins:
                    if g not in kept:
                        self.plan.opted_out[g] += 1
                change = replace(change, joins=kept)
            self._emit(change)

    def _emit(self, change: RecordChange) -> None:
        plan = self.plan
        plan.counts[change.action.value] += 1
        attrs = change.attributes
        if self._flat and None not in attrs.values():
            # every value set, none nested (a data point each): counted by the fields' tuple,
            # spread into field_sets when the merge ends (_count_shapes), a third of the cost
            shape = tuple(attrs)
            n = self._shapes.get(shape)
            if n is None and len(self._shapes) >= SHAPE_LIMIT:
                self._count_shapes()
            self._shapes[shape] = (n or 0) + 1
            plan.data_points += len(attrs)
        else:
            sets, removals = plan.field_sets, plan.field_removals
            points = 0  # data_points(), in the same pass
            for f, v in attrs.items():
                if v is None:
                    removals[f] += 1
                    points += 1
                else:
                    sets[f] += 1
                    points += len(v) if isinstance(v, dict) and v else 1
            plan.data_points += points
        for g in change.joins:
            plan.joins[g] += 1
        for g in change.leaves:
            plan.leaves[g] += 1
        self._sample(change)
        plan.add_to_digest(change.digest_line())
        row_hash = self._row_hashes.pop(change.external_id, None)  # popped even unspooled:
        if self.spool is not None:  # a plan without a spool must not keep one per record
            self.spool.write(change.to_json(row_hash) + "\n")

    def _sample(self, change: RecordChange) -> None:
        """Keep, per action, the SAMPLE_SIZE changes whose key has the smallest hash: spread
        across the key space (not the lowest ids in byte order: 1, 10, 100, ...) and the same
        on every run for the same changes. A plain hash is enough: it picks, it is never shown."""
        h = hashlib.blake2b(change.external_id.encode("utf-8", "surrogatepass"),
                            digest_size=8).digest()
        kept = self._samples.setdefault(change.action, [])
        if len(kept) >= SAMPLE_SIZE and h >= kept[-1][0]:
            return
        kept.append((h, change))
        kept.sort(key=lambda item: item[0])
        del kept[SAMPLE_SIZE:]
        # shown per action in the order actions first appeared, each in key order
        self.plan.samples = [c for group in self._samples.values()
                             for c in sorted((c for _, c in group),
                                             key=lambda c: c.external_id)]

    def _flush_issues(self) -> None:
        for issue in self.issues:
            self.plan.issue_count += 1
            if len(self.plan.issues) < ISSUE_SAMPLE_SIZE:
                self.plan.issues.append(issue)
        self.issues.clear()

    # -- per record -------------------------------------------------------------------------
    def new_record(self, want: Desired) -> None:
        attrs: dict[str, Any] = {}
        fields: dict[str, str] = {}
        if self.spool is None:
            # A new record's field hashes are only ever stored (by the apply of the spool):
            # a plan that spools nothing has no use for them, and they are most of the
            # per-value cost of a first plan. Nothing else reads them (not the digest, not
            # the samples shown).
            attrs = {f: v for f, v in want.values.items() if v is not None}
        else:
            hashes = self._hashers
            for f, v in want.values.items():
                if v is not None:
                    attrs[f] = v
                    fields[f] = hashes[f](v)
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
                self._row_hashes.pop(change.external_id, None)
                self.plan.counts["skipped"] += 1  # not in Braze: enrich never creates

    def existing_record(self, want: Desired, had: LedgerRecord) -> None:
        attrs: dict[str, object] = {}
        old = had.fields
        # The ledger's fields once this change is confirmed: a copy of ``old``, made at the
        # first difference (most records have none). Each field of ``want`` comes once, so
        # ``old`` answers for it exactly as the copy would.
        fields: dict[str, str] | None = None
        invalid = want.invalid
        hashes = self._hashers
        for f, v in want.values.items():
            if f in invalid:
                continue
            if v is None:
                if f in old:
                    attrs[f] = None
                    if fields is None:
                        fields = dict(old)
                    del fields[f]
                continue
            h = hashes[f](v)
            if old.get(f) != h:
                attrs[f] = v
                if fields is None:
                    fields = dict(old)
                fields[f] = h
        if self.mode == "sync":
            names = self.builder.field_names
            for f in old:  # every field of want is a name; only old ones can be unmapped
                if f not in names:  # no longer mapped
                    attrs[f] = None  # config is the truth: remove what brazecfg put there
                    if fields is None:
                        fields = dict(old)
                    del fields[f]
        # Other modes leave Braze's value and keep its hash: a field brazecfg once wrote stays
        # tracked on every record alike, so a later switch back to sync removes it everywhere
        # (forgetting it on the records written meanwhile would leave them stale for good).
        if not attrs and want.groups == had.groups:
            # Nothing to send.
            self.plan.counts["unchanged"] += 1
            return
        joins = tuple(sorted((want.groups - had.groups) & self.builder.subscribed_groups))
        leaving = had.groups - want.groups
        leaves = tuple(sorted(leaving & self.builder.subscribed_groups)) if (
            self.dest.unsubscribe_on_leave) else ()
        self.emit(RecordChange(Action.UPDATE, want.external_id, attrs,
                               dict(old) if fields is None else fields, want.groups,
                               joins, leaves))

    def gone(self, had: LedgerRecord) -> None:
        if self.mode == "sync":
            self.emit(RecordChange(Action.DELETE, had.external_id))
        elif (leaver := self.leaver_change(had)) is not None:
            self.emit(leaver)
        else:
            self.plan.counts["kept"] += 1  # additive and enrich never delete

    def leaver_change(self, had: LedgerRecord) -> RecordChange | None:
        """With ``unsubscribe_leavers`` (additive and enrich): a record that left the model
        keeps its profile but leaves every group brazecfg subscribed it to, and its groups
        attribute is emptied, as Grouparoo did. None when there is nothing left to take away
        (it was done on an earlier apply), so the record then counts as kept."""
        if not self.dest.unsubscribe_leavers:
            return None
        leaves = tuple(sorted(had.groups & self.builder.subscribed_groups))
        fields = dict(had.fields)
        attrs: dict[str, object] = {}
        ga = self.builder.groups_attribute
        if ga and ga in fields:
            attrs[ga] = None
            del fields[ga]
        if not leaves and not attrs and not had.groups:
            return None
        return RecordChange(Action.UPDATE, had.external_id, attrs, fields, frozenset(), (), leaves)

    def run(self, rows: Iterable[ModelRow], ledger: Iterable[LedgerRecord],
            recheck: frozenset[str], *,
            hashes: Iterable[tuple[str, bytes | None, frozenset[str] | None]] | None = None,
            load: Load | None = None, limit: int | None = None,
            joined: JoinedState | None = None) -> list[Refetch]:
        """The merge. Returns the records to read by key: the caller reads them and passes
        them to :meth:`finish`.

        Without ``hashes``, ``rows`` are every record (a full read). With ``hashes`` (every
        record key with the warehouse's record hash, and its groups or None), ``rows`` are
        the records changed since the last run (an incremental read) or none: a state record
        without a row whose stored hash differs from the warehouse's (or is missing), or
        whose synced groups differ (when groups are given), is read again by key, so is
        every key neither the rows nor the state hold (a row that arrived late or with an
        old ``updated_at``, a user enrich skipped, a create Braze refused) and every
        ``recheck`` id (records Braze rejected last time); equal hashes are unchanged; a
        state record whose key is gone from the warehouse is gone. The state may then be
        read light (``StoredKey``): ``load`` gives full records for the ones judged, a
        batch at a time.

        ``joined``: the warehouse compared the hashes with the state's itself (README "How
        it works", the diff in the warehouse), so ``hashes`` and ``ledger`` hold only the keys
        whose hashes differ; every other state record is unchanged unless a row of ``rows``
        names it (its state record is then loaded by key), and the members per group come
        from ``joined``."""
        skipped = [0]
        refetch: list[Refetch] = []
        cap = REFETCH_LIMIT if limit is None else limit
        digests = HashCursor(hashes, what="record hashes") if hashes is not None else None
        light_gone: list[LedgerRecord] = []
        light_rows: list[tuple[ModelRow, StoredKey]] = []
        # joined: rows whose state record the warehouse left out (same hash), and how many
        # of those the state has; the recheck ids met so far (only those: a set of every
        # key would grow with the model)
        unpaired: list[ModelRow] = []
        loaded = [0]
        met: set[str] = set()

        def again(key: str, had: LedgerRecord | None) -> None:
            refetch.append(Refetch(key, had))
            if key in recheck:
                met.add(key)
            if len(refetch) > cap:
                raise TooManyToRefetch(len(refetch))

        def judge_unpaired() -> None:
            assert load is not None
            full = load([row.key for row in unpaired])
            for row in unpaired:
                had = full.get(row.key)
                loaded[0] += int(had is not None)
                self.record(row, had)
            unpaired.clear()

        def missed(key: str) -> None:
            again(key, None)

        def judge_light_rows() -> None:
            assert load is not None
            full = load([had.external_id for _, had in light_rows])
            for row, had in light_rows:
                self.record(row, full.get(had.external_id, had))
            light_rows.clear()

        state = ordered(ledger, _ledger_key, what="records", state=True)
        members = self.plan.members
        if joined is not None:
            members.update(joined.members)
        synced = self.builder.synced_groups
        read = 0
        for row, had in merge_join(_unique_rows(rows, self.issues, skipped), state,
                                   _row_key, _ledger_key):
            if had is not None:
                if joined is None:
                    for g in had.groups:
                        members[g] += 1
                elif had.external_id in recheck:
                    met.add(had.external_id)
            if row is None:
                assert had is not None
                found = same = False
                if digests is not None:
                    found, h, groups = digests.find(had.external_id, missed)
                    same = (found and h is not None and h == had.row_hash
                            and (groups is None or groups & synced == had.groups))
                if not found:
                    if isinstance(had, StoredKey) and self.mode != "sync":
                        light_gone.append(had)  # judged below, with its fields
                    else:
                        self.gone(had)
                elif isinstance(had, Intent):  # never confirmed, still wanted: a create
                    again(had.external_id, None)
                elif had.external_id in recheck or not same:
                    again(had.external_id, had)  # its sources changed since it was confirmed
                else:
                    self.plan.counts["unchanged"] += 1  # not changed since
                continue
            read += 1
            if row.key in recheck:
                met.add(row.key)
            if digests is not None:
                digests.find(row.key, missed)
            if had is None and joined is not None:
                unpaired.append(row)  # in the state with the same hash, or new
                if len(unpaired) >= REFETCH_BATCH:
                    judge_unpaired()
                continue
            if isinstance(had, StoredKey):
                light_rows.append((row, had))  # judged with its full record, in batches
                if len(light_rows) >= REFETCH_BATCH:
                    judge_light_rows()
                continue
            self.record(row, had)
        if light_rows:
            judge_light_rows()
        if unpaired:
            judge_unpaired()
        for k in (digests.rest() if digests is not None else ()):
            missed(k)
        if joined is not None and recheck - met:
            assert load is not None
            left = sorted(recheck - met)  # same hash: the warehouse left them out
            for i in range(0, len(left), REFETCH_BATCH):
                full = load(left[i:i + REFETCH_BATCH])
                for k in left[i:i + REFETCH_BATCH]:
                    loaded[0] += int(k in full)
                    again(k, full.get(k))
        for i in range(0, len(light_gone), REFETCH_BATCH):
            part = light_gone[i:i + REFETCH_BATCH]
            assert load is not None
            full = load([r.external_id for r in part])
            for r in part:
                self.gone(full.get(r.external_id, r))
        self.plan.counts["skipped"] += skipped[0]
        self.plan.source_rows = digests.seen if digests is not None else read + skipped[0]
        if joined is not None:
            # the state records the warehouse left out: its records with the same hash
            left_out = joined.state_count - joined.state_seen
            self.plan.counts["unchanged"] += left_out - loaded[0]
            self.plan.source_rows += left_out
        if digests is not None:
            self.plan.hashes_compared = (self.plan.source_rows if joined is not None
                                         else digests.seen)
        return refetch

    def record(self, row: ModelRow, had: LedgerRecord | None) -> None:
        want = self.builder.build(row, self.issues)
        clean = not self.issues  # a record with a value that is not sent keeps no hash
        if want is None:
            # A bad row is skipped, never taken for a deletion of what Braze holds.
            self.plan.counts["skipped"] += 1
        elif had is None or isinstance(had, Intent):  # an intent: never confirmed
            if clean and row.row_hash is not None:
                self._row_hashes[row.key] = row.row_hash
            self.new_record(want)
        else:
            if clean and row.row_hash is not None:
                self._row_hashes[row.key] = row.row_hash
            unchanged = self.plan.counts["unchanged"]
            self.existing_record(want, had)
            if self.plan.counts["unchanged"] > unchanged:  # nothing sent: nothing emitted
                h = self._row_hashes.pop(row.key, None)
                if h is not None and h != had.row_hash:
                    self.plan.rehashed += 1
                    if self.rehash is not None:
                        self.rehash.write(json.dumps([row.key, h.hex()]) + "\n")
        if self.issues:
            self._flush_issues()

    def duplicate(self, key: str) -> None:
        """Another row with the key of a record read by key: reported and skipped, as a
        full read does (the warehouse's order of the rows settles which one is used)."""
        self.issues.append(Issue(key, "external_id", DUPLICATE_KEY))
        self.plan.counts["skipped"] += 1

    def finish(self, refetched: Iterable[tuple[ModelRow, LedgerRecord | None]]) -> DestinationPlan:
        for row, had in refetched:
            self.record(row, had)
        self._check_existing()
        self.check_opt_outs()
        self._flush_issues()
        self._count_shapes()
        return self.plan

    def _count_shapes(self) -> None:
        sets = self.plan.field_sets
        for shape, n in self._shapes.items():
            for f in shape:
                sets[f] += n
        self._shapes.clear()


def data_points(attributes: dict[str, Any]) -> int:
    """What Braze bills for these attributes (``../shared/braze-api-facts.md``, Data points):
    one per attribute set, ``null`` included; a whole array once; a nested object once per
    key. external_id and subscription changes are free."""
    n = 0
    for v in attributes.values():
        n += len(v) if isinstance(v, dict) and v else 1
    return n


class JoinedState:
    """The diff of record hashes run in the warehouse (``Warehouse.stream_hash_changes``),
    split into the two streams the merge walks: the warehouse's keys whose hash differs
    (``hashes``) and the state's records whose hash differs (``records``, light), read
    together from one query, each as far as the other's consumer has pulled. ``state_count``:
    every record the state holds for the destination; ``members``: per group, how many."""

    def __init__(self, changes: Iterator[tuple[str | None, bytes | None, str | None, Any,
                                               bytes | None]],
                 light: Callable[[str, Any, bytes | None], StoredKey], *, state_count: int,
                 members: dict[str, int]) -> None:
        self._changes = changes
        self._light = light
        self._hashes: deque[tuple[str, bytes | None, frozenset[str] | None]] = deque()
        self._records: deque[StoredKey] = deque()
        self.state_count = state_count
        self.state_seen = 0
        self.members = members

    def _pull(self) -> bool:
        item = next(self._changes, None)
        if item is None:
            return False
        wk, wh, sk, sg, sh = item
        if wk is not None:
            self._hashes.append((wk, wh, None))
        if sk is not None:
            self._records.append(self._light(sk, sg, sh))
            self.state_seen += 1
        return True

    def hashes(self) -> Iterator[tuple[str, bytes | None, frozenset[str] | None]]:
        while self._hashes or self._pull():
            if self._hashes:
                yield self._hashes.popleft()

    def records(self) -> Iterator[StoredKey]:
        while self._records or self._pull():
            if self._records:
                yield self._records.popleft()


@dataclass(frozen=True)
class Refetch:
    """A record to read by key after the merge, with what the state holds for it."""

    key: str
    had: LedgerRecord | None


def diff_destination(project: Project, destination: Destination, rows: Iterable[ModelRow],
                     ledger: Iterator[LedgerRecord], hasher: Hasher, *,
                     spool: IO[str] | None = None, exists: ExistsCheck | None = None,
                     recheck: frozenset[str] = frozenset(), fetch: Fetch | None = None,
                     opted_out: OptOutCheck | None = None,
                     hashes: Iterator[tuple[str, bytes | None, frozenset[str] | None]]
                     | None = None,
                     load: Load | None = None, rehash: IO[str] | None = None,
                     limit: int | None = None,
                     joined: JoinedState | None = None) -> DestinationPlan:
    """Compare what the warehouse wants with what Braze confirmed, for one destination.

    A full read passes every record as ``rows``. Plans comparing record hashes also pass
    ``hashes``, every record key with its record hash, and as ``rows`` the records changed
    since the last run (incremental reads, which compare related-row counts) or none (which
    compare every value): a state record absent from ``rows`` is unchanged if its hash is
    still the stored one, read again by key with ``fetch`` if not, and gone (a deletion) if
    its key is gone. Every key in neither ``rows`` nor the state, and every ``recheck`` id,
    is read by key too: a plan never misses a record the state does not have. ``load`` gives
    full state records for a light ledger stream; ``rehash`` receives the hashes of records
    read that need no change (apply stores them)."""
    diff = _Diff(project, destination, hasher, spool, exists, opted_out)
    diff.rehash = rehash
    refetch = diff.run(rows, ledger, recheck, hashes=hashes, load=load, limit=limit,
                       joined=joined)
    if refetch and fetch is None:
        raise AssertionError("a diff comparing record hashes needs a fetch function")
    if refetch:
        assert fetch is not None
        diff.plan.late_records = len(refetch)
    return diff.finish(_refetched(refetch, fetch, load, diff.duplicate)
                       if refetch and fetch else ())


Fetch = Callable[[list[str]], Iterator[ModelRow]]
# Full state records by id (those the state has), for records read light (StoredKey).
Load = Callable[[list[str]], dict[str, LedgerRecord]]
REFETCH_BATCH = 1000
# Past this many records to read by key, one full read is cheaper than the key lookups.
REFETCH_LIMIT = 5000


class TooManyToRefetch(Exception):
    """An incremental read would need too many lookups by key: read everything instead."""

    def __init__(self, n: int) -> None:
        self.n = n
        super().__init__(n)


def _refetched(refetch: list[Refetch], fetch: Fetch, load: Load | None = None,
               duplicate: Callable[[str], None] | None = None
               ) -> Iterator[tuple[ModelRow, LedgerRecord | None]]:
    """The records to read again, by key, a batch at a time in key order (so a warehouse
    seeks its key index), each with its full state record; ``duplicate`` hears the key of
    every further row of a key already read (a duplicate primary key: the first row wins)."""
    refetch = sorted(refetch, key=lambda r: r.key)
    for i in range(0, len(refetch), REFETCH_BATCH):
        part = {r.key: r.had for r in refetch[i:i + REFETCH_BATCH]}
        light = [k for k, had in part.items() if isinstance(had, StoredKey)]
        if light:
            assert load is not None
            full = load(light)
            for k in light:
                part[k] = full.get(k, part[k])
        taken: set[str] = set()
        for row in fetch(sorted(part)):
            if row.key in part:
                taken.add(row.key)
                yield row, part.pop(row.key)
            elif row.key in taken and duplicate is not None:
                duplicate(row.key)
