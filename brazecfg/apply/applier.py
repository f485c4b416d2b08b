"""apply: send exactly what the plan counted, and record in the ledger what Braze confirmed.

Per destination, the plan's spooled record changes are cut into chunks of at most 75 records
(Braze's /users/track cap). Chunks run concurrently on a small thread pool, each one
sending its attributes, then its subscription changes (at most 50 ids a call), and the main
thread commits each finished chunk to the ledger in one transaction: accepted records with
their new field hashes, rejected ones with Braze's reason (the ledger keeps their old state,
so the next plan sends them again). Deletions go 50 ids a request. In-flight work is bounded,
so memory stays flat however many records change.

What leaves is recorded by the worker that sends it, right before the bytes go (the client's
``SendHooks``): event rows are marked ``sending`` and the ids of new users are recorded as
create intents. Nothing merely queued is ever marked, so a crash (kill -9) leaves "unknown"
only requests that may have left; a request that provably processed nothing (a refused
connection, a 429) puts its rows back as they were.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, TypeVar

from brazecfg.apply.stop import Interrupted, StopRequest
from brazecfg.braze.client import BrazeClient, DeliveryUnknown, SendHooks
from brazecfg.braze.settings import event_batches, track_batches
from brazecfg.errors import BrazeError
from brazecfg.model.resources import Destination, Project
from brazecfg.plan.definition import Action, DestinationPlan, RecordChange
from brazecfg.state.ledger import EventMark, Failure, Ledger, LedgerRecord, Previous

TRACK_BATCH = 75
IDS_BATCH = 50
T = TypeVar("T")

Progress = Callable[[str, int], None]  # (destination, records done so far)


@dataclass
class DestinationResult:
    destination: str
    created: int = 0
    updated: int = 0
    enriched: int = 0
    deleted: int = 0
    failed: int = 0
    subscribed: int = 0
    unsubscribed: int = 0
    failures: list[Failure] = field(default_factory=list)  # first few, for the summary
    events_sent: int = 0
    events_failed: int = 0
    events_unknown: int = 0
    events_unknown_before: int = 0  # unknown since an earlier run, not resent by this one

    def count(self, action: Action) -> None:
        match action:
            case Action.CREATE:
                self.created += 1
            case Action.UPDATE:
                self.updated += 1
            case Action.ENRICH:
                self.enriched += 1
            case Action.DELETE:
                self.deleted += 1


@dataclass
class ChunkOutcome:
    accepted: list[RecordChange]
    failed: list[Failure]


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


class DestinationApplier:
    def __init__(self, project: Project, destination: Destination, client: BrazeClient,
                 ledger: Ledger) -> None:
        self.dest = destination
        self.client = client
        self.ledger = ledger
        self.group_ids = {s.group: s.subscription_group_id for s in destination.subscription_groups}
        # (group id, state, group) -> ids waiting for a full batch of 50; bounded by 50 per key.
        self._sub_queue: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        # Records with only group changes still waiting for calls: id -> (calls left, failed).
        self._open: dict[str, tuple[int, bool]] = {}

    # -- one chunk, in a worker thread ------------------------------------------------------
    def _track_object(self, change: RecordChange) -> dict[str, Any]:
        obj: dict[str, Any] = {"external_id": change.external_id}
        obj.update(change.attributes)
        if change.action is Action.ENRICH or self.dest.mode == "enrich":
            obj["_update_existing_only"] = True  # enrich never creates, even in a race
        return obj

    def send_chunk(self, batch: list[RecordChange]) -> ChunkOutcome:
        failed: dict[str, str] = {}
        # A new user is created even with no attribute to set (its groups need a profile).
        with_attrs = [c for c in batch if c.attributes or c.action is Action.CREATE]
        if with_attrs:
            creates = [c.external_id for c in with_attrs if c.action is Action.CREATE]
            recorded: list[list[str]] = []

            def leaving() -> None:
                # Before an attempt leaves: Braze may have these users from now on.
                if creates and not recorded:
                    recorded.append(self.ledger.add_intents(self.dest.name, creates))

            def refused() -> None:
                # Provably not processed (a refused connection, a 429): the intents this
                # request added are not users Braze may have; earlier ones stay.
                if recorded:
                    self.ledger.clear_intents(self.dest.name, recorded.pop())

            response = self.client.track(attributes=[self._track_object(c) for c in with_attrs],
                                         hooks=SendHooks(leaving=leaving, refused=refused))
            errors = response.body.get("errors") or []
            if response.status == 400 and not errors:
                raise BrazeError(f"app/{self.client.settings.app}: /users/track refused a batch: "
                                 f"{str(response.body.get('message', ''))[:200]}", 400)
            for err in errors:
                idx = err.get("index")
                if err.get("input_array", "attributes") == "attributes" and isinstance(idx, int) \
                        and 0 <= idx < len(with_attrs):
                    failed[with_attrs[idx].external_id] = str(err.get("type", "rejected by Braze"))
            if response.status == 400:
                # A 400 processed nothing, even objects its errors do not name.
                msg = str(response.body.get("message", "request refused"))[:200]
                for c in with_attrs:
                    failed.setdefault(c.external_id, msg)
        return ChunkOutcome([c for c in batch if c.external_id not in failed],
                            [Failure(i, r) for i, r in sorted(failed.items())])

    # -- subscription groups: full batches of 50 across chunks ------------------------------
    def _queue_subscriptions(self, change: RecordChange) -> int:
        """Queue a record's joins and leaves (its profile write, if any, was confirmed)."""
        n = 0
        for groups, state in ((change.joins, "subscribed"), (change.leaves, "unsubscribed")):
            for g in groups:
                if g in self.group_ids:
                    self._sub_queue[(self.group_ids[g], state, g)].append(change.external_id)
                    n += 1
        return n

    def _full_subscription_batches(self, *, flush: bool = False) -> Iterator[Step]:
        for key in sorted(self._sub_queue):
            ids = self._sub_queue[key]
            while len(ids) >= IDS_BATCH or (flush and ids):
                part, ids[:] = ids[:IDS_BATCH], ids[IDS_BATCH:]
                yield Step(self.send_subscription, (*key, part), self._commit_subscription)
        for key in [k for k, v in self._sub_queue.items() if not v]:
            del self._sub_queue[key]

    def send_subscription(self, job: tuple[str, str, str, list[str]]) -> SubscriptionOutcome:
        group_id, state, group, ids = job
        r = self.client.set_subscription(group_id, state, ids)
        reason = None
        if r.status >= 400:
            reason = f"subscription {state} refused: {str(r.body.get('message', ''))[:120]}"
        return SubscriptionOutcome(group, state, ids, reason)

    def _commit_subscription(self, outcome: SubscriptionOutcome, result: DestinationResult
                             ) -> None:
        if outcome.reason is None:
            self.ledger.update_groups(self.dest.name, outcome.ids, outcome.group,
                                      member=outcome.state == "subscribed")
            if outcome.state == "subscribed":
                result.subscribed += len(outcome.ids)
            else:
                result.unsubscribed += len(outcome.ids)
        else:
            # The ledger keeps the old membership: the next plan plans this change again.
            failures = [Failure(i, outcome.reason) for i in outcome.ids]
            self.ledger.commit(self.dest.name, failures=failures)
            self._note_failures(failures, result)
        for i in outcome.ids:  # records with only group changes count once all their calls ended
            if i in self._open:
                left, failed = self._open[i]
                failed = failed or outcome.reason is not None
                if left > 1:
                    self._open[i] = (left - 1, failed)
                    continue
                del self._open[i]
                if not failed:
                    result.updated += 1

    def send_deletes(self, batch: list[RecordChange]) -> ChunkOutcome:
        r = self.client.delete([c.external_id for c in batch])
        if r.status >= 400:
            reason = f"delete refused: {str(r.body.get('message', ''))[:120]}"
            return ChunkOutcome([], [Failure(c.external_id, reason) for c in batch])
        return ChunkOutcome(batch, [])

    # -- the whole destination, main thread commits -----------------------------------------
    def commit(self, outcome: ChunkOutcome, result: DestinationResult) -> None:
        """Record what Braze confirmed. Subscription groups are confirmed by their own calls:
        until then the ledger keeps the record's old membership of those groups."""
        upserts = []
        for c in outcome.accepted:
            if c.action is Action.DELETE:
                continue
            pending = [g for g in (*c.joins, *c.leaves) if g in self.group_ids]
            if c.attributes or c.action is Action.CREATE or not pending:
                before = (c.groups - set(c.joins)) | set(c.leaves) if pending else c.groups
                # With its record hash: while group calls are pending the state's groups
                # differ from the warehouse's, which alone makes the next plan read it.
                upserts.append(LedgerRecord(c.external_id, c.fields, frozenset(before),
                                            c.row_hash))
                result.count(c.action)
            else:  # only group changes: the record is done when its calls are
                self._open[c.external_id] = (len(pending), False)
            self._queue_subscriptions(c)
        deletes = [c.external_id for c in outcome.accepted if c.action is Action.DELETE]
        self.ledger.commit(self.dest.name, upserts=upserts, deletes=deletes,
                           failures=outcome.failed)
        if deletes:  # a deleted user is no longer one Braze may have
            self.ledger.clear_intents(self.dest.name, deletes)
        result.deleted += len(deletes)
        self._note_failures(outcome.failed, result)

    def _note_failures(self, failures: list[Failure], result: DestinationResult) -> None:
        result.failed += len(failures)
        room = 20 - len(result.failures)
        if room > 0:
            result.failures.extend(failures[:room])

    # -- events: exactly once -------------------------------------------------------------
    def _mark(self, batch: list[dict[str, Any]], state: str, reasons: dict[int, str] | None = None
              ) -> None:
        by_stream: dict[str, list[tuple[str, str, str | None]]] = defaultdict(list)
        for i, item in enumerate(batch):
            reason = (reasons or {}).get(i)
            by_stream[item["stream"]].append((item["key"], "failed" if reason else state, reason))
        for stream, states in sorted(by_stream.items()):
            self.ledger.mark_events(self.dest.name, stream, states)

    def send_events(self, batch: list[dict[str, Any]]) -> EventOutcome:
        """One /users/track request with events and purchases only (never attributes, so an
        attribute retry can never duplicate an event). Runs in a worker: the rows are marked
        "sending" right before the request leaves (after the rate limiter), and put back as
        they were when it provably processed nothing (a 429 while waiting to retry, a
        refused connection). Anything uncertain is DeliveryUnknown: the rows stay marked."""
        events = [(i, x["obj"]) for i, x in enumerate(batch) if x["type"] == "event"]
        purchases = [(i, x["obj"]) for i, x in enumerate(batch) if x["type"] == "purchase"]
        marks = [_event_mark(x) for x in batch]
        marked: list[Previous] = []

        def leaving() -> None:
            if not marked:
                marked.append(self.ledger.mark_sending(self.dest.name, marks))

        def refused() -> None:
            if marked:
                self.ledger.restore_events(self.dest.name, marked.pop())

        try:
            r = self.client.track(events=[o for _, o in events] or None,
                                  purchases=[o for _, o in purchases] or None,
                                  hooks=SendHooks(leaving=leaving, refused=refused))
        except DeliveryUnknown as exc:
            return EventOutcome(batch, unknown=True, message=str(exc))
        reasons: dict[int, str] = {}
        for err in r.body.get("errors") or []:
            arr = events if err.get("input_array") == "events" else purchases
            idx = err.get("index")
            if isinstance(idx, int) and 0 <= idx < len(arr):
                reasons[arr[idx][0]] = str(err.get("type", "rejected by Braze"))
        if r.status == 400:
            # A 400 processed nothing, even objects its errors do not name: none was "sent".
            msg = str(r.body.get("message", "request refused"))[:200]
            for i in range(len(batch)):
                reasons.setdefault(i, msg)
        return EventOutcome(batch, reasons=reasons)

    def _commit_events(self, outcome: EventOutcome, result: DestinationResult) -> None:
        if outcome.unknown:
            self._mark(outcome.batch, "unknown")
            result.events_unknown += len(outcome.batch)
            return
        self._mark(outcome.batch, "sent", outcome.reasons)
        result.events_failed += len(outcome.reasons)
        result.events_sent += len(outcome.batch) - len(outcome.reasons)

    def _to_send(self, items: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The spooled event rows to send; rows the plan only marks (starting over: delivery
        unknown) are recorded as such, 500 at a time, and never sent."""
        marks: list[dict[str, Any]] = []
        for item in items:
            if "mark" in item:
                marks.append(item)
                if len(marks) >= 500:
                    self._mark_unknown(marks)
                    marks = []
            else:
                yield item
        if marks:
            self._mark_unknown(marks)

    def _mark_unknown(self, items: list[dict[str, Any]]) -> None:
        """Rows that may be in Braze already: recorded with their user, name and time (what
        `apply --settle-unknown` compares with Braze's counts), as delivery unknown."""
        self.ledger.mark_sending(self.dest.name, [_event_mark(x) for x in items])
        self._mark(items, "unknown")

    # -- the whole destination: workers send, the main thread commits ----------------------
    def run(self, plan: DestinationPlan, progress: Progress | None = None,
            stop: StopRequest | None = None) -> DestinationResult:
        result = DestinationResult(self.dest.name)
        writes = plan.read_spool(deletes=False)
        deletes = plan.read_spool(deletes=True)

        def steps() -> Iterator[Step | None]:
            for batch in track_batches(writes, self.client.settings, lambda c: c.attributes):
                yield Step(self.send_chunk, batch, self.commit, len(batch))
                yield from self._full_subscription_batches()
            yield None  # drain: every profile write confirmed before the last partial batches
            yield from self._full_subscription_batches(flush=True)
            for batch in chunks(deletes, IDS_BATCH):
                yield Step(self.send_deletes, batch, self.commit, len(batch))
            for ev in event_batches(self._to_send(plan.read_event_spool()),
                                    self.client.settings):
                # Marked "sending" by the worker, right before the request leaves.
                yield Step(self.send_events, ev, self._commit_events, 0)

        try:
            run_pipeline(steps(), max(1, self.client.settings.concurrency), result,
                         lambda n: progress(self.dest.name, n) if progress else None, stop)
        finally:
            # Intents of creates now confirmed are no longer needed (the ledger has them).
            self.ledger.clear_intents(self.dest.name)
        return result


@dataclass
class SubscriptionOutcome:
    group: str
    state: str
    ids: list[str]
    reason: str | None  # None: Braze accepted the call


@dataclass
class EventOutcome:
    batch: list[dict[str, Any]]
    unknown: bool = False
    message: str = ""
    reasons: dict[int, str] = field(default_factory=dict)


def _event_mark(item: dict[str, Any]) -> EventMark:
    """What settling needs to find a row in Braze's export: user, name (a purchase's is its
    product_id), weight (a purchase's quantity) and time."""
    obj = item["obj"]
    name = obj["product_id"] if item["type"] == "purchase" else obj["name"]
    return EventMark(item["stream"], item["key"], str(obj["external_id"]), str(name),
                     int(obj.get("quantity", 1)), str(obj["time"]))


@dataclass
class Step:
    send: Callable[[Any], Any]  # runs in a worker thread: HTTP (and the marks before it)
    batch: Any
    commit: Callable[[Any, DestinationResult], None]  # runs in the main thread: ledger only
    records: int = 0  # records this step completes, for progress (group calls: none)


def run_pipeline(steps: Iterator[Step | None], workers: int, result: DestinationResult,
                 progress: Callable[[int], None], stop: StopRequest | None = None) -> None:
    """Run steps on a thread pool with bounded work in flight; commit each as it finishes.
    A None step waits for (and commits) everything in flight before the next one starts.

    On an error, steps not started are cancelled (nothing of them was marked: workers mark
    what they send), finished ones are still committed (the ledger never loses a confirmed
    write), and the error is raised. When ``stop`` is requested, no new step starts, the
    ones in flight finish and are committed, and Interrupted is raised."""
    done = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="braze") as pool:
        in_flight: dict[Future[Any], Step] = {}

        def collect(finished: Iterable[Future[Any]]) -> None:
            nonlocal done
            error: BaseException | None = None
            for f in finished:
                step = in_flight.pop(f)
                if f.cancelled():
                    continue
                exc = f.exception()
                if exc is not None:
                    # Uncertain outcomes never raise (DeliveryUnknown is an outcome). A request
                    # that processed nothing (refused connection, auth, exhausted 429s) put its
                    # rows back before raising; anything else leaves them "sending": delivery
                    # unknown, never resent on their own.
                    error = error or exc
                    continue
                step.commit(f.result(), result)
                done += step.records
            progress(done)
            if error is not None:
                raise error

        if stop is not None:
            stop.sending = True
        try:
            for step in steps:
                if stop is not None and stop.requested:
                    break  # no new request starts; those in flight finish below
                if step is None:
                    collect(wait(list(in_flight))[0])
                    continue
                in_flight[pool.submit(step.send, step.batch)] = step
                if len(in_flight) >= workers * 2:
                    finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                    collect(finished)
            collect(wait(list(in_flight))[0])
        except BaseException:
            for f in in_flight:
                f.cancel()
            finished, _ = wait(list(in_flight))
            for f in finished:
                step = in_flight[f]
                if not f.cancelled() and f.exception() is None:
                    step.commit(f.result(), result)
            raise
        finally:
            if stop is not None:
                stop.sending = False
        if stop is not None and stop.signum is not None:
            raise Interrupted(stop.signum)
