"""apply: send exactly what the plan counted, and record in the ledger what Braze confirmed.

Per destination, the plan's spooled record changes are cut into chunks of at most 75 records
(Braze's /users/track cap). Chunks run concurrently on a small thread pool, each one
sending its attributes, then its subscription changes (at most 50 ids a call), and the main
thread commits each finished chunk to the ledger in one transaction: accepted records with
their new field hashes, rejected ones with Braze's reason (the ledger keeps their old state,
so the next plan sends them again). Deletions go 50 ids a request. In-flight work is bounded,
so memory stays flat however many records change.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, TypeVar

from brazecfg.braze.client import BrazeClient
from brazecfg.errors import BrazeError
from brazecfg.model.resources import Destination, Project
from brazecfg.plan.definition import Action, DestinationPlan, RecordChange
from brazecfg.state.ledger import Failure, Ledger, LedgerRecord

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
    subscribed: int = 0
    unsubscribed: int = 0


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

    # -- one chunk, in a worker thread ------------------------------------------------------
    def _track_object(self, change: RecordChange) -> dict[str, Any]:
        obj: dict[str, Any] = {"external_id": change.external_id}
        obj.update(change.attributes)
        if change.action is Action.ENRICH or self.dest.mode == "enrich":
            obj["_update_existing_only"] = True  # enrich never creates, even in a race
        return obj

    def send_chunk(self, batch: list[RecordChange]) -> ChunkOutcome:
        failed: dict[str, str] = {}
        with_attrs = [c for c in batch if c.attributes]
        if with_attrs:
            response = self.client.track(attributes=[self._track_object(c) for c in with_attrs])
            errors = response.body.get("errors") or []
            if response.status == 400 and not errors:
                raise BrazeError(f"app/{self.client.settings.app}: /users/track refused a batch: "
                                 f"{str(response.body.get('message', ''))[:200]}", 400)
            for err in errors:
                idx = err.get("index")
                if err.get("input_array", "attributes") == "attributes" and isinstance(idx, int) \
                        and 0 <= idx < len(with_attrs):
                    failed[with_attrs[idx].external_id] = str(err.get("type", "rejected by Braze"))
        outcome = ChunkOutcome([], [])
        # Subscription changes only for records whose profile write Braze accepted.
        pending: dict[tuple[str, str], list[str]] = defaultdict(list)
        for c in batch:
            if c.external_id in failed:
                continue
            for g in c.joins:
                if g in self.group_ids:
                    pending[(self.group_ids[g], "subscribed")].append(c.external_id)
            for g in c.leaves:
                if g in self.group_ids:
                    pending[(self.group_ids[g], "unsubscribed")].append(c.external_id)
        for (group_id, state), ids in sorted(pending.items()):
            for part in chunks(ids, IDS_BATCH):
                r = self.client.set_subscription(group_id, state, part)
                if r.status >= 400:
                    reason = f"subscription {state} refused: {str(r.body.get('message', ''))[:120]}"
                    for i in part:
                        failed.setdefault(i, reason)
                elif state == "subscribed":
                    outcome.subscribed += len(part)
                else:
                    outcome.unsubscribed += len(part)
        outcome.accepted = [c for c in batch if c.external_id not in failed]
        outcome.failed = [Failure(i, r) for i, r in sorted(failed.items())]
        return outcome

    def send_deletes(self, batch: list[RecordChange]) -> ChunkOutcome:
        r = self.client.delete([c.external_id for c in batch])
        if r.status >= 400:
            reason = f"delete refused: {str(r.body.get('message', ''))[:120]}"
            return ChunkOutcome([], [Failure(c.external_id, reason) for c in batch])
        return ChunkOutcome(batch, [])

    # -- the whole destination, main thread commits -----------------------------------------
    def commit(self, outcome: ChunkOutcome, result: DestinationResult) -> None:
        upserts = [LedgerRecord(c.external_id, c.fields, c.groups) for c in outcome.accepted
                   if c.action is not Action.DELETE]
        deletes = [c.external_id for c in outcome.accepted if c.action is Action.DELETE]
        self.ledger.commit(self.dest.name, upserts=upserts, deletes=deletes,
                           failures=outcome.failed)
        for c in outcome.accepted:
            result.count(c.action)
        result.failed += len(outcome.failed)
        result.subscribed += outcome.subscribed
        result.unsubscribed += outcome.unsubscribed
        room = 20 - len(result.failures)
        if room > 0:
            result.failures.extend(outcome.failed[:room])

    def run(self, plan: DestinationPlan, progress: Progress | None = None) -> DestinationResult:
        result = DestinationResult(self.dest.name)
        workers = max(1, self.client.settings.concurrency)

        def work() -> Iterator[tuple[Callable[[list[RecordChange]], ChunkOutcome],
                                     list[RecordChange]]]:
            writes = (c for c in plan.read_spool() if c.action is not Action.DELETE)
            for batch in chunks(writes, TRACK_BATCH):
                yield self.send_chunk, batch
            deletes = (c for c in plan.read_spool() if c.action is Action.DELETE)
            for batch in chunks(deletes, IDS_BATCH):
                yield self.send_deletes, batch

        done = 0
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="braze") as pool:
            in_flight: set[Future[ChunkOutcome]] = set()
            try:
                for fn, batch in work():
                    in_flight.add(pool.submit(fn, batch))
                    if len(in_flight) >= workers * 2:
                        finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                        done += self._collect(finished, result)
                        if progress:
                            progress(self.dest.name, done)
                finished, in_flight = wait(in_flight)
                done += self._collect(finished, result)
                if progress:
                    progress(self.dest.name, done)
            except BaseException:
                # Keep what Braze already confirmed, then stop: cancel what has not started
                # and record what finished, so the ledger never loses a confirmed write.
                for f in in_flight:
                    f.cancel()
                finished, _ = wait(in_flight)
                for f in finished:
                    if not f.cancelled() and f.exception() is None:
                        self.commit(f.result(), result)
                raise
        return result

    def _collect(self, finished: set[Future[ChunkOutcome]], result: DestinationResult) -> int:
        n = 0
        error: BaseException | None = None
        for f in finished:
            exc = f.exception()
            if exc is not None:
                error = error or exc
                continue
            outcome = f.result()
            self.commit(outcome, result)
            n += len(outcome.accepted) + len(outcome.failed)
        if error is not None:
            raise error
        return n
