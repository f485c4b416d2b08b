"""The apply flow: lock, plan with a spool, confirm, send, commit, write the lockfile."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

from brazecfg.apply.access import check_access
from brazecfg.apply.applier import DestinationApplier, DestinationResult, Progress
from brazecfg.apply.settle import SettleResult, settle_unknown
from brazecfg.apply.stop import StopRequest
from brazecfg.braze.client import BrazeClient
from brazecfg.braze.settings import braze_settings
from brazecfg.errors import AbortedError, GuardrailError, StalePlanError, StateError
from brazecfg.model.resources import App, Project
from brazecfg.plan.config_diff import key_hashes
from brazecfg.plan.counting import RowsRead
from brazecfg.plan.definition import DestinationPlan, Plan
from brazecfg.plan.planner import hasher_for, make_plan, read_binding
from brazecfg.plan.saved import SavedPlan, drift_message, keep_only_matching
from brazecfg.scratch import Scratch
from brazecfg.state.hashing import Hasher, load_key
from brazecfg.state.ledger import Ledger
from brazecfg.state.lockfile import Lockfile, read_lockfile, write_lockfile
from brazecfg.state.paths import StatePaths
from brazecfg.state.store import locked_state


@dataclass
class ApplyOutcome:
    plan: Plan
    results: list[DestinationResult] = field(default_factory=list)
    applied: bool = False
    settled: list[SettleResult] = field(default_factory=list)

    @property
    def unknown_left(self) -> int:
        """Event rows whose delivery is still unknown after this apply: this run's and
        those of earlier runs it did not resend (what the CLI's exit code reports)."""
        if self.applied:
            return sum(r.events_unknown + r.events_unknown_before for r in self.results)
        return sum(sum(d.events_unknown.values()) for d in self.plan.destinations)


class Clients:
    """One pooled client per Braze app for the whole run. ``on_retry`` hears every retry of
    every client before its wait: (seconds, why: "429", "503", "timed out", ...)."""

    def __init__(self, on_retry: Callable[[float, str], None] | None = None) -> None:
        self._clients: dict[str, BrazeClient] = {}
        self._on_retry = on_retry

    def __call__(self, app: App) -> BrazeClient:
        if app.name not in self._clients:
            client = BrazeClient(braze_settings(app))
            client.on_retry = self._on_retry
            self._clients[app.name] = client
        return self._clients[app.name]

    def close(self) -> None:
        for c in self._clients.values():
            c.close()


def _apply_saved_plan(saved_plan: Path, plan: Plan, hasher: Hasher, workdir: Path, *,
                      skip_changed: bool, max_age: timedelta | None,
                      warn: Callable[[str], None] | None) -> set[str]:
    """Hold the new plan to the reviewed one, record by record (plan/saved.py). Returns the
    destinations where something was held back (their watermark must not advance, so the
    next plan reads the held-back records again)."""
    saved = SavedPlan(saved_plan, workdir)
    try:
        saved.check_age(max_age)
        saved.check_identity(plan, hasher)
        drifts = [saved.compare(d, hasher, workdir) for d in plan.destinations]
    finally:
        saved.close()
    if not any(d.changed for d in drifts):
        return set()
    if not skip_changed:
        raise StalePlanError(drift_message(drifts, skipped=False))
    if warn is not None:
        warn(drift_message(drifts, skipped=True))
    for dplan in plan.destinations:
        keep_only_matching(dplan, workdir)
    return {d.destination for d in drifts if d.changed}


def _advance_watermark(ledger: Ledger, dplan: DestinationPlan) -> None:
    """The next incremental read starts where this run's read started. Records Braze rejected
    are kept in the state's failures and read again by key next time, so one record Braze
    keeps rejecting never turns incremental reads off."""
    if dplan.next_watermark:
        ledger.set_watermark(dplan.destination, dplan.next_watermark)
    # Records read that needed no change keep the record hash they were read with.
    ledger.set_row_hashes(dplan.destination, dplan.read_rehash())


def _prepare_state(ledger: Ledger, dplan: DestinationPlan) -> None:
    """Before anything is sent: make the state describe what the plan was made against.

    A declared move renames the destination's state; a stream kept under an old key (its
    legacy name, or a declared move) takes its identity; another Braze workspace replaces the
    destination's state and records the new workspace at once, so a crash mid-apply never
    wipes what the new workspace already confirmed."""
    name = dplan.destination
    if dplan.state_name and dplan.state_name != name:
        ledger.rename_destination(dplan.state_name, name)
    for old, new in sorted(dplan.stream_renames.items()):
        ledger.rename_stream(name, old, new)
    if dplan.reset_state:
        ledger.forget_destination(name)
        ledger.set_meta(f"binding:{name}", json.dumps(
            {"workspace": dplan.bindings.get("workspace"), "groups": {}}, sort_keys=True))


def _record_bindings(ledger: Ledger, dplan: DestinationPlan) -> None:
    if dplan.bindings:
        ledger.set_meta(f"binding:{dplan.destination}", json.dumps(dplan.bindings,
                                                                   sort_keys=True))


def apply_project(project: Project, *, confirm: Callable[[Plan], bool],
                  now: datetime | None = None, saved_plan: Path | None = None,
                  progress: Progress | None = None,
                  on_wait: Callable[[str], None] | None = None,
                  clients: Clients | None = None, resend_unknown: bool = False,
                  full_refresh: bool = False, start_over: bool = False,
                  allow: frozenset[str] = frozenset(),
                  targets: list[str] | None = None, lock_timeout: float = 0.0,
                  settle: bool = False,
                  on_settled: Callable[[list[SettleResult]], None] | None = None,
                  stop: StopRequest | None = None, skip_changed: bool = False,
                  max_plan_age: timedelta | None = None,
                  on_warning: Callable[[str], None] | None = None,
                  on_phase: Callable[[str, str | None], None] | None = None,
                  on_rows: RowsRead | None = None,
                  on_events: Callable[[str, int], None] | None = None) -> ApplyOutcome:
    """Plan and apply. ``settle`` first settles events of unknown delivery from Braze's
    export (apply/settle.py); ``stop``, set by a signal handler, stops sending cleanly;
    ``saved_plan`` holds the run to a reviewed plan, record by record (plan/saved.py).

    For a progress display (plain callbacks, all optional): ``on_phase(phase, destination)``
    as each phase begins (settle, plan, then send per destination); ``on_rows`` rows read
    while planning; ``progress`` records done per destination; ``on_events(destination, n)``
    each finished batch of event rows."""
    def phase(name: str, destination: str | None = None) -> None:
        if on_phase is not None:
            on_phase(name, destination)

    if settle and saved_plan is not None:
        raise StalePlanError("--settle-unknown changes what apply sends, so it cannot apply a "
                             "saved plan; run `brazecfg apply --settle-unknown` first, then "
                             "`brazecfg plan --out` again")
    paths = StatePaths.of(project.settings)
    clients = clients or Clients()
    try:
        with locked_state(project, "brazecfg apply", timeout=lock_timeout,
                          on_wait=on_wait) as ledger, \
                Scratch("spool") as spool:
            # A state written with a key that is gone is an error (hasher_for says so), never
            # a fresh random key, which would make every hash differ. A new shared state needs
            # the same key everywhere: never a key file on one runner.
            if ledger.key_check is None and load_key(
                    paths.state_dir, create=ledger.backend.name == "local") is None:
                raise StateError(
                    f"the state ({ledger.describe()}) is shared, so its hash key must be too: "
                    "set BRAZECFG_HASH_KEY to the same secret on every machine that plans or "
                    "applies (at least 16 characters)")
            hasher = hasher_for(paths, ledger, create=False)
            if settle:
                phase("settle")
            settled = settle_unknown(project, ledger, clients) if settle else []
            if on_settled is not None and settled:
                on_settled(settled)
            phase("plan")
            plan = make_plan(project, now=now, clients=clients, spool_dir=Path(spool),
                             ledger=ledger, hasher=hasher, resend_unknown=resend_unknown,
                             full_refresh=full_refresh, start_over=start_over,
                             destinations=targets, on_rows=on_rows)
            plan.allowed = allow
            held_back: set[str] = set()
            if saved_plan is not None:
                held_back = _apply_saved_plan(saved_plan, plan, hasher, Path(spool),
                                              skip_changed=skip_changed,
                                              max_age=max_plan_age, warn=on_warning)
            outcome = ApplyOutcome(plan, settled=settled)
            blocked = plan.blocked(allow)
            if blocked:
                lines = "\n".join(f"  destination {d}: {t.name}: {t.message}"
                                  for d, t in blocked)
                raise GuardrailError(f"the plan trips {len(blocked)} guardrail"
                                     f"{'s' if len(blocked) > 1 else ''}; nothing was sent:"
                                     f"\n{lines}")
            if not plan.has_changes:
                for dplan in plan.destinations:
                    if dplan.destination not in held_back:
                        _advance_watermark(ledger, dplan)
                    if read_binding(ledger, dplan.destination) is None:
                        _record_bindings(ledger, dplan)  # states from before bindings
                return outcome
            # A wrong key or endpoint fails here, in one line, before anyone approves.
            check_access(project, plan, clients, warn=on_warning)
            if not confirm(plan):
                raise AbortedError("apply cancelled; nothing was sent")
            # The key is pinned at the first write, not before: a refused or cancelled apply
            # run with a wrong key must not make the right one unusable.
            if ledger.key_check is None:
                ledger.set_key_check(hasher.check_value())
            for dplan in plan.destinations:
                if stop is not None:
                    stop.check()  # stopped between destinations: nothing in flight
                dest = project.destinations[dplan.destination]
                _prepare_state(ledger, dplan)
                applier = DestinationApplier(project, dest, clients(project.apps[dest.app]),
                                             ledger)
                if on_events is not None:
                    applier.on_events = partial(on_events, dplan.destination)
                phase("send", dplan.destination)
                result = applier.run(dplan, progress, stop)
                if not resend_unknown:  # unknown rows this run did not touch
                    result.events_unknown_before = sum(dplan.events_unknown.values())
                outcome.results.append(result)
                if dplan.destination not in held_back:
                    _advance_watermark(ledger, dplan)
                _record_bindings(ledger, dplan)
            previous = read_lockfile(paths.lockfile)
            # A destination removed from the config keeps its state (its users stay in
            # Braze as they are) until `brazecfg state rm`: nothing is forgotten in silence.
            identity = ledger.identity
            write_lockfile(paths.lockfile, Lockfile(
                resources=dict(plan.fingerprints),
                declared={r.ref: key_hashes(dict(r.declared)) for r in project.all()},
                destinations={d: _confirmed(ledger, d) if not targets or d in targets
                              else previous.destinations.get(d, {})
                              for d in sorted(project.destinations)},
                state={"backend": identity.backend, "id": identity.state_id or ""},
            ))
            outcome.applied = True
            return outcome
    finally:
        clients.close()


def _confirmed(ledger: Ledger, destination: str) -> dict[str, int]:
    """What the lockfile remembers of a destination's state: a later plan that finds the state
    empty while these say otherwise refuses to plan everything anew."""
    states = ledger.event_states(destination)
    return {"records": ledger.count(destination),
            "events": sum(n for st, n in states.items() if st != "failed")}
