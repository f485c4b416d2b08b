"""`brazecfg run`: schedules against the emulator. The loop runs on an injected clock (hours of
schedule in milliseconds); --once, failures, the lock and SIGTERM go through the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from brazecfg.config.loader import load_project
from brazecfg.emulator import Emulator, EmulatorConfig
from brazecfg.schedule.runner import Job, Runner, applying, run_lock
from brazecfg.state.paths import StatePaths
from tests.helpers import ROOT, cli, copy_example, emulator_get, sql

T0 = datetime(2026, 11, 1, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(port=0)) as emu:
        yield emu


@pytest.fixture
def project(tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example with two destinations on different intervals."""
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", emulator.url)
    monkeypatch.delenv("BRAZE_API_KEY", raising=False)
    monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
    root = copy_example(tmp_path)
    dest = root / "destinations" / "braze_users.yml"
    dest.write_text(dest.read_text().replace("mode: sync ", "schedule: every hour\nmode: sync "))
    (root / "destinations" / "emails.yml").write_text(
        "kind: destination\nname: emails\napp: braze\nmodel: users\nmode: additive\n"
        "schedule: every 15 minutes\nmapping: {external_id: user_id, email: email}\n")
    return root


class FakeClock:
    """Time that moves only when someone sleeps (or a job says it took long)."""

    def __init__(self, start: datetime, stop_at: datetime, stop: threading.Event) -> None:
        self.t, self.stop_at, self.stop = start, stop_at, stop

    def now(self) -> datetime:
        return self.t

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        self.advance(max(seconds, 0.0))

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)
        if self.t >= self.stop_at:
            self.stop.set()


def test_two_destinations_on_their_intervals_never_overlapping(project: Path,
                                                                emulator: Emulator) -> None:
    stop = threading.Event()
    clock = FakeClock(T0, T0 + timedelta(hours=2), stop)
    proj = load_project(project)
    real = applying(proj)
    starts: dict[str, list[datetime]] = {}
    running: list[str] = []
    lines: list[str] = []

    def job(j: Job, now: datetime) -> tuple[bool, str]:
        assert not running, "a run started while another was under way"
        running.append(j.name)
        starts.setdefault(j.name, []).append(now)
        try:
            result = real(j, now)
            if j.name == "destination/emails" and len(starts[j.name]) == 2:
                clock.advance(40 * 60)  # this run takes 40 minutes: slots are not stacked
            return result
        finally:
            running.pop()

    Runner(proj, run_job=job, clock=clock, log=lines.append).loop(stop)
    hourly = starts["destination/braze_users"]
    assert hourly == [T0, T0 + timedelta(hours=1)]
    quarter = starts["destination/emails"]
    gaps = [b - a for a, b in zip(quarter, quarter[1:], strict=False)]
    assert gaps[0] == timedelta(minutes=15)
    assert gaps[1] >= timedelta(minutes=40)  # the slow run was not overlapped nor queued
    assert all(g >= timedelta(minutes=15) for g in gaps)
    assert len(quarter) == 1 + 1 + 1 + (120 - 15 - 40 - 15) // 15  # 0, 15, 55(+15...)
    # The next-run table first, then one line per run, then "stopped".
    assert lines[0].startswith("job") and "destination/emails" in lines[1] + lines[2]
    assert sum(": ok:" in line for line in lines) == len(hourly) + len(quarter)
    assert lines[-1].endswith("stopped")
    got = emulator_get(emulator.url, "users")["users"]
    assert len(got) == 12


def test_run_once_runs_only_what_is_due(project: Path) -> None:
    first = cli("run", str(project), "--once", "--now", T0.isoformat())
    assert first.exit_code == 0, first.output
    assert "destination/braze_users: ok: braze_users 12 created" in first.output
    assert "destination/emails: ok" in first.output
    later = cli("run", str(project), "--once", "--now", (T0 + timedelta(minutes=20)).isoformat())
    assert later.exit_code == 0, later.output
    assert "destination/emails: ok" in later.output
    assert "destination/braze_users: ok" not in later.output
    assert "2026-11-01T01:00:00Z" in later.output  # the table says when braze_users is next
    soon = cli("run", str(project), "--once", "--now", (T0 + timedelta(minutes=25)).isoformat())
    assert soon.exit_code == 0 and "nothing due" in soon.output


def test_a_failing_run_is_reported_retried_next_slot_and_never_stops_the_others(
        project: Path) -> None:
    (project / "apps" / "bad.yml").write_text(
        "kind: app\nname: bad\ntype: braze\noptions:\n  api_key: wrong-key\n"
        "  rest_endpoint: \"{{ env('BRAZE_REST_ENDPOINT') }}\"\n")
    emails = project / "destinations" / "emails.yml"
    emails.write_text(emails.read_text().replace("app: braze", "app: bad"))
    first = cli("run", str(project), "--once", "--now", T0.isoformat())
    assert first.exit_code == 1
    assert "destination/braze_users: ok" in first.output
    assert "destination/emails: FAILED" in first.output and "(tried again then)" in first.output
    assert "wrong-key" not in first.output
    again = cli("run", str(project), "--once", "--now", (T0 + timedelta(minutes=16)).isoformat())
    assert again.exit_code == 1
    assert "FAILED" in again.output.split("destination/emails")[1]  # the table says so
    assert "destination/emails: FAILED" in again.output  # tried on its next slot
    assert "destination/braze_users: ok" not in again.output


def test_a_second_run_never_starts(project: Path) -> None:
    with run_lock(StatePaths.of(load_project(project).settings)):
        daemon = cli("run", str(project))
        assert daemon.exit_code == 1 and "another `brazecfg run`" in daemon.output
        once = cli("run", str(project), "--once")
        assert once.exit_code == 0 and "skipped" in once.output


def test_sigterm_stops_cleanly(project: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "brazecfg", "--no-color", "run", str(project)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        seen: list[str] = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            seen.append(line)
            if "destination/emails: ok" in line:
                break
        assert any("destination/emails: ok" in s for s in seen), "".join(seen)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.rstrip().endswith("stopped")
    assert "Traceback" not in err


def test_a_schedule_croniter_cannot_run_is_a_validate_error(project: Path) -> None:
    emails = project / "destinations" / "emails.yml"
    emails.write_text(emails.read_text().replace("every 15 minutes", "'99 * * * *'"))
    run = cli("validate", str(project))
    assert run.exit_code == 1
    assert "emails.yml:6:" in run.output and "is not a schedule" in run.output


def test_a_run_that_trips_a_guardrail_fails_and_sends_nothing(project: Path,
                                                              emulator: Emulator) -> None:
    assert cli("run", str(project), "--once", "--now", T0.isoformat()).exit_code == 0
    sql(project, "DELETE FROM users WHERE id <= 10")  # 10 of 12: past max_delete_share
    later = cli("run", str(project), "--once", "--now", (T0 + timedelta(hours=1)).isoformat())
    assert later.exit_code == 1
    assert "destination/braze_users: FAILED" in later.output and "guardrail" in later.output
    assert len(emulator_get(emulator.url, "users")["users"]) == 12  # nothing was deleted
