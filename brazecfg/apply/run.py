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
from brazecfg.apply.settle import SettleResult, settle_unknown
from brazecfg.apply.stop import StopRequest
from brazecfg.braze.client import BrazeClient
from brazecfg.braze.settings import braze_settings
from brazecfg.errors import AbortedError, StalePlanError
from brazecfg.model.resources import App, Project
from brazecfg.plan.config_diff import key_hashes
from brazecfg.plan.definition import DestinationPlan, Plan
from brazecfg.plan.planner import hasher_for, make_plan
from brazecfg.state.hashing import load_key
from brazecfg.state.ledger import Ledger
from brazecfg.state.lock import exclusive
from brazecfg.state.lockfile import Lockfile, write_lockfile
from brazecfg.state.paths import StatePaths


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


def _advance_watermark(ledger: Ledger, dplan: DestinationPlan, failed: int) -> None:
    """The next incremental read starts where this run's read started, but only when every
    record was confirmed: a failed record must be read again next time."""
    if failed == 0 and dplan.next_watermark:
        ledger.set_watermark(dplan.destination, dplan.next_watermark)


def apply_project(project: Project, *, confirm: Callable[[Plan], bool],
                  now: datetime | None = None, saved_plan: Path | None = None,
                  progress: Progress | None = None,
                  on_wait: Callable[[str], None] | None = None,
                  clients: Clients | None = None, resend_unknown: bool = False,
                  full_refresh: bool = False, settle: bool = False,
                  on_settled: Callable[[list[SettleResult]], None] | None = None,
                  stop: StopRequest | None = None) -> ApplyOutcome:
    """Plan and apply. ``settle`` first settles events of unknown delivery from Braze's
    export (apply/settle.py); ``stop``, set by a signal handler, stops sending cleanly."""
    if settle and saved_plan is not None:
        raise StalePlanError("--settle-unknown changes what apply sends, so it cannot apply a "
                             "saved plan; run `brazecfg apply --settle-unknown` first, then "
                             "`brazecfg plan --out` again")
    paths = StatePaths.of(project.settings)
    clients = clients or Clients()
    try:
        with exclusive(paths.apply_lock, on_wait=on_wait), \
                tempfile.TemporaryDirectory(prefix="brazecfg-spool-") as spool:
            load_key(paths.state_dir, create=True)
            with Ledger(paths.ledger, writable=True) as ledger:
                hasher = hasher_for(paths, ledger, create=True)
                if ledger.key_check is None:
                    ledger.set_key_check(hasher.check_value())
                settled = settle_unknown(project, ledger, clients) if settle else []
                if on_settled is not None and settled:
                    on_settled(settled)
                plan = make_plan(project, now=now, clients=clients, spool_dir=Path(spool),
                                 ledger=ledger, hasher=hasher, resend_unknown=resend_unknown,
                                 full_refresh=full_refresh)
                if saved_plan is not None:
                    check_saved_plan(_read_saved_plan(saved_plan), plan)
                outcome = ApplyOutcome(plan, settled=settled)
                if not plan.has_changes:
                    for dplan in plan.destinations:
                        _advance_watermark(ledger, dplan, failed=0)
                    return outcome
                if not confirm(plan):
                    raise AbortedError("apply cancelled; nothing was sent")
                for dplan in plan.destinations:
                    if stop is not None:
                        stop.check()  # stopped between destinations: nothing in flight
                    dest = project.destinations[dplan.destination]
                    applier = DestinationApplier(project, dest, clients(project.apps[dest.app]),
                                                 ledger)
                    result = applier.run(dplan, progress, stop)
                    if not resend_unknown:  # unknown rows this run did not touch
                        result.events_unknown_before = sum(dplan.events_unknown.values())
                    outcome.results.append(result)
                    _advance_watermark(ledger, dplan, failed=result.failed)
                for gone in ledger.destinations():
                    if gone not in project.destinations:
                        ledger.forget_destination(gone)
                write_lockfile(paths.lockfile, Lockfile(
                    resources=dict(plan.fingerprints),
                    declared={r.ref: key_hashes(dict(r.declared)) for r in project.all()},
                    destinations={d: {"records": ledger.count(d)}
                                  for d in sorted(project.destinations)},
                ))
                outcome.applied = True
                return outcome
    finally:
        clients.close()
