"""Progress and logs (issue 11): a live display in a real terminal (tmux), plain output
without control codes elsewhere, --quiet, --verbose and --log-file, all through the CLI
against the emulator as a real HTTP server."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from brazecfg import redact
from brazecfg.cli.progress import RunLog
from brazecfg.emulator import EmulatorConfig
from brazecfg.emulator.config import ALL_PERMISSIONS
from tests.delivery_project import Generated, make_project
from tests.helpers import emulator_get

ANSI = re.compile(r"\x1b|\r")
NO_OPT_OUTS = {"respect_opt_outs": False}  # no status reads while planning: fewer requests


def _brazecfg(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """brazecfg in a subprocess with pipes (not a terminal), as in CI."""
    full = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "brazecfg", *args], capture_output=True,
                          text=True, env=full, timeout=300)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (str(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


class _Tmux:
    """A private tmux server (its own socket), so no one else's sessions are touched."""

    def __init__(self, tmp: Path) -> None:
        self.socket = f"brazecfg-test-{os.getpid()}-{time.monotonic_ns()}"

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                              text=True, check=True, timeout=30).stdout

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True,
                       timeout=30)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux for a real terminal")
def test_apply_in_a_terminal_shows_total_rate_eta_and_429_waits(tmp_path: Path,
                                                                 start: Any) -> None:
    """The live display of issue 11 in a real terminal (120x30): while sending, the records
    done out of the planned total with a rate and an ETA, and a line for 429 waits and
    retries; at the end, the final count equals the number of records planned (records,
    never requests or group calls: this project has a subscription group too)."""
    gen = make_project(tmp_path, 2000, destination=NO_OPT_OUTS)
    # /users/track at 20 requests per 2 s, 50 ms a request: the client's default limits
    # (3000 per 3 s) run into 429s, which it waits out as the server says.
    emu = start(EmulatorConfig(port=0, latency_ms=50,
                               rate_limits={"/users/track": (20, 2.0)}))
    out, rc = tmp_path / "stdout.txt", tmp_path / "rc.txt"
    # COLUMNS and LINES go: pytest exports 80x24, which rich would believe over the pty.
    command = (f"cd {tmp_path} && env -u COLUMNS -u LINES BRAZE_REST_ENDPOINT={emu.url} "
               f"{sys.executable} -m "
               f"brazecfg apply {gen.root} --auto-approve > {out}; echo $? > {rc}; sleep 600")
    tmux = _Tmux(tmp_path)
    screens: list[str] = []
    try:
        tmux("new-session", "-d", "-s", "apply", "-x", "120", "-y", "30", command)
        deadline = time.monotonic() + 240
        while not rc.exists() or not rc.read_text().strip():
            assert time.monotonic() < deadline, "apply did not finish:\n" + "\n".join(screens[-1:])
            screens.append(tmux("capture-pane", "-p", "-t", "apply"))
            time.sleep(0.2)
        final = tmux("capture-pane", "-p", "-t", "apply")
    finally:
        tmux.kill()
    assert rc.read_text().strip() == "0", final
    events = len(gen.events)
    # While it runs: a total, a rate and an ETA for the records being sent ...
    assert any(re.search(r"sending destination/braze_users .*[\d,]+ of 2,000 records +"
                         r"[\d,]+/s ETA \d:\d\d:\d\d", s) for s in screens), screens[-1]
    # ... and the 429 waits and retries as they happen.
    assert any(re.search(r"waiting \d+\.\d s for Braze's rate limit \(429\), \d+ retr(y|ies) "
                         r"so far", s) for s in screens), "\n---\n".join(screens[-3:])
    # At the end: every planned record and event row counted once, none more.
    assert "2,000 of 2,000 records" in final, final
    assert f"{events:,} of {events:,} event rows" in final, final
    assert emulator_get(emu.url, "users")["total"] == 2000
    assert not ANSI.search(out.read_text()), "stdout is a file: no control codes there"


def _project(tmp_path: Path, n: int = 150) -> Generated:
    return make_project(tmp_path, n, destination=NO_OPT_OUTS)


def test_plain_output_off_a_terminal_has_no_control_codes(tmp_path: Path, start: Any) -> None:
    """Off a terminal (pipes, CI) the progress is plain lines on stderr, with no escape
    sequences or carriage returns, and `plan --format json` keeps stdout pure JSON."""
    gen = _project(tmp_path)
    emu = start(EmulatorConfig(port=0, fault_429_every=3, fault_429_retry_after=0))
    env = {"BRAZE_REST_ENDPOINT": emu.url}
    plan = _brazecfg("plan", str(gen.root), "--format", "json", "--verbose", env=env)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["destinations"][0]["counts"]["create"] == 150
    assert "planning destination/braze_users: 150 of 150 rows read" in plan.stderr
    applied = _brazecfg("apply", str(gen.root), "--auto-approve", "--verbose", env=env)
    assert applied.returncode == 0, applied.stderr
    assert "sending destination/braze_users: 150 of 150 records" in applied.stderr
    assert re.search(r"waiting \d+\.\d s for Braze's rate limit \(429\)", applied.stderr)
    for text in (plan.stdout, plan.stderr, applied.stdout, applied.stderr):
        assert not ANSI.search(text), repr(text[:300])


def test_quiet_prints_only_the_summary(tmp_path: Path, start: Any) -> None:
    """--quiet (before or after the command): the plan's one-line summary and the results,
    no plan details, no progress, no word about waits, although 429s were waited out."""
    gen = _project(tmp_path)
    emu = start(EmulatorConfig(port=0, fault_429_every=3, fault_429_retry_after=0))
    env = {"BRAZE_REST_ENDPOINT": emu.url}
    plan = _brazecfg("plan", str(gen.root), "--quiet", "--no-color", env=env)
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.splitlines() == [
        "Plan: 150 to create, 0 to update, 0 to delete, "
        f"{len(gen.events):,} events to send; about "
        + plan.stdout.split("about ")[1].split("\n")[0]]
    assert plan.stderr == ""
    applied = _brazecfg("--quiet", "apply", str(gen.root), "--auto-approve", "--no-color",
                        env=env)
    assert applied.returncode == 0, applied.stderr
    assert applied.stderr == ""
    lines = applied.stdout.splitlines()
    assert lines[0].startswith("Plan: 150 to create") and lines[1] == "Applied", lines
    assert lines[2].startswith("braze_users: 150 created"), lines
    assert len(lines) == 3, lines
    assert emulator_get(emu.url, "stats")  # the emulator was used
    # The same run without --quiet does speak: the plan in full, and the 429 waits.
    gen.execute("UPDATE users SET score = score + 1")
    loud = _brazecfg("apply", str(gen.root), "--auto-approve", "--no-color", env=env)
    assert loud.returncode == 0, loud.stderr
    assert len(loud.stdout.splitlines()) > 3 and "waiting" in loud.stderr, loud.stderr


def test_quiet_and_verbose_together_are_refused(tmp_path: Path) -> None:
    gen = _project(tmp_path, 3)
    r = _brazecfg("plan", str(gen.root), "--quiet", "--verbose")
    assert r.returncode == 1
    assert "--quiet or --verbose, not both" in r.stderr


def test_log_file_writes_json_lines_without_ids_or_secrets(tmp_path: Path, start: Any) -> None:
    """--log-file (after the command): one JSON object a line with the phases, counts,
    retries, waits and timings; no external id, no value, no API key."""
    gen = _project(tmp_path)
    emu = start(EmulatorConfig(port=0, fault_429_every=3, fault_429_retry_after=0,
                               api_keys={"s3cret-api-key-of-braze": ALL_PERMISSIONS}))
    log = tmp_path / "run.jsonl"
    env = {"BRAZE_REST_ENDPOINT": emu.url, "BRAZE_API_KEY": "s3cret-api-key-of-braze"}
    r = _brazecfg("apply", str(gen.root), "--auto-approve", "--log-file", str(log), env=env)
    assert r.returncode == 0, r.stderr
    text = log.read_text()
    entries = [json.loads(line) for line in text.splitlines()]
    assert all({"ts", "run", "event", "phase"} <= set(e) for e in entries)
    assert len({e["run"] for e in entries}) == 1
    kinds = [e["event"] for e in entries]
    assert kinds[0] == "start" and kinds[-1] == "end"
    phases = [(e["phase"], e["destination"]) for e in entries if e["event"] == "phase_start"]
    assert phases == [("plan", None), ("send", "braze_users")]
    planned = next(e for e in entries if e["event"] == "planned")
    assert planned["destination"] == "braze_users" and planned["records"] == 150
    assert planned["events"] == len(gen.events) and planned["counts"]["create"] == 150
    done = {(e["phase"], e["kind"]): e for e in entries if e["event"] == "done"}
    assert done[("plan", "records")]["done"] == 150
    assert done[("send", "records")]["done"] == done[("send", "records")]["total"] == 150
    assert done[("send", "events")]["done"] == len(gen.events)
    retries = [e for e in entries if e["event"] == "retry"]
    assert retries and all(e["reason"] == "429" and e["wait_seconds"] >= 0 for e in retries)
    assert [e["retries"] for e in retries] == list(range(1, len(retries) + 1))
    end = entries[-1]
    assert end["status"] == "done" and end["exit_code"] == 0
    assert end["records"] == {"braze_users": 150} and end["retries"] == len(retries)
    assert set(end["timings"]) == {"plan", "send"}
    # No personal data and no secret anywhere in the file.
    ids = {u.external_id for u in gen.users}
    strings = [s for e in entries for s in _strings(e)]
    assert not ids & set(strings)
    assert "s3cret-api-key-of-braze" not in text
    assert not any(u.email in text or u.first_name in text for u in gen.users[:20])
    # A second run appends, as another run.
    r = _brazecfg("--log-file", str(log), "plan", str(gen.root), env=env)
    assert r.returncode == 0, r.stderr
    runs = [json.loads(line)["run"] for line in log.read_text().splitlines()]
    assert len(set(runs)) == 2 and runs[: len(entries)] == [entries[0]["run"]] * len(entries)


def test_log_file_in_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    gen = _project(tmp_path, 3)
    r = _brazecfg("plan", str(gen.root), "--log-file", str(tmp_path / "no" / "run.jsonl"))
    assert r.returncode == 1
    assert "cannot write the log file" in r.stderr and "Traceback" not in r.stderr


def test_the_log_scrubs_every_string(tmp_path: Path) -> None:
    """Unit: whatever string reaches the log passes the scrubber (a secret a template read
    from the environment is masked, keys included)."""
    redact.remember("hunter2-password")
    try:
        log = RunLog(tmp_path / "x.jsonl", "plan")
        log.write("note", destination="db hunter2-password", counts={"hunter2-password": 1})
        log.close()
        text = (tmp_path / "x.jsonl").read_text()
        assert "hunter2" not in text and text.count("***") == 2
    finally:
        redact.forget_all()


def test_log_file_with_an_equals_sign_after_the_command(tmp_path: Path) -> None:
    """`--log-file=PATH` after the command is hoisted like the global flags; a plan that
    never talks to Braze logs its phase and its counts."""
    gen = _project(tmp_path, 5)
    log = tmp_path / "plan.jsonl"
    r = _brazecfg("plan", str(gen.root), f"--log-file={log}", "-q",
                  env={"BRAZE_REST_ENDPOINT": "http://127.0.0.1:9"})
    assert r.returncode == 0, r.stderr
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["event"] for e in entries if e["event"].startswith("phase")] == [
        "phase_start", "phase_end"]
    assert next(e for e in entries if e["event"] == "planned")["records"] == 5
