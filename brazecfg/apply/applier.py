"""apply: send exactly what the plan counted, and record in the ledger what Braze confirmed.

Per destination, the plan's spooled record changes are cut into chunks of at most 75 records
(Braze's /users/track cap). Chunks run concurrently on a small thread pool, each one a single
/users/track request whose attributes objects carry both the record's values and its
subscription group changes (``subscription_groups``: Braze applies them with the profile
write, free of data points, so there is no separate call and no race between the two). The
main thread records each finished chunk in the ledger: accepted records with their new field
hashes and memberships, rejected ones with Braze's reason (the ledger keeps their old state,
so the next plan sends them again). Deletions go 50 ids a request. In-flight work is bounded,
so memory stays flat however many records change.

Event rows are marked ``sending`` by the worker that sends them, right before the bytes go
(the client's ``SendHooks``); nothing merely queued is ever marked, so a crash (kill -9) leaves
"unknown" only requests that may have left. The ids of new users are recorded as create
intents before their request leaves, 40 requests' worth in one transaction: an intent may
name a user whose request had not left yet (harmless: "Braze may have it"), and those are
cleared when the run ends. A request that provably processed nothing (a refused connection,
a 429) puts its rows and intents back as they were. Confirmed outcomes reach the ledger in
batches (FLUSH_RECORDS, FLUSH_SECONDS), and always before a stop, an error or the end.
"""

from __future__ import annotations

import threading
import time
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
from brazecfg.threads import leave_signals_to_the_main_thread

TRACK_BATCH = 75
IDS_BATCH = 50
# Confirmed outcomes are committed to the ledger together: when this many records wait, or
# when the oldest has waited FLUSH_SECONDS (one transaction per chunk of 75 was 13,334
# synchronous commits for a million users; issue 9). What waits is confirmed by Braze: a
# crash loses at most these, and the next plan sends them again (the ledger stays behind
# Braze, never ahead); a stop, an error or the end commits them first.
FLUSH_RECORDS = 3000
FLUSH_SECONDS = 0.5
INTENTS_AHEAD = 40  # chunks whose create intents are recorded in one transaction
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


@dataclass(eq=False)
class Chunk:
    """One /users/track request's records, and the create intents recorded for it."""

    changes: list[RecordChange]
    intents: list[str]
    cleared: bool = False  # its intents were cleared (refused); a retry records them again


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
        # Hears each finished batch of event rows (sent, rejected or unknown), for progress.
        self.on_events: Callable[[int], None] | None = None
        # Confirmed by Braze, not yet in the ledger (flush): one transaction for many chunks.
        self._upserts: list[LedgerRecord] = []
        self._deletes: list[str] = []
        self._failures: list[Failure] = []
        self._since: float | None = None  # when the oldest waiting outcome was confirmed
        # Chunks whose create intents were recorded ahead and that have not left yet: their
        # intents are cleared when the run ends without sending them.
        self._unsent: dict[int, Chunk] = {}
        self._lock = threading.Lock()

    def _ahead(self, batches: Iterator[list[RecordChange]]) -> Iterator[Chunk]:
        """Chunks with their create intents recorded before any of them leaves, INTENTS_AHEAD
        chunks in one transaction (one per request was 13,334 synchronous writes for a
        million new users, on the sending threads). An intent whose request never leaves
        is harmless after a crash (the next plan creates the user, or deletes an id Braze
        does not have) and is cleared when the run ends."""
        for group in chunks(batches, INTENTS_AHEAD):
            creates = [c.external_id for b in group for c in b if c.action is Action.CREATE]
            new = set(self.ledger.add_intents(self.dest.name, creates)) if creates else set()
            for b in group:
                chunk = Chunk(b, [c.external_id for c in b if c.external_id in new])
                if chunk.intents:
                    with self._lock:
                        self._unsent[id(chunk)] = chunk
                yield chunk

    def _clear_unsent(self) -> None:
        with self._lock:
            ids = [i for c in self._unsent.values() if not c.cleared for i in c.intents]
            self._unsent.clear()
        if ids:
            self.ledger.clear_intents(self.dest.name, ids)

    # -- one chunk, in a worker thread ------------------------------------------------------
    def _track_object(self, change: RecordChange) -> dict[str, Any] | None:
        """The record's /users/track attributes object: its values and its subscription group
        changes (``subscription_groups``, free of data points), in one object, so Braze applies
        both together. None when there is nothing to send (a ledger-only change)."""
        obj: dict[str, Any] = {"external_id": change.external_id}
        obj.update(change.attributes)
        subs = [{"subscription_group_id": self.group_ids[g], "subscription_state": state}
                for groups, state in ((change.joins, "subscribed"),
                                      (change.leaves, "unsubscribed"))
                for g in groups if g in self.group_ids] if change.joins or change.leaves else None
        if subs:
            obj["subscription_groups"] = subs
        elif not change.attributes and change.action is not Action.CREATE:
            return None
        # A new user is sent even with no attribute to set: it is a profile from now on.
        if change.action is Action.ENRICH or self.dest.mode == "enrich":
            obj["_update_existing_only"] = True  # enrich never creates, even in a race
        return obj

    def send_chunk(self, chunk: Chunk) -> ChunkOutcome:
        failed: dict[str, str] = {}
        objects: list[dict[str, Any]] = []
        sent: list[RecordChange] = []
        batch = chunk.changes
        for c in batch:
            obj = self._track_object(c)
            if obj is not None:
                objects.append(obj)
                sent.append(c)
        if objects:
            def leaving() -> None:
                # Before an attempt leaves: Braze may have these users from now on. Their
                # intents were recorded ahead, with the chunks around them (_ahead); only a
                # retry after a refusal records them again.
                with self._lock:
                    self._unsent.pop(id(chunk), None)
                    again = chunk.cleared
                    chunk.cleared = False
                if again and chunk.intents:
                    self.ledger.add_intents(self.dest.name, chunk.intents)

            def refused() -> None:
                # Provably not processed (a refused connection, a 429): the intents recorded
                # for this request are not users Braze may have; earlier ones stay.
                if chunk.intents and not chunk.cleared:
                    chunk.cleared = True
                    self.ledger.clear_intents(self.dest.name, chunk.intents)

            response = self.client.write_profiles(objects,
                                                  hooks=SendHooks(leaving=leaving, refused=refused))
            errors = response.body.get("errors") or []
            if response.status == 400 and not errors:
                raise BrazeError(f"app/{self.client.settings.app}: {self.client.settings.track_path}"
                                 " refused a batch: "
                                 f"{str(response.body.get('message', ''))[:200]}", 400)
            for err in errors:
                idx = err.get("index")
                if err.get("input_array", "attributes") == "attributes" and isinstance(idx, int) \
                        and 0 <= idx < len(sent):
                    failed[sent[idx].external_id] = str(err.get("type", "rejected by Braze"))
            if response.status == 400:
                # A 400 processed nothing, even objects its errors do not name.
                msg = str(response.body.get("message", "request refused"))[:200]
                for c in sent:
                    failed.setdefault(c.external_id, msg)
        return ChunkOutcome([c for c in batch if c.external_id not in failed],
                            [Failure(i, r) for i, r in sorted(failed.items())])

    def send_deletes(self, batch: list[RecordChange]) -> ChunkOutcome:
        r = self.client.delete([c.external_id for c in batch])
        if r.status >= 400:
            reason = f"delete refused: {str(r.body.get('message', ''))[:120]}"
            return ChunkOutcome([], [Failure(c.external_id, reason) for c in batch])
        return ChunkOutcome(batch, [])

    # -- the whole destination, main thread commits -----------------------------------------
    def commit(self, outcome: ChunkOutcome, result: DestinationResult) -> None:
        """Take what Braze confirmed for one chunk: an accepted object carried the record's
        values and its subscription group changes together, so its new fields and memberships
        are recorded as one; a rejected one keeps its old state (fields and memberships). The
        ledger gets them with the next flush, many chunks in one transaction."""
        for c in outcome.accepted:
            if c.action is Action.DELETE:
                self._deletes.append(c.external_id)
                continue
            self._upserts.append(LedgerRecord(c.external_id, c.fields, c.groups, c.row_hash))
            result.count(c.action)
            if c.joins:  # most records join and leave nothing: no generator for them
                result.subscribed += sum(1 for g in c.joins if g in self.group_ids)
            if c.leaves:
                result.unsubscribed += sum(1 for g in c.leaves if g in self.group_ids)
        result.deleted += sum(1 for c in outcome.accepted if c.action is Action.DELETE)
        self._failures.extend(outcome.failed)
        self._note_failures(outcome.failed, result)
        if self._since is None:
            self._since = time.monotonic()
        if len(self._upserts) + len(self._deletes) + len(self._failures) >= FLUSH_RECORDS:
            self.flush()
        else:
            self.tick()

    def tick(self) -> None:
        """Flush when the oldest confirmed outcome has waited FLUSH_SECONDS."""
        if self._since is not None and time.monotonic() - self._since >= FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Commit every confirmed outcome still waiting, in one transaction."""
        if self._since is None:
            return
        upserts, deletes, failures = self._upserts, self._deletes, self._failures
        self._upserts, self._deletes, self._failures, self._since = [], [], [], None
        self.ledger.commit(self.dest.name, upserts=upserts, deletes=deletes, failures=failures)
        if deletes:  # a deleted user is no longer one Braze may have
            self.ledger.clear_intents(self.dest.name, deletes)

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
        if self.on_events is not None:
            self.on_events(len(outcome.batch))
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
            for chunk in self._ahead(track_batches(writes, self.client.settings, _payload_size)):
                yield Step(self.send_chunk, chunk, self.commit, len(chunk.changes))
            for batch in chunks(deletes, IDS_BATCH):
                yield Step(self.send_deletes, batch, self.commit, len(batch))
            for ev in event_batches(self._to_send(plan.read_event_spool()),
                                    self.client.settings):
                # Marked "sending" by the worker, right before the request leaves.
                yield Step(self.send_events, ev, self._commit_events, 0)

        try:
            run_pipeline(steps(), self.client.settings.workers, result,
                         lambda n: progress(self.dest.name, n) if progress else None, stop,
                         flush=self.flush, tick=self.tick)
        finally:
            self._clear_unsent()  # recorded ahead, never sent: not users Braze may have
            # Intents of creates now confirmed are no longer needed (the ledger has them).
            self.ledger.clear_intents(self.dest.name)
        return result


def _payload_size(change: RecordChange) -> dict[str, Any]:
    """What the size estimate of a record's object counts: its values and a stand-in for each
    subscription group change (about 90 bytes of JSON each)."""
    n = len(change.joins) + len(change.leaves)
    return {**change.attributes, "subscription_groups": ["x" * 80] * n} if n else \
        change.attributes


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
                 progress: Callable[[int], None], stop: StopRequest | None = None, *,
                 flush: Callable[[], None] = lambda: None,
                 tick: Callable[[], None] = lambda: None) -> None:
    """Run steps on a thread pool with bounded work in flight; commit each as it finishes.
    A None step waits for (and commits) everything in flight before the next one starts.
    Commits may gather outcomes: ``tick`` runs while waiting (time-based flushes), ``flush``
    before this returns or raises, so whatever was confirmed reaches the ledger.

    On an error, steps not started are cancelled (nothing of them was marked: workers mark
    what they send), finished ones are still committed (the ledger never loses a confirmed
    write), and the error is raised. When ``stop`` is requested, no new step starts, the
    ones in flight finish and are committed, and Interrupted is raised."""
    done = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="braze",
                            initializer=leave_signals_to_the_main_thread) as pool:
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
                    flush()
                    continue
                in_flight[pool.submit(step.send, step.batch)] = step
                while len(in_flight) >= workers * 2:
                    finished, _ = wait(list(in_flight), timeout=FLUSH_SECONDS,
                                       return_when=FIRST_COMPLETED)
                    collect(finished)
                    tick()
            while in_flight:
                collect(wait(list(in_flight), timeout=FLUSH_SECONDS)[0])
                tick()
            flush()
        except BaseException:
            for f in in_flight:
                f.cancel()
            finished, _ = wait(list(in_flight))
            for f in finished:
                step = in_flight[f]
                if not f.cancelled() and f.exception() is None:
                    step.commit(f.result(), result)
            flush()
            raise
        finally:
            if stop is not None:
                stop.sending = False
        if stop is not None and stop.signum is not None:
            raise Interrupted(stop.signum)
