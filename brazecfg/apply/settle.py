"""Settling events whose delivery is unknown from what Braze itself reports.

A row is "unknown" when its request may or may not have reached Braze (a 5xx, a timeout, a
lost connection, a crash while it was in flight). Braze never deduplicates events, so
resending blindly can count them twice; never resending loses them. But /users/export/ids
(read-only, 50 users a call) tells, per user, how many events of each name and purchases of
each product Braze holds. Where brazecfg is the only sender of those names, for each (user,
name) with unknown rows:

- Braze's count equals the rows brazecfg confirmed ("sent"): the unknown rows never arrived;
  they are marked ``unsent`` and the apply sends them.
- It equals confirmed + unknown: they all arrived; they are marked ``sent``.
- Anything else (some arrived, another sender, a deleted profile): they stay unknown, with
  the reason reported.

A request is processed whole or not at all, so the rows of one request settle together;
rows of one user from two lost requests of which one arrived stay unknown (correctly).

It refuses to decide where the count cannot be trusted: the user's rows were sent less than
``settle_after_seconds`` ago (Braze's export lags behind what it accepted; Braze advises
five minutes), a row is older than Braze's 90-day export window, the profile was created
after rows brazecfg confirmed (deleted and re-created), or a purchase quantity makes the
count ambiguous (Braze may count a quantity of 3 as one purchase or three: both readings
must agree). Rows written by a brazecfg older than this feature have no user: they stay
unknown.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from brazecfg.braze.client import BrazeClient, ExportedUser
from brazecfg.model.resources import App, Project
from brazecfg.state.ledger import EventState, Ledger

EXPORT_BATCH = 50
EXPORT_WINDOW = timedelta(days=85)  # Braze exports the last 90 days; five days of margin
UNSURE = ("sending", "unknown")
COUNTED = ("sent", *UNSURE)


@dataclass
class SettleResult:
    """What settling did for one Braze app."""

    app: str
    arrived: int = 0  # unknown rows Braze has: now "sent"
    missing: int = 0  # unknown rows Braze does not have: now "unsent", sent by this apply
    undecided: Counter[str] = field(default_factory=Counter)  # reason -> rows still unknown

    @property
    def looked_at(self) -> int:
        return self.arrived + self.missing + sum(self.undecided.values())


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" UTC", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _seconds(dt: datetime) -> datetime:
    return dt.replace(microsecond=0)


def _verdict(count: int, rows: list[EventState], weigh: Callable[[EventState], int]
             ) -> str | None:
    sent = sum(weigh(r) for r in rows if r.state == "sent")
    unsure = sum(weigh(r) for r in rows if r.state in UNSURE)
    if count == sent:
        return "missing"
    if count == sent + unsure:
        return "arrived"
    return None


def decide(rows: list[EventState], user: ExportedUser | None, *, kind: str, now: datetime,
           settle_after: float) -> tuple[str, str]:
    """("arrived" | "missing" | "undecided", reason) for the rows of one user and name."""
    if user is None:
        return "undecided", "Braze has no user with this external_id"
    ats = [_time(r.at) for r in rows]
    if any(a is None for a in ats):
        return "undecided", "the ledger's time of a row cannot be read"
    latest = max(a for a in ats if a is not None)
    if latest > now - timedelta(seconds=settle_after):
        return "undecided", (f"sent less than {settle_after:g} s ago: Braze's export may not "
                             "show it yet (settle_after_seconds)")
    oldest = min([a for a in ats if a is not None] + [t for r in rows if (t := _time(r.time))])
    if oldest < now - EXPORT_WINDOW:
        return "undecided", "older than Braze's 90-day export window"
    created = _time(user.created_at)
    sent_at = [a for r, a in zip(rows, ats, strict=True) if r.state == "sent" and a is not None]
    if created is None:
        return "undecided", "Braze's created_at for the user cannot be read"
    if sent_at and _seconds(created) > _seconds(min(sent_at)):
        return "undecided", ("the Braze profile is newer than events brazecfg confirmed "
                             "(deleted and re-created?)")
    count = user.counts.get((kind, rows[0].name or ""), 0)
    by_object = _verdict(count, rows, lambda r: 1)
    by_quantity = _verdict(count, rows, lambda r: max(1, r.weight or 1))
    if by_object is not None and by_object == by_quantity:
        return by_object, ""
    if by_object is not None or by_quantity is not None:
        return "undecided", "purchase quantities make Braze's count ambiguous"
    return "undecided", ("Braze's count matches neither: some arrived, or another sender "
                         "sends this name")


def _by_user(rows: Iterator[EventState]) -> Iterator[tuple[str | None, list[EventState]]]:
    current: list[EventState] = []
    for r in rows:
        if current and (r.user != current[0].user or r.user is None):
            yield current[0].user, current
            current = []
        current.append(r)
    if current:
        yield current[0].user, current


def _batches(users: Iterator[tuple[str | None, list[EventState]]], size: int
             ) -> Iterator[list[tuple[str | None, list[EventState]]]]:
    batch: list[tuple[str | None, list[EventState]]] = []
    for item in users:
        batch.append(item)
        if sum(1 for u, _ in batch if u is not None) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def settle_app(app: str, destinations: dict[str, dict[str, str]], ledger: Ledger,
               client: BrazeClient, *, now: datetime | None = None) -> SettleResult:
    """Settle the unknown rows of ``destinations`` (name -> {stream: "event"|"purchase"}),
    every one of them sending to Braze app ``app``."""
    now = now or datetime.now(timezone.utc)
    result = SettleResult(app)
    settle_after = client.settings.settle_after
    for batch in _batches(_by_user(ledger.stream_unsure_users(sorted(destinations))),
                          EXPORT_BATCH):
        ids = [u for u, _ in batch if u is not None]
        exported = client.export_event_counts(ids) if ids else {}
        writes: dict[tuple[str, str], list[tuple[str, str, str | None]]] = defaultdict(list)
        for user, rows in batch:
            groups: dict[tuple[str, str], list[EventState]] = defaultdict(list)
            for r in rows:
                kind = destinations.get(r.destination, {}).get(r.stream)
                if kind is not None and r.state in COUNTED:
                    groups[(kind, r.name or "")].append(r)
            for (kind, _name), group in sorted(groups.items()):
                unsure = [r for r in group if r.state in UNSURE]
                if not unsure:
                    continue
                if user is None:
                    verdict, why = "undecided", ("the ledger does not know its user (sent by "
                                                 "an older brazecfg)")
                else:
                    verdict, why = decide(group, exported.get(user), kind=kind, now=now,
                                          settle_after=settle_after)
                if verdict == "undecided":
                    result.undecided[why] += len(unsure)
                    continue
                state, reason = (("sent", "settled: Braze has it") if verdict == "arrived" else
                                 ("unsent", "settled: Braze does not have it"))
                for r in unsure:
                    writes[(r.destination, r.stream)].append((r.row_key, state, reason))
                if verdict == "arrived":
                    result.arrived += len(unsure)
                else:
                    result.missing += len(unsure)
        for (dest, stream), states in sorted(writes.items()):
            ledger.mark_events(dest, stream, states)
    return result


def settle_unknown(project: Project, ledger: Ledger, clients: Callable[[App], BrazeClient],
                   *, now: datetime | None = None) -> list[SettleResult]:
    """Settle every destination's unknown event rows, one Braze app at a time (Braze counts
    per workspace, so the destinations sharing an app are compared together)."""
    by_app: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
    for dest in project.destinations.values():
        if dest.events:
            by_app[dest.app][dest.name] = {e.identity: e.type for e in dest.events}
    return [settle_app(app, dests, ledger, clients(project.apps[app]), now=now)
            for app, dests in sorted(by_app.items())]


def undecided_lines(results: Iterable[SettleResult]) -> list[tuple[int, str]]:
    """(rows, reason) still unknown after settling, most rows first."""
    total: Counter[str] = Counter()
    for r in results:
        total.update(r.undecided)
    return [(n, why) for why, n in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))]
