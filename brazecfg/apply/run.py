"""The apply flow: lock, plan with a spool, confirm, send, commit, write the lockfile."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from brazecfg.apply.applier import DestinationApplier, DestinationResult, Progress
from brazecfg.braze.client import BrazeClient
from brazecfg.braze.settings import braze_settings
from brazecfg.errors import AbortedError, GuardrailError, StalePlanError
from brazecfg.model.resources import App, Project
from brazecfg.plan.config_diff import key_hashes
from brazecfg.plan.definition import DestinationPlan, Plan
from brazecfg.plan.planner import hasher_for, make_plan, read_binding
from brazecfg.state.ledger import Ledger
from brazecfg.state.lock import exclusive
from brazecfg.state.lockfile import Lockfile, read_lockfile, write_lockfile
from brazecfg.state.paths import StatePaths


@dataclass
class ApplyOutcome:
    plan: Plan
    results: list[DestinationResult] = field(default_factory=list)
    applied: bool = False


class Clients:
    """One pooled client per Braze app for the whole run."""

    def __init__(self) -> None:
        self._clients: dict[str, BrazeClient] = {}

    def __call__(self, app: App) -> BrazeClient:
        if app.name not in self._clients:
            self._clients[app.name] = BrazeClient(braze_settings(app))
        return self._clients[app.name]

    def close(self) -> None:
        for c in self._clients.values():
            c.close()


def _read_saved_plan(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StalePlanError(f"cannot read the saved plan {path} ({exc}); make a new one with "
                             "`brazecfg plan --out`") from None
    if not isinstance(doc, dict):
        raise StalePlanError(f"{path} is not a plan saved by `brazecfg plan --out`")
    return doc


def check_saved_plan(saved: dict[str, Any], plan: Plan) -> None:
    """Refuse a saved plan that no longer describes what would be sent now."""
    if saved.get("config_fingerprint") != plan.config_fingerprint:
        raise StalePlanError("the saved plan was made for another version of the config; "
                             "run `brazecfg plan --out` again")
    if saved.get("ledger_generation") != plan.ledger_generation:
        raise StalePlanError("the ledger changed since the saved plan was made (another apply "
                             "ran); run `brazecfg plan --out` again")
    want = {d["destination"]: d["digest"] for d in saved.get("destinations", [])}
    now = {d.destination: d.digest for d in plan.destinations}
    for name in sorted(set(want) | set(now)):
        if want.get(name) != now.get(name):
            raise StalePlanError(f"the warehouse data for destination {name} changed since the "
                                 "saved plan was made; run `brazecfg plan --out` again")


def _advance_watermark(ledger: Ledger, dplan: DestinationPlan) -> None:
    """The next incremental read starts where this run's read started. Records Braze rejected
    are kept in the state's failures and read again by key next time, so one record Braze
    keeps rejecting never turns incremental reads off."""
    if dplan.next_watermark:
        ledger.set_watermark(dplan.destination, dplan.next_watermark)


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
                  targets: list[str] | None = None) -> ApplyOutcome:
    paths = StatePaths.of(project.settings)
    clients = clients or Clients()
    try:
        with exclusive(paths.apply_lock, on_wait=on_wait), \
                tempfile.TemporaryDirectory(prefix="brazecfg-spool-") as spool:
            with Ledger(paths.ledger, writable=True) as ledger:
                # A state written with a key that is gone is an error (hasher_for says so),
                # never a fresh random key, which would make every hash differ.
                hasher = hasher_for(paths, ledger, create=ledger.key_check is None)
                if ledger.key_check is None:
                    ledger.set_key_check(hasher.check_value())
                plan = make_plan(project, now=now, clients=clients, spool_dir=Path(spool),
                                 ledger=ledger, hasher=hasher, resend_unknown=resend_unknown,
                                 full_refresh=full_refresh, start_over=start_over,
                                 destinations=targets)
                plan.allowed = allow
                if saved_plan is not None:
                    check_saved_plan(_read_saved_plan(saved_plan), plan)
                outcome = ApplyOutcome(plan)
                blocked = plan.blocked(allow)
                if blocked:
                    lines = "\n".join(f"  destination {d}: {t.name}: {t.message}"
                                      for d, t in blocked)
                    raise GuardrailError(f"the plan trips {len(blocked)} guardrail"
                                         f"{'s' if len(blocked) > 1 else ''}; nothing was sent:"
                                         f"\n{lines}")
                if not plan.has_changes:
                    for dplan in plan.destinations:
                        _advance_watermark(ledger, dplan)
                        if read_binding(ledger, dplan.destination) is None:
                            _record_bindings(ledger, dplan)  # states from before bindings
                    return outcome
                if not confirm(plan):
                    raise AbortedError("apply cancelled; nothing was sent")
                for dplan in plan.destinations:
                    dest = project.destinations[dplan.destination]
                    _prepare_state(ledger, dplan)
                    applier = DestinationApplier(project, dest, clients(project.apps[dest.app]),
                                                 ledger)
                    result = applier.run(dplan, progress)
                    outcome.results.append(result)
                    _advance_watermark(ledger, dplan)
                    _record_bindings(ledger, dplan)
                previous = read_lockfile(paths.lockfile)
                # A destination removed from the config keeps its state (its users stay in
                # Braze as they are) until `brazecfg state rm`: nothing is forgotten in silence.
                write_lockfile(paths.lockfile, Lockfile(
                    resources=dict(plan.fingerprints),
                    declared={r.ref: key_hashes(dict(r.declared)) for r in project.all()},
                    destinations={d: _confirmed(ledger, d) if not targets or d in targets
                                  else previous.destinations.get(d, {})
                                  for d in sorted(project.destinations)},
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
