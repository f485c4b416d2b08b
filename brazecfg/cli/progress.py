"""Progress and run logs for long commands: the one home of the live display and --log-file.

The library never sees rich. It calls plain functions with counts: the planner the rows it
has read, apply the phase it begins and the records and event rows done per destination,
the Braze client each retry and how long it waits. ``Reporter`` turns them into

- on a terminal's stderr, a live display (rich.progress): rows read and their rate while
  planning; records done out of the planned total, rate and ETA while sending, and a line
  for 429 waits and retries as they happen;
- elsewhere (CI logs, pipes), plain lines without control codes: one every few seconds in
  a long phase, and at most one every few seconds about waits;
- with --quiet nothing; with --verbose, a line per phase with its timing and counts;
- with --log-file, one JSON object a line per event. Only counts, timings, phase and
  destination names: no external id, no value, and every string through the scrubber.

Counts are records and event rows, never requests: a destination's total is the plan's count
of records, and its final count is what the applier finished (accepted or rejected).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

import typer
from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from brazecfg import redact
from brazecfg.errors import BrazecfgError
from brazecfg.plan.definition import Action, Plan

QUIET, NORMAL, VERBOSE = 0, 1, 2
PLAIN_EVERY = 10.0  # seconds between two plain progress lines (and two lines about waits)
LOG_EVERY = 2.0  # seconds between two progress events in the log file
UNITS = {("plan", "records"): "rows read", ("plan", "events"): "event rows read",
         ("send", "records"): "records", ("send", "events"): "event rows"}


def _clock_text(seconds: float) -> str:
    s = max(0, int(seconds + 0.5))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _secs(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else _clock_text(seconds)


@dataclass
class Count:
    """Rows, records or event rows done in one phase of one destination."""

    phase: str  # plan | send
    destination: str
    kind: str  # records | events
    total: int | None = None  # None: not known (a first read)
    approx: bool = False  # the total is an estimate (the records in the state)
    done: int = 0
    started: float = 0.0
    ended: float | None = None
    logged: float = 0.0

    @property
    def unit(self) -> str:
        return UNITS[(self.phase, self.kind)]

    def seconds(self, now: float) -> float:
        return (self.ended if self.ended is not None else now) - self.started

    def rate(self, now: float) -> float | None:
        s = self.seconds(now)
        return self.done / s if s > 0.05 and self.done else None

    def eta(self, now: float) -> float | None:
        rate = self.rate(now)
        if self.total is None or rate is None or self.ended is not None:
            return None
        return max(0.0, self.total - self.done) / rate

    def amount(self) -> str:
        if self.total is None:
            return f"{self.done:,} {self.unit}"
        return f"{self.done:,} of {'~' if self.approx else ''}{self.total:,} {self.unit}"

    def line(self, now: float) -> str:
        """A plain-text account: ``sending destination/x: 5,250 of 12,000 records (1,020/s,
        about 7 s left)``."""
        verb = "planning" if self.phase == "plan" else "sending"
        rate, eta = self.rate(now), self.eta(now)
        bits = [f"{rate:,.0f}/s" if rate else ""]
        if eta is not None:
            bits.append(f"about {_secs(eta)} left")
        if self.ended is not None:
            bits.append(f"in {_secs(self.seconds(now))}")
        extra = ", ".join(b for b in bits if b)
        return f"{verb} destination/{self.destination}: {self.amount()}" + (
            f" ({extra})" if extra else "")

    def log_fields(self, now: float) -> dict[str, Any]:
        rate = self.rate(now)
        return {"phase": self.phase, "destination": self.destination, "kind": self.kind,
                "done": self.done, "total": self.total, "estimated_total": self.approx,
                "seconds": round(self.seconds(now), 3),
                "rate_per_second": round(rate, 1) if rate else None}


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return redact.scrub(value)
    if isinstance(value, dict):
        return {redact.scrub(str(k)): _scrubbed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v) for v in value]
    return value


class RunLog:
    """--log-file: one JSON object a line, appended (a file can hold many runs, told apart by
    ``run``). Every string is scrubbed of secrets; callers pass counts and names only."""

    def __init__(self, path: Path, command: str) -> None:
        try:
            self._file: TextIO = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise BrazecfgError(f"cannot write the log file {path}: {exc.strerror or exc}; "
                                "give --log-file a path in a folder that exists") from None
        self._lock = threading.Lock()
        self.run = uuid.uuid4().hex[:12]
        self.command = command

    def write(self, event: str, **fields: Any) -> None:
        ts = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        obj = {"ts": ts, "run": self.run, "command": self.command, "event": event, **fields}
        line = json.dumps(_scrubbed(obj), ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


class _CountColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(task.fields["count"].amount())


class _RateColumn(ProgressColumn):
    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()
        self._clock = clock

    def render(self, task: Task) -> Text:
        rate = task.fields["count"].rate(self._clock())
        return Text(f"{rate:,.0f}/s" if rate else "", style="muted")


class _EtaColumn(ProgressColumn):
    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()
        self._clock = clock

    def render(self, task: Task) -> Text:
        count: Count = task.fields["count"]
        now = self._clock()
        if count.ended is not None:
            return Text(f"done in {_clock_text(count.seconds(now))}", style="muted")
        eta = count.eta(now)
        return Text(f"ETA {_clock_text(eta)}" if eta is not None else
                    f"{_clock_text(count.seconds(now))} so far", style="muted")


class _Bars(Progress):
    """rich's Progress with a line under the bars for retries and 429 waits."""

    def __init__(self, status: Callable[[], str], clock: Callable[[], float],
                 console: Console) -> None:
        self._status = status  # before Progress.__init__, which renders once
        super().__init__(TextColumn("{task.description}"), BarColumn(bar_width=24),
                         _CountColumn(), _RateColumn(clock), _EtaColumn(clock),
                         console=console, refresh_per_second=5, redirect_stdout=False,
                         redirect_stderr=True)

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        text = self._status()
        if text:
            yield Text(text, style="warn")


@dataclass
class _Retries:
    count: int = 0  # every retry, 429s included
    throttled: int = 0  # 429s
    waited: float = 0.0  # seconds waited before retries, in all
    last_seconds: float = 0.0
    last_why: str = ""
    until: float = 0.0  # the current wait ends then
    by_phase: dict[str, int] = field(default_factory=dict)


def _reason(why: str) -> str:
    if why == "429":
        return "Braze's rate limit (429)"
    if why.isdigit():
        return f"a retry after Braze answered {why}"
    return f"a retry ({why})" if why else "a retry"


class Reporter:
    """What the long commands report, rendered for a terminal, a log or a file (see the
    module's docstring). Its methods are the plain callbacks the library takes; those the
    Braze client calls (``retry``) may run in worker threads."""

    def __init__(self, command: str, *, console: Console, level: int = NORMAL,
                 live: bool = False, log: RunLog | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.command = command
        self.console = console
        self.level = level
        self.live = live and level > QUIET
        self.log = log
        self._clock = clock
        self._lock = threading.RLock()
        self._started = clock()
        self._phase: tuple[str, str | None] | None = None
        self._phase_started = 0.0
        self._timings: dict[str, float] = {}
        self._counts: dict[tuple[str, str, str], Count] = {}
        self._tasks: dict[tuple[str, str, str], Any] = {}
        self._totals: dict[str, tuple[int, int]] = {}  # destination -> (records, event rows)
        self._planned = False
        self._bars: _Bars | None = None
        self._last_line = self._started
        self._last_wait_line = float("-inf")
        self.retries = _Retries()
        self._closed = False
        if log is not None:
            log.write("start", phase=None)

    # -- phases ---------------------------------------------------------------------------
    def phase(self, name: str, destination: str | None = None) -> None:
        """A phase begins (apply's ``on_phase``): plan, settle, send (per destination)."""
        with self._lock:
            if self._phase == (name, destination):
                return
            self._end_phase()
            self._phase = (name, destination)
            self._phase_started = self._clock()
            if self.log is not None:
                self.log.write("phase_start", phase=name, destination=destination)
            if name == "send" and destination is not None:
                records, events = self._totals.get(destination, (0, 0))
                if self.level >= VERBOSE:
                    self._say(f"sending destination/{destination}: {records:,} records, "
                              f"{events:,} event rows")
                if records or not events:
                    self._count("send", destination, "records", records)
                if events:
                    self._count("send", destination, "events", events)

    def _end_phase(self) -> None:
        if self._phase is None:
            return
        name, destination = self._phase
        now = self._clock()
        seconds = now - self._phase_started
        self._timings[name] = self._timings.get(name, 0.0) + seconds
        counts = [c for (p, d, _), c in self._counts.items()
                  if p == name and (destination is None or d == destination) and c.ended is None]
        for c in counts:
            c.ended = now
            if c.total is None or c.approx:  # the read is over: what was read is the total
                c.total, c.approx = c.done, False
            self._show(c)
            if self.log is not None:
                self.log.write("done", **c.log_fields(now))
            if self.level >= VERBOSE:
                self._say(c.line(now))
        if self._bars is not None:
            self._bars.stop()
            self._bars = None
            self._tasks.clear()
        if self.log is not None:
            self.log.write("phase_end", phase=name, destination=destination,
                           seconds=round(seconds, 3), retries=self.retries.by_phase.get(name, 0))
        self._phase = None

    def planned(self, plan: Plan) -> None:
        """The plan is made: the planning display ends (before the plan is printed or a prompt
        shown) and each destination's totals for sending are known."""
        with self._lock:
            if self._phase is not None and self._phase[0] == "plan":
                self._end_phase()
            if self._planned:
                return
            self._planned = True
            for d in plan.destinations:
                records = sum(d.counts[a.value] for a in Action)
                events = sum(d.events_to_send.values())
                self._totals[d.destination] = (records, events)
                counts = {k: d.counts.get(k, 0) for k in
                          ("create", "update", "enrich", "delete", "unchanged", "kept", "skipped")}
                if self.log is not None:
                    self.log.write("planned", phase="plan", destination=d.destination,
                                   records=records, events=events, counts=counts,
                                   source_rows=d.source_rows, data_points=d.data_points,
                                   requests=d.requests, incremental=d.read_since is not None)
                if self.level >= VERBOSE:
                    self._say(f"planned destination/{d.destination}: {records:,} records to "
                              f"change ({counts['create']:,} create, {counts['update']:,} "
                              f"update, {counts['enrich']:,} enrich, {counts['delete']:,} "
                              f"delete; {counts['unchanged']:,} unchanged), {events:,} event "
                              f"rows to send")

    # -- counts (the library's callbacks) -------------------------------------------------
    def rows_read(self, destination: str, kind: str, n: int, expected: int | None) -> None:
        """The planner's ``on_rows``: rows read so far from the warehouse."""
        with self._lock:
            key = ("plan", destination, kind)
            c = self._counts.get(key) or self._count("plan", destination, kind, expected,
                                                     approx=expected is not None)
            c.done = n
            if c.total is not None and n > c.total:
                c.total, c.approx = None, False  # more than the estimate: no total
            self._tick(c)

    def records_done(self, destination: str, n: int) -> None:
        """The applier's ``progress``: records finished so far (accepted or rejected)."""
        with self._lock:
            c = self._counts.get(("send", destination, "records"))
            if c is None:
                if not n:
                    return  # a destination with only event rows to send
                c = self._count("send", destination, "records", None)
            c.done = n
            self._tick(c)

    def events_done(self, destination: str, n: int) -> None:
        """The applier's ``on_events``: ``n`` more event rows finished."""
        with self._lock:
            c = self._counts.get(("send", destination, "events")) or self._count(
                "send", destination, "events", None)
            c.done += n
            self._tick(c)

    def retry(self, seconds: float, why: str) -> None:
        """The Braze client's ``on_retry``: a retry after waiting ``seconds`` (any thread)."""
        with self._lock:
            r = self.retries
            r.count += 1
            r.throttled += int(why == "429")
            r.waited += seconds
            r.last_seconds, r.last_why = seconds, why
            now = self._clock()
            r.until = max(r.until, now + seconds)
            phase = self._phase[0] if self._phase else "other"
            r.by_phase[phase] = r.by_phase.get(phase, 0) + 1
            if self.log is not None:
                self.log.write("retry", phase=phase,
                               destination=self._phase[1] if self._phase else None,
                               reason=why, wait_seconds=round(seconds, 3), retries=r.count,
                               throttled=r.throttled, waited_seconds=round(r.waited, 3))
            if self._bars is not None:
                self._bars.refresh()
            elif self.level > QUIET and now - self._last_wait_line >= PLAIN_EVERY:
                self._last_wait_line = now
                self._say(self._wait_text(now))

    def say(self, message: str) -> None:
        """A note for the person (waiting for the lock), above the live display; not with
        --quiet."""
        with self._lock:
            if self.level > QUIET:
                self._say(message)

    def warn(self, message: str) -> None:
        """A warning, shown even with --quiet, above the live display."""
        with self._lock:
            self._say(message)

    def end_phase(self) -> None:
        """The current phase is over (the last destination sent): its display ends."""
        with self._lock:
            self._end_phase()

    # -- rendering ------------------------------------------------------------------------
    def _count(self, phase: str, destination: str, kind: str, total: int | None, *,
               approx: bool = False) -> Count:
        c = Count(phase, destination, kind, total, approx, started=self._clock())
        c.logged = c.started
        self._counts[(phase, destination, kind)] = c
        if self.live:
            if self._bars is None:
                self._bars = _Bars(self._status, self._clock, self.console)
                self._bars.start()
            verb = "planning" if phase == "plan" else "sending"
            label = f"{verb} destination/{destination}" if kind == "records" else \
                f"  events of destination/{destination}"
            self._tasks[(phase, destination, kind)] = self._bars.add_task(
                label, total=total, count=c)
        return c

    def _show(self, c: Count) -> None:
        task = self._tasks.get((c.phase, c.destination, c.kind))
        if task is not None and self._bars is not None:
            self._bars.update(task, completed=c.done, total=c.total)

    def _tick(self, c: Count) -> None:
        now = self._clock()
        self._show(c)
        if self.log is not None and now - c.logged >= LOG_EVERY:
            c.logged = now
            self.log.write("progress", **c.log_fields(now))
        if not self.live and self.level > QUIET and now - self._last_line >= PLAIN_EVERY:
            self._last_line = now
            self._say(c.line(now))

    def _wait_text(self, now: float, final: bool = False) -> str:
        r = self.retries
        retries = f"{r.count:,} retr{'y' if r.count == 1 else 'ies'}"
        if now < r.until and not final:
            return f"waiting {r.last_seconds:.1f} s for {_reason(r.last_why)}, {retries} so far"
        return (f"{retries}{'' if final else ' so far'}, {r.throttled:,} after Braze's rate "
                f"limit (429); {_secs(r.waited)} of waits, summed over parallel requests")

    def _status(self) -> str:
        # Called by rich's refresh thread under rich's own locks: never take self._lock here
        # (the main thread holds it while it updates the bars). Reading a few numbers a
        # moment stale is harmless.
        return self._wait_text(self._clock()) if self.retries.count else ""

    def _say(self, text: str) -> None:
        console = self._bars.console if self._bars is not None else self.console
        console.print(text, markup=False, highlight=False)

    # -- the end --------------------------------------------------------------------------
    def close(self, status: str = "done", exit_code: int | None = 0,
              error: str | None = None) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._end_phase()
            now = self._clock()
            r = self.retries
            seconds = now - self._started
            if self.log is not None:
                self.log.write("end", phase=None, status=status, exit_code=exit_code,
                               error=error, seconds=round(seconds, 3),
                               timings={k: round(v, 3) for k, v in self._timings.items()},
                               retries=r.count, throttled=r.throttled,
                               waited_seconds=round(r.waited, 3),
                               records={d: c.done for (p, d, k), c in self._counts.items()
                                        if p == "send" and k == "records"},
                               events={d: c.done for (p, d, k), c in self._counts.items()
                                       if p == "send" and k == "events"})
                self.log.close()
            if self.level >= VERBOSE:
                parts = ", ".join(f"{k} {_secs(v)}" for k, v in self._timings.items())
                self._say(f"{self.command} took {_secs(seconds)}" + (f" ({parts})" if parts
                                                                       else ""))
            if self.level > QUIET and r.count and not self.live:  # live: under the bars
                self._say(self._wait_text(now, final=True))

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.close("done", 0)
            return
        if isinstance(exc, typer.Exit):  # after the summary: exit 1 (rejected records), 2
            self.close("done", exc.exit_code)
        elif isinstance(exc, KeyboardInterrupt):
            self.close("interrupted", getattr(exc, "exit_code", 130))
        else:  # the class only: a message may name a record
            self.close("error", error=type(exc).__name__)


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether a live display can go to ``stream`` (stderr): a terminal that is not dumb."""
    stream = stream or sys.stderr
    try:
        return stream.isatty() and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):
        return False
