"""make_plan: (config, warehouse data, ledger) -> Plan. Writes nothing (DESIGN.md invariant 1).

The only side effects are reads: the lockfile, the ledger (opened read-only; a missing one is
empty), the warehouse, and in enrich mode Braze's read-only export endpoint. Apply passes a
spool file so the record changes it will send are exactly the ones this plan counted.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from itertools import islice
from pathlib import Path

from brazecfg.braze.client import BrazeClient
from brazecfg.braze.limits import DEFAULT_LIMITS
from brazecfg.braze.remote import Call, StartFailed, StatusProcess
from brazecfg.braze.settings import braze_settings
from brazecfg.errors import BrazecfgError, StateError
from brazecfg.model.graph import fingerprints as resource_fingerprints
from brazecfg.model.resources import App, Destination, Project
from brazecfg.plan import guardrails
from brazecfg.plan.config_diff import config_fingerprint, diff_config
from brazecfg.plan.counting import RowsRead, Tally, counted, reporter
from brazecfg.plan.definition import (
    ISSUE_SAMPLE_SIZE,
    DestinationPlan,
    Issue,
    Plan,
    RemovedDestination,
)
from brazecfg.plan.diff import (
    REFETCH_LIMIT,
    ExistsCheck,
    JoinedState,
    OptOutCheck,
    TooManyToRefetch,
    diff_destination,
)
from brazecfg.plan.events import diff_events
from brazecfg.plan.intents import with_intents
from brazecfg.state.hashing import Hasher, load_key
from brazecfg.state.ledger import Ledger, LedgerRecord
from brazecfg.state.lockfile import Lockfile, read_lockfile
from brazecfg.state.paths import StatePaths
from brazecfg.state.store import open_state
from brazecfg.warehouse.base import ModelRow, Warehouse
from brazecfg.warehouse.compile import HASH_COUNTS, HASH_NONE, HASH_VALUES, counted_sources
from brazecfg.warehouse.connect import connect

ClientFactory = Callable[[App], BrazeClient]


def hasher_for(paths: StatePaths, ledger: Ledger, *, create: bool) -> Hasher:
    """The ledger's hash key. Without one, plan uses a throwaway key, which is only right when
    the ledger is empty (everything is a create); otherwise the key was lost."""
    key = load_key(paths.state_dir, create=create)
    if key is None:
        if ledger.key_check is not None:
            raise StateError(
                f"the state ({ledger.describe()}) was written with a hash key that is not here; "
                f"restore {paths.state_dir / 'hash.key'} or set BRAZECFG_HASH_KEY")
        # Nothing to compare against: every field is new. A fixed key keeps the plan a pure
        # function of its inputs; the digest never depends on field hashes anyway.
        return Hasher(b"brazecfg: no hash key yet, empty state")
    hasher = Hasher(key)
    if ledger.key_check is not None and ledger.key_check != hasher.check_value():
        raise StateError(
            f"the hash key does not match the one the state ({ledger.describe()}) was written with; "
            "restore the right BRAZECFG_HASH_KEY or hash.key")
    return hasher


def _plan_events(project: Project, dest: Destination, dplan: DestinationPlan,
                 warehouse: Warehouse, ledger: Ledger, spool_dir: Path | None,
                 resend_unknown: bool, *, fresh: bool, assume_unknown: bool,
                 on_read: Callable[[int], None] | None = None) -> None:
    spool = None
    if spool_dir is not None:
        dplan.event_spool = spool_dir / f"{dest.name}.events.jsonl"
        spool = dplan.event_spool.open("w", encoding="utf-8")
    try:
        for spec in dest.events:
            source = project.sources[spec.source]
            columns = sorted({c for c in (spec.time, spec.product_id, spec.price, spec.quantity,
                                          spec.currency, *spec.properties.values()) if c})
            since = _since(spec.since)
            rows = counted(warehouse.stream_events(dest.model, spec.source, key=spec.key,
                                                   user=spec.user or source.key,
                                                   columns=columns, since=since,
                                                   time_column=spec.time), on_read)
            stored = None if fresh else _stream_in_state(project, dest, dplan, spec.identity,
                                                         spec.name, ledger)
            if stored is not None and stored != spec.identity:
                dplan.stream_renames[stored] = spec.identity
            known: Iterator[tuple[str, str]] = iter(()) if stored is None else \
                ledger.stream_events(dplan.state_name, stored)
            diff_events(dplan, spec, rows, known, update_existing_only=dest.mode == "enrich",
                        resend_unknown=resend_unknown, spool=spool, stream=spec.identity,
                        assume_unknown=assume_unknown)
    finally:
        if spool is not None:
            spool.close()


def _stream_in_state(project: Project, dest: Destination, dplan: DestinationPlan,
                     identity: str, name: str, ledger: Ledger) -> str | None:
    """Under which key the state holds this stream's rows: its identity; else a declared move
    (``moved: destination/D/events/OLD``, OLD a name or an identity); else its name (states
    written before streams had identities). None when the state has none of them."""
    candidates = [identity]
    for old, new in project.settings.moved:
        if new in (f"{dest.ref}/events/{name}", f"{dest.ref}/events/{identity}"):
            candidates.append(old.rsplit("/events/", 1)[1])
    candidates.append(name)
    for stream in candidates:
        if ledger.has_events(dplan.state_name, stream):
            return stream
    return None


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


WATERMARK_OVERLAP = timedelta(minutes=5)  # rows committed a little after their updated_at
RELATIVE_OPS = frozenset({"within", "not_within"})


def _stamped(project: Project, dest: Destination) -> bool:
    """Whether every source the destination's model reads declares ``updated_at``."""
    props = project.model_properties(dest.model)
    sources = {project.primary_source(dest.model).name, *(p.source for p in props)}
    return all(project.sources[s].updated_at is not None for s in sources)


def never_incremental(project: Project, dest: Destination) -> str:
    """Why ``dest`` can never be read incrementally ("" when it can, given a previous run).

    Incremental reads need ``updated_at`` on every source the model reads, no relative date
    in its filters or rules (time moves records in and out of "within 30 days" without any
    row changing), and no ``group:`` (a record that left the tracked group must be found
    gone; an incremental read only sees the rows that changed, not the members that left
    because of them)."""
    if dest.group:
        return f"it syncs the members of group {dest.group} only: a full read"
    if not _stamped(project, dest):
        return "not every source of the model declares updated_at"
    props = project.model_properties(dest.model)
    if any(f.op in RELATIVE_OPS for p in props for f in p.filters) or any(
            r.op in RELATIVE_OPS for g in project.model_groups(dest.model) for r in g.rules):
        return "relative dates (within ...) need a full read"
    return ""


def hash_kind(project: Project, dest: Destination) -> str:
    """What the record hashes the state keeps for ``dest`` cover (README "How it works"):
    related-row counts when it can read incrementally (the changed rows show every change
    but a related row that moved away or was deleted; the counts show those), else every
    property value and group flag (compared instead of reading every record)."""
    return HASH_VALUES if never_incremental(project, dest) else HASH_COUNTS


def read_since(project: Project, dest: Destination, ledger: Ledger, fingerprint: str,
               full_refresh: bool, state_name: str | None = None) -> tuple[datetime | None, str]:
    """When to read only records changed since the last run, and if not, why not: besides
    ``never_incremental``, it needs a previous confirmed run with the same config (a new
    property must be computed for everyone) that saw an ``updated_at`` stamp."""
    if full_refresh:
        return None, "full refresh requested"
    why_never = never_incremental(project, dest)
    if why_never:
        return None, why_never
    mark = ledger.watermark(state_name or dest.name)
    if mark is None:
        return None, "first run"
    if mark.get("fingerprint") != fingerprint:
        return None, "the destination's config changed since the last run"
    if not mark.get("since"):
        return None, "the last run saw no updated_at stamp"
    return datetime.fromisoformat(mark["since"]), ""


# A plan comparing record hashes reads by key at most this share of the records (and at
# least REFETCH_LIMIT); past it one full read is cheaper than the lookups.
HASH_REFETCH_SHARE = 10
# The rules that turn warehouse values into what is sent (value checks and normalisation,
# the SQL record hash): bump when one of them changes, so that the first plan after an
# upgrade reads every record again instead of trusting record hashes that only say the
# warehouse did not change (which would leave Braze with values made under the old rules).
# "2": SQLite's related-row counts hash is the counts' text (it was a BLAKE2b of them).
# "3": SQLite's value hash is a BLAKE2b of the values' marshal encoding (engine.sqlite_row_hash).
VALUE_RULES = "3"
# Per rules, per kind of record hash, the earlier rules whose hashes of that kind these
# still trust: a bump that changed only one kind costs the other kind no full read. "3"
# changed only the value hash, so related-row counts recorded under "2" still hold. Keyed
# by the rules it was written for: a bump that adds no entry trusts no earlier hash.
STILL_TRUSTED: dict[str, dict[str, frozenset[str]]] = {"3": {HASH_COUNTS: frozenset({"2"})}}


def compare_hashes(project: Project, dest: Destination, warehouse: Warehouse, ledger: Ledger,
                   fingerprint: str, state_name: str, *, full_refresh: bool, fresh: bool,
                   rebound: frozenset[str], kind: str = HASH_VALUES) -> tuple[bool, str]:
    """Whether to compare the record hashes (of ``kind``, see ``hash_kind``) the warehouse
    computes with the state's, reading by key only the records whose hash changed (README
    "How it works"), and if not, why not. A record hash covers what the warehouse computes
    (relative dates at the plan's ``now``), not the config; so it needs the same config as
    the last confirmed run, the same value rules and hashes of the same kind."""
    if full_refresh:
        return False, "full refresh requested"
    if fresh:
        return False, "the Braze workspace changed"
    if not warehouse.hashes_supported() and (
            kind == HASH_VALUES or counted_sources(project, dest.model)):
        return False, (f"this warehouse ({project.apps[warehouse.app_name].type}) computes no "
                       "record hashes: a full read")
    if dest.group:
        return False, f"it syncs the members of group {dest.group} only: a full read"
    if rebound:
        return False, "a group syncs to another subscription group id: a full read"
    count = ledger.count(state_name)
    if count == 0:
        return False, "first run"
    mark = ledger.watermark(state_name)
    if mark is None or mark.get("fingerprint") != fingerprint:
        return False, "the destination's config changed since the last run (or was never recorded)"
    rules = mark.get("rules")
    trusted = STILL_TRUSTED.get(VALUE_RULES, {}).get(kind, frozenset())
    if rules != VALUE_RULES and rules not in trusted:
        return False, ("brazecfg's value rules changed since the last run (an upgrade): a full "
                       "read")
    stored = str(mark.get("hash", HASH_VALUES))
    if stored != kind:
        return False, (f"the state's record hashes cover {_KIND_WORDS.get(stored, stored)}"
                       f" and this destination compares {_KIND_WORDS[kind]} (it "
                       f"{'can' if kind == HASH_COUNTS else 'can no longer'} read "
                       "incrementally): a full read, which records them")
    unhashed = ledger.count_unhashed(state_name)
    if unhashed > max(REFETCH_LIMIT, count // HASH_REFETCH_SHARE):
        return False, (f"{unhashed:,} records have no record hash in the state yet (confirmed "
                       "before record hashes): a full read, which records them")
    return True, ""


_KIND_WORDS = {HASH_VALUES: "property values", HASH_COUNTS: "related-row counts"}


def bindings_for(project: Project, dest: Destination) -> dict[str, object]:
    """What the state of ``dest`` describes (README "How it works", identity rules): the Braze
    workspace (a hash of the rendered REST endpoint and the app's declared ``workspace``: it
    survives an API-key rotation, and the endpoint, maybe rendered from a secret, is never
    stored) and, per synced group, its subscription group id."""
    app = project.apps[dest.app]
    endpoint = str(app.options.get("rest_endpoint") or "").strip().rstrip("/").lower()
    workspace = str(app.options.get("workspace") or "")
    ws = hashlib.sha256(f"{endpoint}\x00{workspace}".encode()).hexdigest()[:16]
    return {"workspace": ws, "app": dest.app, "model": dest.model,
            "groups": {s.group: s.subscription_group_id for s in dest.subscription_groups}}


def read_binding(ledger: Ledger, name: str) -> dict[str, object] | None:
    value = ledger.meta(f"binding:{name}")
    return None if value is None else dict(json.loads(value))


def _state_name(project: Project, dest: Destination, ledger: Ledger) -> tuple[str, str]:
    """The name under which the state holds ``dest`` and why: its own name, or the ``from`` of
    a declared ``moved`` whose state exists while ``dest`` has none."""
    known = set(ledger.known_destinations())  # read once: each is a query over four tables
    if dest.name in known or read_binding(ledger, dest.name) is not None:
        return dest.name, ""
    for old, new in project.settings.moved:
        if new == dest.ref and old.startswith("destination/") and "/events/" not in old:
            old_name = old.split("/", 1)[1]
            if old_name in known or read_binding(ledger, old_name) is not None:
                return old_name, f"moved from {old} (declared in brazecfg.yml)"
    _refuse_a_guessed_rename(project, dest, ledger, known)
    return dest.name, ""


def _refuse_a_guessed_rename(project: Project, dest: Destination, ledger: Ledger,
                             known: set[str]) -> None:
    """A new destination whose state is empty while a destination gone from the config wrote
    to the same workspace and model is most likely a rename: planning it as new would resend
    every profile and every event. Renames are declared, never guessed."""
    want = bindings_for(project, dest)
    moved_from = {old for old, _ in project.settings.moved}
    for name in sorted(known):
        if name in project.destinations or f"destination/{name}" in moved_from:
            continue
        had = read_binding(ledger, name)
        if had is None or any(had.get(k) != want[k] for k in ("workspace", "app", "model")):
            continue
        raise StateError(
            f"{dest.ref} is new, and destination/{name}, gone from the config, wrote to the same "
            f"Braze workspace for model/{dest.model} ({ledger.count(name):,} records). If this is "
            f"a rename, declare it in brazecfg.yml:\n  moved:\n    - from: destination/{name}\n"
            f"      to: {dest.ref}\nIf it is not, remove the old state first with "
            f"`brazecfg state rm destination/{name}`.")


def _plan_destination(project: Project, dest: Destination, warehouse: Warehouse,
                      ledger: Ledger, hasher: Hasher, lock: Lockfile, *, now: datetime,
                      fps: dict[str, str], spool_dir: Path | None, exists: ExistsCheck | None,
                      full_refresh: bool, resend_unknown: bool, start_over: bool,
                      opted_out: OptOutCheck | None = None,
                      on_rows: RowsRead | None = None) -> DestinationPlan:
    state_name, moved_why = _state_name(project, dest, ledger)
    want_binding = bindings_for(project, dest)
    had_binding = read_binding(ledger, state_name)
    why_new: list[str] = []
    fresh = False  # the state describes another workspace: everything is new there
    rebound: frozenset[str] = frozenset()
    if had_binding is None and state_name in ledger.known_destinations():
        # A state from before bindings: which workspace it describes is unknown, so the plan
        # says which one it is taken for, and applying it records that (a state change to
        # confirm), after which another workspace is caught as above.
        why_new.append(f"this state records no Braze workspace yet (made before brazecfg "
                       f"recorded one): it is taken to describe the workspace app/{dest.app} "
                       f"points at now, and apply records workspace {want_binding['workspace']}."
                       f" If app/{dest.app} pointed elsewhere when it was made, do not apply: "
                       "point it back, or start this destination over (`brazecfg state rm "
                       f"destination/{state_name}`)")
    elif had_binding is not None:
        if had_binding.get("workspace") != want_binding["workspace"]:
            fresh = True
            why_new.append(f"the Braze workspace of app/{dest.app} changed (its rest_endpoint "
                           "or workspace): every record and event is new there; the state of "
                           "the old workspace is replaced when this is applied")
        else:
            old_groups = dict(had_binding.get("groups") or {})  # type: ignore[call-overload]
            new_groups = dict(want_binding["groups"])  # type: ignore[call-overload]
            rebound = frozenset(g for g, gid in new_groups.items()
                                if g in old_groups and old_groups[g] != gid)
            for g in sorted(rebound):
                why_new.append(f"group {g} now syncs to another subscription group id: every "
                               "member joins it (members stay in the old one)")
    confirmed = 0 if fresh else ledger.count(state_name)
    locked = lock.destinations.get(dest.name, {})
    assume_unknown = False
    if not fresh and confirmed == 0 and (locked.get("records") or locked.get("events")):
        if not start_over:
            raise StateError(
                f"destination {dest.name}: the lockfile says Braze confirmed "
                f"{locked.get('records', 0):,} records (and {locked.get('events', 0):,} event "
                f"rows), but the state ({_describe_state(lock, ledger)}) has none. Planning "
                "now would resend every profile and every event. Configure the state backend "
                "this project applied with (brazecfg.yml state:), restore a backup "
                "(`brazecfg state push FILE`), or run with --start-over to treat Braze as "
                "empty (events are then counted as delivery unknown, never sent again)")
        assume_unknown = bool(locked.get("events"))
        why_new.append("starting over (--start-over): the state is empty although the lockfile "
                       f"says {locked.get('records', 0):,} records were confirmed")
    kind = hash_kind(project, dest)
    since, why_full = (None, "the Braze workspace changed") if fresh else read_since(
        project, dest, ledger, fps[dest.ref], full_refresh, state_name)
    hashed, why_not_hashed = compare_hashes(
        project, dest, warehouse, ledger, fps[dest.ref], state_name, full_refresh=full_refresh,
        fresh=fresh, rebound=rebound, kind=kind)
    if kind == HASH_COUNTS:
        # Incremental reads compare related-row counts: without them a related row that moved
        # to another record, or was deleted, would go unseen. Counts say nothing about values,
        # so they are only compared along with the changed rows.
        if since is not None and not hashed:
            since, why_full = None, why_not_hashed
        hashed = hashed and since is not None
    elif hashed:
        why_full = ""
    elif since is None:
        why_full = why_not_hashed or why_full
    recheck: frozenset[str] = frozenset()
    if since is not None or hashed:
        failed, sample = ledger.failures(state_name, limit=REFETCH_LIMIT + 1)
        if failed > REFETCH_LIMIT:
            since, why_full = None, f"{failed:,} records failed last time: a full read"
        else:
            recheck = frozenset(f.external_id for f in sample)
    # The next incremental read starts from the warehouse's own clock: its greatest
    # updated_at, read before the rows (a row this read misses has a stamp above it), minus
    # an overlap for rows committed a little after their stamp. Never this machine's clock.
    high = warehouse.max_updated_at(dest.model) if _stamped(project, dest) else None
    # rows expected: the state's records when their hashes are compared in brazecfg (one a
    # record) or read in full; None for an incremental read of rows (how many changed is
    # what it finds out) and for a diff in the warehouse (only the records that differ leave)
    on_read = Reading(on_rows, dest.name, confirmed or None if hashed or not since else None)
    limit = max(REFETCH_LIMIT, confirmed // HASH_REFETCH_SHARE) if hashed else REFETCH_LIMIT
    tally = Tally()
    try:
        dplan = _diff_once(project, dest, warehouse, ledger, hasher, state_name, now=now,
                           since=since, recheck=recheck, spool_dir=spool_dir, exists=exists,
                           fresh=fresh, rebound=rebound, opted_out=opted_out, hashed=hashed,
                           limit=limit, reading=on_read, kind=kind, tally=tally)
    except TooManyToRefetch:
        why_full = (f"more than {limit:,} records changed, are not in the state or failed "
                    "last time: a full read" if hashed else
                    f"more than {REFETCH_LIMIT:,} records are not in the state or failed last "
                    f"time (rows arrived late, or with an old updated_at): a full read")
        since, hashed = None, False
        dplan = _diff_once(project, dest, warehouse, ledger, hasher, state_name, now=now,
                           since=None, recheck=frozenset(), spool_dir=spool_dir, exists=exists,
                           fresh=fresh, rebound=rebound, opted_out=opted_out,
                           reading=on_read, kind=kind, tally=tally)
    dplan.rows_read = tally.n
    dplan.state_name = state_name
    dplan.moved_from = moved_why
    dplan.binding_changes = why_new
    dplan.bindings = want_binding
    dplan.reset_state = fresh
    dplan.read_since = since.isoformat() if since else None
    dplan.full_read_reason = why_full
    # What the next plan compares with: this run's config (record hashes need the same
    # config) and, when stamped, where the next incremental read starts.
    dplan.compared = (("counts" if counted_sources(project, dest.model) else "keys")
                      if hashed and kind == HASH_COUNTS else "values" if hashed else "")
    dplan.next_watermark = {"fingerprint": fps[dest.ref], "rules": VALUE_RULES, "hash": kind}
    if high is not None:
        dplan.next_watermark["since"] = (high - WATERMARK_OVERLAP).isoformat()
    if dest.events:
        _plan_events(project, dest, dplan, warehouse, ledger, spool_dir, resend_unknown,
                     fresh=fresh, assume_unknown=assume_unknown,
                     on_read=reporter(on_rows, dest.name, "events"))
    if not fresh:
        failed, sample = ledger.failures(state_name, limit=ISSUE_SAMPLE_SIZE)
        dplan.failed_last_time = failed
        dplan.failed_samples = [Issue(f.external_id, "", f.reason) for f in sample]
    _estimate_requests(project, dest, dplan)
    dplan.guardrail_limits = guardrails.limits(project.settings.guardrails, dest.guardrails)
    dplan.guardrails = guardrails.check(
        dplan.guardrail_limits, confirmed=confirmed, rows=dplan.source_rows,
        deletes=dplan.counts["delete"], members=dplan.members, leaves=dplan.leaves,
        data_points=dplan.data_points, events=sum(dplan.events_to_send.values()))
    return dplan


def _estimate_requests(project: Project, dest: Destination, dplan: DestinationPlan) -> None:
    """The requests apply will make and the least time they take at the app's rate limits:
    what a workspace billed by monthly active users pays in (its plans show these instead of
    data points), and what any apply waits for."""
    app = project.apps[dest.app]
    dplan.billing = str(app.options.get("billing") or "data_points")
    try:
        settings = braze_settings(app)
        limits, path, events_batch = settings.rate_limits, settings.track_path, \
            settings.track_batch  # events always go to /users/track
        batch = settings.bulk_batch if path == "/users/track/bulk" else settings.track_batch
    except BrazecfgError:  # no key here (a plan on a laptop): the defaults
        batch, events_batch, limits, path = 75, 75, dict(DEFAULT_LIMITS), "/users/track"
    c = dplan.counts
    writes = c["create"] + c["update"] + c["enrich"]
    events = -(-sum(dplan.events_to_send.values()) // events_batch)
    per_bucket = {
        path: -(-writes // batch),
        "/users/track": (-(-writes // batch) if path == "/users/track" else 0) + events,
        "/users/delete": -(-c["delete"] // 50),
    }  # subscription group changes ride in the /users/track objects (apply/applier.py)
    dplan.requests = sum(per_bucket.values())
    dplan.seconds_at_limit = max((n * limits[b][1] / limits[b][0] for b, n in per_bucket.items()
                                  if n and b in limits), default=0.0)


def _describe_state(lock: Lockfile, ledger: Ledger) -> str:
    here = str(ledger.describe())
    was = lock.state
    if was.get("id") and was.get("id") != ledger.identity.state_id:
        return (f"{here}; the lockfile was written with another state, {was.get('backend')} "
                f"state {was['id'][:8]}")
    return here


def opt_out_check(project: Project, dest: Destination, clients: ClientFactory | None,
                  checks: dict[str, _OptOuts]) -> _OptOuts | None:
    """respect_opt_outs (the default): who of the members about to join a subscription group
    unsubscribed from it in Braze, asked read-only before the plan counts them as joining.
    Braze's /subscription/status/get answers Subscribed, Unsubscribed or Unknown per user;
    only Unsubscribed holds a join back (Unknown: never in the group, or a new user). One
    check per Braze app (``checks``, closed by the caller), whatever how many destinations
    use it, so its calls count against one limiter."""
    if clients is None or not dest.subscription_groups or not dest.respect_opt_outs:
        return None
    if dest.app not in checks:
        checks[dest.app] = _OptOuts(clients(project.apps[dest.app]))
    return checks[dest.app]


REMOTE_AFTER = 40  # opt-out checks made on this process's threads before a process of its own


class _OptOuts:
    """The opt-out check over one Braze client, for every destination of its app in one
    plan. The first REMOTE_AFTER calls run on up to ``workers`` threads of the merge
    (diff.check_opt_outs), as many as the client sends at once and as keep
    /subscription/status/get at its rate limit; the client's limiter paces them. From then
    on ``start`` hands each call to a process of its own (braze/remote.py), with as many
    threads and a limiter of its own, so the calls no longer take the merge's turn at
    Python's lock: at most REMOTE_AFTER calls more than the bucket's limit in one window
    (250,000 an hour by default). A plan with fewer checks never starts it; one that cannot
    start it makes every call here. ``close`` stops it."""

    def __init__(self, client: BrazeClient) -> None:
        self.client = client
        self.workers = client.workers_for("/subscription/status/get")
        self._calls = 0
        self._remote: StatusProcess | None = None
        self.local = bool(getattr(sys, "frozen", False))  # a frozen build's executable
        # is not an interpreter to start

    def __call__(self, group_id: str, external_ids: list[str]) -> set[str]:
        return unsubscribed(external_ids, self.client.subscription_status(group_id,
                                                                          external_ids))

    def start(self, calls: list[tuple[str, list[str]]]) -> _Remote | None:
        """``calls`` (group id, external ids), made by the other process; None: make them
        here (``__call__``). Called by the merge's own thread only."""
        self._calls += len(calls)
        if self._calls <= REMOTE_AFTER or self.local:
            return None
        if self._remote is None:
            try:
                self._remote = StatusProcess(self.client.settings, self.workers,
                                             on_retry=self.client.on_retry)
            except OSError:
                self.local = True  # no interpreter to start: every call stays here
                return None
        return _Remote(self, [(g, ids, self._remote.start(g, ids)) for g, ids in calls])

    def close(self) -> None:
        remote, self._remote = self._remote, None
        if remote is not None:
            remote.close()


class _Remote:
    """Calls made by the other process, answered as a Future's: who unsubscribed, per call.
    A process that could not start (StartFailed) sent none of them: they are made here, and
    so is every later call."""

    def __init__(self, check: _OptOuts, calls: list[tuple[str, list[str], Call]]) -> None:
        self._check = check
        self._calls = calls

    def done(self) -> bool:
        return all(call.done() for _, _, call in self._calls)

    def result(self) -> list[set[str]]:
        out = []
        for group_id, ids, call in self._calls:
            try:
                out.append(unsubscribed(ids, call.result()))
            except StartFailed:
                self._check.local = True
                out.append(self._check(group_id, ids))
        return out


def unsubscribed(external_ids: list[str], states: dict[str, str]) -> set[str]:
    """Braze's /subscription/status/get answers Subscribed, Unsubscribed or Unknown per
    user; only Unsubscribed holds a join back."""
    return {i for i in external_ids if states.get(i) == "Unsubscribed"}


def tracked_rows(dest: Destination, rows: Iterable[ModelRow]) -> Iterator[ModelRow]:
    """A destination with ``group:`` (Grouparoo's tracked group) has the group's members as
    its records: a record that leaves the group is gone from it, as if deleted from the model
    (deleted in sync mode, kept in the others)."""
    if dest.group is None:
        yield from rows
        return
    for row in rows:
        if dest.group in row.groups:
            yield row


@dataclass(frozen=True)
class Reading:
    """Who hears the rows a plan reads (``on_rows``, bound to a destination), and how many it
    expects."""

    on_rows: RowsRead | None
    destination: str
    expected: int | None

    def report(self, *, expected: bool = True) -> Callable[[int], None] | None:
        """The counter's callback; ``expected=False``: no total is known (a diff in the
        warehouse sends only the keys that differ, however many records it compares)."""
        return reporter(self.on_rows, self.destination, "records",
                        self.expected if expected else None)


def _diff_once(project: Project, dest: Destination, warehouse: Warehouse, ledger: Ledger,
               hasher: Hasher, state_name: str, *, now: datetime, since: datetime | None,
               recheck: frozenset[str], spool_dir: Path | None, exists: ExistsCheck | None,
               fresh: bool, rebound: frozenset[str], opted_out: OptOutCheck | None = None,
               hashed: bool = False, limit: int | None = None,
               reading: Reading | None = None,
               kind: str = HASH_VALUES, tally: Tally | None = None) -> DestinationPlan:
    """One merge of the warehouse with the state. ``hashed``: keys and record hashes of
    ``kind`` leave the warehouse (with, when ``since`` is given, the rows changed since: the
    incremental read), the state is read light (key, groups, stored hash), and only the
    records whose hash differs (or that the state lacks) are read in full, by key. Every row
    read carries its record hash of ``kind``, which apply stores. ``reading`` counts the rows
    read: the hashes when comparing them, else the model rows."""
    tally = tally or Tally()
    reading = reading or Reading(None, dest.name, None)
    on_read = reading.report()
    # The record hash a row read carries is only ever stored (by the apply of the spooled
    # changes): a plan with no spool (``brazecfg plan`` without --out) has the warehouse
    # skip it. The hashes compared (stream_hashes, the joined diff) are another query.
    row_kind = kind if spool_dir is not None else HASH_NONE
    rows: Iterable[ModelRow] = iter(()) if hashed and since is None else tracked_rows(
        dest, counted(tally(warehouse.stream_model(dest.model, now=now, changed_since=since,
                                                   hash_kind=row_kind)),
                      None if hashed else on_read))
    joined = _joined_state(dest, warehouse, ledger, state_name, now=now, tally=tally,
                           kind=kind) if hashed and not fresh else None
    hashes = None
    records: Iterator[LedgerRecord]
    if joined is not None:  # the diff runs in the warehouse: only what differs comes back
        hashes = counted(joined.hashes(), reading.report(expected=False))
        records = with_intents(joined.records(), _unconfirmed(ledger, state_name, limit))
    else:
        hashes = counted(tally(warehouse.stream_hashes(dest.model, now=now, kind=kind)),
                         on_read) if hashed else None
        records = iter(()) if fresh else with_intents(
            ledger.stream(state_name, light=hashed), ledger.stream_intents(state_name))
    if rebound:
        records = (replace(r, groups=r.groups - rebound) for r in records)
    spool = rehash = None
    spool_path = spool_dir / f"{dest.name}.jsonl" if spool_dir is not None else None
    rehash_path = spool_dir / f"{dest.name}.hashes.jsonl" if spool_dir is not None else None
    if spool_path is not None and rehash_path is not None:
        spool = spool_path.open("w", encoding="utf-8")
        rehash = rehash_path.open("w", encoding="utf-8")
    try:
        dplan = diff_destination(
            project, dest, rows, records, hasher, spool=spool, exists=exists,
            recheck=recheck,
            fetch=lambda ks: tracked_rows(dest, tally(warehouse.stream_model(
                dest.model, now=now, only_keys=ks, hash_kind=row_kind))),
            opted_out=opted_out, hashes=hashes,
            load=lambda ids: ledger.records(state_name, ids), rehash=rehash, limit=limit,
            joined=joined)
    finally:
        if spool is not None:
            spool.close()
        if rehash is not None:
            rehash.close()
    dplan.spool = spool_path
    dplan.rehash_spool = rehash_path
    if hashed:
        dplan.compared_in = "warehouse" if joined is not None else "brazecfg"
    return dplan


def _joined_state(dest: Destination, warehouse: Warehouse, ledger: Ledger, state_name: str, *,
                  now: datetime, tally: Tally, kind: str) -> JoinedState | None:
    """The comparison of record hashes (of ``kind``: related-row counts on an incremental
    read, values on a full one) run in the warehouse, when it can read the state's records
    itself (README "How it works"): unchanged records never leave it."""
    table = ledger.joinable(state_name)
    if table is None or not warehouse.joins_state(table, kind):
        return None
    table = ledger.for_a_long_read(table)
    if table is None:
        return None
    return JoinedState(tally(warehouse.stream_hash_changes(dest.model, now=now, state=table,
                                                           kind=kind)),
                       ledger.light, state_count=ledger.count(state_name),
                       members=ledger.member_counts(state_name))


def _unconfirmed(ledger: Ledger, state_name: str, limit: int | None) -> list[str]:
    """The create intents of ``state_name`` that the state has no record of (``with_intents``
    takes any other intent for a create, and a joined diff leaves unchanged records out).
    Each is read by key, so past ``limit`` of them one full read is cheaper."""
    ids = list(islice(ledger.stream_intents(state_name), (limit or REFETCH_LIMIT) + 1))
    if len(ids) > (limit or REFETCH_LIMIT):
        raise TooManyToRefetch(len(ids))
    known = ledger.records(state_name, ids)
    return [i for i in ids if i not in known]


def make_plan(project: Project, *, now: datetime | None = None,
              clients: ClientFactory | None = None, spool_dir: Path | None = None,
              ledger: Ledger | None = None, hasher: Hasher | None = None,
              destinations: list[str] | None = None, resend_unknown: bool = False,
              full_refresh: bool = False, start_over: bool = False,
              on_rows: RowsRead | None = None) -> Plan:
    """Plan every destination (or those named). ``clients`` is needed for enrich mode;
    ``on_rows`` hears how many rows have been read, for a progress display."""
    now = now or datetime.now(timezone.utc)
    paths = StatePaths.of(project.settings)
    lock = read_lockfile(paths.lockfile)
    fps = resource_fingerprints(project)
    own_ledger = ledger is None
    ledger = ledger or open_state(project, writable=False)
    try:
        hasher = hasher or hasher_for(paths, ledger, create=False)
        plans: list[DestinationPlan] = []
        warehouses: dict[str, Warehouse] = {}
        checks: dict[str, _OptOuts] = {}  # the opt-out check of each Braze app
        try:
            for name in sorted(project.destinations):
                if destinations and name not in destinations:
                    continue
                dest = project.destinations[name]
                app = project.apps[project.primary_source(dest.model).app]
                if app.name not in warehouses:
                    warehouses[app.name] = connect(app, project)
                exists = None
                if dest.mode == "enrich" and clients is not None:
                    exists = clients(project.apps[dest.app]).existing
                plans.append(_plan_destination(
                    project, dest, warehouses[app.name], ledger, hasher, lock, now=now, fps=fps,
                    spool_dir=spool_dir, exists=exists, full_refresh=full_refresh,
                    resend_unknown=resend_unknown, start_over=start_over,
                    opted_out=opt_out_check(project, dest, clients, checks), on_rows=on_rows))
        finally:
            for check in checks.values():
                check.close()
            for wh in warehouses.values():
                wh.close()
        moved_away = {p.state_name for p in plans}
        removed = () if destinations else tuple(
            RemovedDestination(name, ledger.count(name), sum(ledger.event_states(name).values()))
            for name in ledger.known_destinations()
            if name not in project.destinations and name not in moved_away)
        return Plan(
            config_changes=diff_config(project, fps, lock),
            destinations=tuple(plans),
            removed_destinations=removed,
            targets=tuple(sorted(destinations or ())),
            config_fingerprint=config_fingerprint(fps),
            ledger_generation=ledger.generation,
            fingerprints=fps,
        )
    finally:
        if own_ledger:
            ledger.close()
