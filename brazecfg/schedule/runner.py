"""``brazecfg run``: apply a project's destinations on their schedules, in one process.

- **Jobs.** A destination with its own ``schedule`` is one job (``destination/NAME``); a source
  with a ``schedule`` is a job that applies every destination whose model reads that source
  and has no schedule of its own (``source/NAME``). Destinations with neither never run here.
- **One at a time.** Jobs run one after another in this process, and the process holds
  ``run.lock`` in the state folder, so a job never overlaps itself (nor another job, nor a
  second ``brazecfg run``). Slots missed while a run went on are not queued: the next slot
  after the run's end is taken, and the log says how late it was.
- **Remembered in the state.** Each job's last start and outcome are kept in the state's meta
  (``schedule:JOB``), so ``run --once`` from cron or CI, on any runner sharing the state, knows
  what is due. A job that never ran is due at once.
- **Failures.** A failing run (an error, or records Braze rejected) is logged and recorded;
  it is tried again on its next slot, and never stops the other jobs.
- **Stopping.** SIGTERM or SIGINT stops the loop: a run under way finishes (what Braze
  confirmed is committed chunk by chunk anyway), then the process exits 0.
- **Time** comes from a ``Clock``, so tests run hours of schedule in milliseconds.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol

from brazecfg.errors import BrazecfgError
from brazecfg.model.resources import Project
from brazecfg.schedule.spec import Schedule, parse_schedule
from brazecfg.state.ledger import Ledger
from brazecfg.state.paths import StatePaths


@dataclass(frozen=True)
class Job:
    name: str  # destination/NAME or source/NAME: where the schedule was declared
    schedule: Schedule
    destinations: tuple[str, ...]


@dataclass(frozen=True)
class LastRun:
    started: datetime
    ok: bool
    message: str


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        """Wait ``seconds``, or less when ``stop`` is set."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        stop.wait(max(0.0, seconds))


Log = Callable[[str], None]
# Runs one job at ``now`` and returns its summary; raises BrazecfgError when it failed.
RunJob = Callable[[Job, datetime], tuple[bool, str]]


def jobs_for(project: Project) -> list[Job]:
    jobs: list[Job] = []
    own = {n for n, d in project.destinations.items() if d.schedule}
    for name in sorted(own):
        d = project.destinations[name]
        assert d.schedule is not None
        jobs.append(Job(d.ref, parse_schedule(d.schedule), (name,)))
    for sname, src in sorted(project.sources.items()):
        if not src.schedule:
            continue
        dests = tuple(n for n, d in sorted(project.destinations.items())
                      if n not in own and _reads(project, d.model, sname))
        if dests:
            jobs.append(Job(src.ref, parse_schedule(src.schedule), dests))
    return jobs


def _reads(project: Project, model: str, source: str) -> bool:
    if project.sources[source].model != model:
        return False
    return source == project.primary_source(model).name or any(
        p.source == source for p in project.model_properties(model))


def _stamp(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class StateNotes:
    """Each job's last run, kept in the state's meta so every runner sharing it agrees."""

    def __init__(self, paths: StatePaths) -> None:
        self.paths = paths

    def read(self, job: Job) -> LastRun | None:
        if not self.paths.ledger.exists():
            return None
        with Ledger(self.paths.ledger, writable=False) as ledger:
            raw = ledger.meta(f"schedule:{job.name}")
        if raw is None:
            return None
        doc = json.loads(raw)
        return LastRun(datetime.fromisoformat(doc["started"]), doc["ok"], doc.get("message", ""))

    def write(self, job: Job, last: LastRun) -> None:
        with Ledger(self.paths.ledger, writable=True) as ledger:
            ledger.set_meta(f"schedule:{job.name}", json.dumps(
                {"started": last.started.isoformat(), "ok": last.ok, "message": last.message},
                sort_keys=True))


class Runner:
    def __init__(self, project: Project, *, run_job: RunJob, clock: Clock | None = None,
                 log: Log = print, notes: StateNotes | None = None) -> None:
        self.project = project
        self.paths = StatePaths.of(project.settings)
        self.jobs = jobs_for(project)
        self.run_job = run_job
        self.clock = clock or SystemClock()
        self.log = log
        self.notes = notes or StateNotes(self.paths)
        self.next: dict[str, datetime] = {}
        self.failures = 0

    def _next_due(self, job: Job, now: datetime) -> datetime:
        last = self.notes.read(job)
        return job.schedule.next_after(last.started if last else None, now)

    def table(self, now: datetime) -> None:
        """The next-run table, logged at start."""
        if not self.jobs:
            self.log("no schedules: declare schedule: on a destination or a source "
                     "(\"every 15 minutes\", \"@hourly\", \"0 3 * * *\")")
            return
        self.log(f"{'job':<32} {'schedule':<18} {'last run':<24} {'next run':<20} destinations")
        for job in self.jobs:
            last = self.notes.read(job)
            if job.name not in self.next:
                self.next[job.name] = self._next_due(job, now)
            nxt = self.next[job.name]
            was = "never" if last is None else \
                f"{_stamp(last.started)} {'ok' if last.ok else 'FAILED'}"
            when = "now" if nxt <= now else _stamp(nxt)
            self.log(f"{job.name:<32} {job.schedule.text:<18} {was:<24} {when:<20} "
                     f"{', '.join(job.destinations)}")

    def run_one(self, job: Job) -> None:
        started = self.clock.now()
        slot = self.next.get(job.name, started)
        t0 = time.monotonic()
        try:
            ok, message = self.run_job(job, started)
        except BrazecfgError as exc:
            ok, message = False, str(exc)
        except Exception as exc:  # a bug; reported, and the other jobs go on
            ok, message = False, f"unexpected error ({type(exc).__name__}); run `brazecfg " \
                                 "--debug apply` to see it"
        took = time.monotonic() - t0
        if not ok:
            self.failures += 1
        self.notes.write(job, LastRun(started, ok, message))
        end = self.clock.now()
        nxt = job.schedule.following(started, end)
        self.next[job.name] = nxt
        late = started - slot
        late_text = f", {int(late.total_seconds())}s late" if late > timedelta(seconds=60) else ""
        self.log(f"{_stamp(started)} {job.name}: {'ok' if ok else 'FAILED'}: {message} "
                 f"({took:.1f}s{late_text}); next {_stamp(nxt)}"
                 + ("" if ok else " (tried again then)"))

    def run_due(self, stop: threading.Event | None = None) -> int:
        """Every job due now, one after another. Returns how many ran."""
        ran = 0
        for job in self.jobs:
            if stop is not None and stop.is_set():
                break
            now = self.clock.now()
            if job.name not in self.next:
                self.next[job.name] = self._next_due(job, now)
            if self.next[job.name] <= now:
                self.run_one(job)
                ran += 1
        return ran

    def loop(self, stop: threading.Event) -> None:
        self.table(self.clock.now())
        if not self.jobs:
            return
        while not stop.is_set():
            self.run_due(stop)
            if stop.is_set():
                break
            wake = min(self.next.values())
            self.clock.sleep((wake - self.clock.now()).total_seconds(), stop)
        self.log(f"{_stamp(self.clock.now())} stopped")


class RunLocked(BrazecfgError):
    """Another ``brazecfg run`` of this project is under way."""


@contextmanager
def run_lock(paths: StatePaths) -> Iterator[None]:
    """Held for the whole of ``brazecfg run`` (or ``run --once``): a second one never starts,
    so no job overlaps itself, even across processes."""
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    path = paths.state_dir / "run.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"another `brazecfg run` of this project holds {path}; nothing "
                            "was started (runs never overlap)") from None
        yield
    finally:
        os.close(fd)


def applying(project: Project) -> RunJob:
    """The job that matters: apply the job's destinations, auto-approved, and summarise."""
    from brazecfg.apply.run import apply_project

    def run(job: Job, now: datetime) -> tuple[bool, str]:
        outcome = apply_project(project, confirm=lambda plan: True,
                                targets=list(job.destinations))
        if not outcome.applied:
            return True, "no changes"
        parts, ok = [], True
        for r in outcome.results:
            bits = [f"{n} {what}" for n, what in (
                (r.created, "created"), (r.updated, "updated"), (r.enriched, "enriched"),
                (r.deleted, "deleted"), (r.events_sent, "events sent")) if n]
            if r.failed or r.events_failed or r.events_unknown:
                ok = False
                bits += [f"{n} {what}" for n, what in (
                    (r.failed, "rejected by Braze"), (r.events_failed, "events rejected"),
                    (r.events_unknown, "events delivery unknown")) if n]
            parts.append(f"{r.destination} " + (", ".join(bits) or "no changes"))
        return ok, "; ".join(parts)

    return run
