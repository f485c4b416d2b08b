"""make_plan: (config, warehouse data, ledger) -> Plan. Writes nothing (DESIGN.md invariant 1).

The only side effects are reads: the lockfile, the ledger (opened read-only; a missing one is
empty), the warehouse, and in enrich mode Braze's read-only export endpoint. Apply passes a
spool file so the record changes it will send are exactly the ones this plan counted.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from brazecfg.braze.client import BrazeClient
from brazecfg.errors import StateError
from brazecfg.model.graph import fingerprints as resource_fingerprints
from brazecfg.model.resources import App, Destination, Project
from brazecfg.plan.config_diff import config_fingerprint, diff_config
from brazecfg.plan.definition import ISSUE_SAMPLE_SIZE, DestinationPlan, Issue, Plan
from brazecfg.plan.diff import ExistsCheck, diff_destination
from brazecfg.plan.events import diff_events
from brazecfg.plan.intents import with_intents
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


WATERMARK_OVERLAP = timedelta(minutes=5)  # clock skew between here and the warehouse
RELATIVE_OPS = frozenset({"within", "not_within"})


def read_since(project: Project, dest: Destination, ledger: Ledger, fingerprint: str,
               full_refresh: bool) -> tuple[datetime | None, str]:
    """When to read only records changed since the last run, and if not, why not.

    Incremental reads need: a previous confirmed run with the same config (a new property
    must be computed for everyone), ``updated_at`` on every source the model reads, and no
    relative date in its filters or rules (time moves records in and out of "within 30 days"
    without any row changing)."""
    if full_refresh:
        return None, "full refresh requested"
    mark = ledger.watermark(dest.name)
    props = project.model_properties(dest.model)
    sources = {project.primary_source(dest.model).name, *(p.source for p in props)}
    if any(project.sources[s].updated_at is None for s in sources):
        return None, ""
    if mark is None:
        return None, "first run"
    if mark.get("fingerprint") != fingerprint:
        return None, "the destination's config changed since the last run"
    if any(f.op in RELATIVE_OPS for p in props for f in p.filters) or any(
            r.op in RELATIVE_OPS for g in project.model_groups(dest.model) for r in g.rules):
        return None, "relative dates (within ...) need a full read"
    return datetime.fromisoformat(mark["since"]), ""


def _plan_destination(project: Project, dest: Destination, warehouse: Warehouse,
                      ledger: Ledger, hasher: Hasher, *, now: datetime, fps: dict[str, str],
                      spool_dir: Path | None, exists: ExistsCheck | None, full_refresh: bool,
                      resend_unknown: bool) -> DestinationPlan:
    started = datetime.now(timezone.utc)
    since, why_full = read_since(project, dest, ledger, fps[dest.ref], full_refresh)
    rows = warehouse.stream_model(dest.model, now=now, changed_since=since)
    keys = warehouse.stream_keys(dest.model) if since is not None else None
    spool = None
    spool_path = spool_dir / f"{dest.name}.jsonl" if spool_dir is not None else None
    if spool_path is not None:
        spool = spool_path.open("w", encoding="utf-8")
    try:
        ledger_rows = with_intents(ledger.stream(dest.name), ledger.stream_intents(dest.name))
        dplan = diff_destination(project, dest, rows, ledger_rows, hasher,
                                 spool=spool, exists=exists, keys=keys)
    finally:
        if spool is not None:
            spool.close()
    dplan.spool = spool_path
    dplan.read_since = since.isoformat() if since else None
    dplan.full_read_reason = why_full
    dplan.next_watermark = {"since": (started - WATERMARK_OVERLAP).isoformat(),
                            "fingerprint": fps[dest.ref]}
    if dest.events:
        _plan_events(project, dest, dplan, warehouse, ledger, spool_dir, resend_unknown)
    failed, sample = ledger.failures(dest.name, limit=ISSUE_SAMPLE_SIZE)
    dplan.failed_last_time = failed
    dplan.failed_samples = [Issue(f.external_id, "", f.reason) for f in sample]
    return dplan


def make_plan(project: Project, *, now: datetime | None = None,
              clients: ClientFactory | None = None, spool_dir: Path | None = None,
              ledger: Ledger | None = None, hasher: Hasher | None = None,
              destinations: list[str] | None = None, resend_unknown: bool = False,
              full_refresh: bool = False) -> Plan:
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
                exists = None
                if dest.mode == "enrich" and clients is not None:
                    exists = clients(project.apps[dest.app]).existing
                plans.append(_plan_destination(
                    project, dest, warehouses[app.name], ledger, hasher, now=now, fps=fps,
                    spool_dir=spool_dir, exists=exists, full_refresh=full_refresh,
                    resend_unknown=resend_unknown))
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
