"""make_plan: (config, warehouse data, ledger) -> Plan. Writes nothing (DESIGN.md invariant 1).

The only side effects are reads: the lockfile, the ledger (opened read-only; a missing one is
empty), the warehouse, and in enrich mode Braze's read-only export endpoint. Apply passes a
spool file so the record changes it will send are exactly the ones this plan counted.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from brazecfg.braze.client import BrazeClient
from brazecfg.errors import StateError
from brazecfg.model.graph import fingerprints as resource_fingerprints
from brazecfg.model.resources import App, Destination, Project
from brazecfg.plan.config_diff import config_fingerprint, diff_config
from brazecfg.plan.definition import ISSUE_SAMPLE_SIZE, DestinationPlan, Issue, Plan
from brazecfg.plan.diff import diff_destination
from brazecfg.plan.events import diff_events
from brazecfg.state.hashing import Hasher, load_key
from brazecfg.state.ledger import Ledger
from brazecfg.state.lockfile import read_lockfile
from brazecfg.state.paths import StatePaths
from brazecfg.warehouse.base import Warehouse
from brazecfg.warehouse.connect import connect

ClientFactory = Callable[[App], BrazeClient]


def hasher_for(paths: StatePaths, ledger: Ledger, *, create: bool) -> Hasher:
    """The ledger's hash key. Without one, plan uses a throwaway key, which is only right when
    the ledger is empty (everything is a create); otherwise the key was lost."""
    key = load_key(paths.state_dir, create=create)
    if key is None:
        if ledger.key_check is not None:
            raise StateError(
                f"the ledger {paths.ledger} was written with a hash key that is not here; "
                f"restore {paths.state_dir / 'hash.key'} or set BRAZECFG_HASH_KEY")
        return Hasher(secrets.token_bytes(32))
    hasher = Hasher(key)
    if ledger.key_check is not None and ledger.key_check != hasher.check_value():
        raise StateError(
            f"the hash key does not match the one the ledger {paths.ledger} was written with; "
            "restore the right BRAZECFG_HASH_KEY or hash.key")
    return hasher


def _plan_events(project: Project, dest: Destination, dplan: DestinationPlan,
                 warehouse: Warehouse, ledger: Ledger, spool_dir: Path | None,
                 resend_unknown: bool) -> None:
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
            rows = warehouse.stream_events(dest.model, spec.source, key=spec.key,
                                           user=spec.user or source.key, columns=columns,
                                           since=since, time_column=spec.time)
            diff_events(dplan, spec, rows, ledger.stream_events(dest.name, spec.name),
                        update_existing_only=dest.mode == "enrich",
                        resend_unknown=resend_unknown, spool=spool)
    finally:
        if spool is not None:
            spool.close()


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def make_plan(project: Project, *, now: datetime | None = None,
              clients: ClientFactory | None = None, spool_dir: Path | None = None,
              ledger: Ledger | None = None, hasher: Hasher | None = None,
              destinations: list[str] | None = None, resend_unknown: bool = False) -> Plan:
    """Plan every destination (or those named). ``clients`` is needed for enrich mode."""
    now = now or datetime.now(timezone.utc)
    paths = StatePaths.of(project.settings)
    lock = read_lockfile(paths.lockfile)
    fps = resource_fingerprints(project)
    own_ledger = ledger is None
    ledger = ledger or Ledger(paths.ledger, writable=False)
    try:
        hasher = hasher or hasher_for(paths, ledger, create=False)
        plans: list[DestinationPlan] = []
        warehouses: dict[str, Warehouse] = {}
        try:
            for name in sorted(project.destinations):
                if destinations and name not in destinations:
                    continue
                dest = project.destinations[name]
                app = project.apps[project.primary_source(dest.model).app]
                if app.name not in warehouses:
                    warehouses[app.name] = connect(app, project)
                rows = warehouses[app.name].stream_model(dest.model, now=now)
                exists = None
                if dest.mode == "enrich" and clients is not None:
                    exists = clients(project.apps[dest.app]).existing
                spool = None
                if spool_dir is not None:
                    spool_path = spool_dir / f"{name}.jsonl"
                    spool = spool_path.open("w", encoding="utf-8")
                try:
                    dplan = diff_destination(project, dest, rows, ledger.stream(name), hasher,
                                             spool=spool, exists=exists)
                finally:
                    if spool is not None:
                        spool.close()
                if spool_dir is not None:
                    dplan.spool = spool_path
                if dest.events:
                    _plan_events(project, dest, dplan, warehouses[app.name], ledger,
                                 spool_dir, resend_unknown)
                failed, sample = ledger.failures(name, limit=ISSUE_SAMPLE_SIZE)
                dplan.failed_last_time = failed
                dplan.failed_samples = [Issue(f.external_id, "", f.reason) for f in sample]
                plans.append(dplan)
        finally:
            for wh in warehouses.values():
                wh.close()
        return Plan(
            config_changes=diff_config(project, fps, lock),
            destinations=tuple(plans),
            config_fingerprint=config_fingerprint(fps),
            ledger_generation=ledger.generation,
            fingerprints=fps,
        )
    finally:
        if own_ledger:
            ledger.close()
