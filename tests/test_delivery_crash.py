"""Delivery under crashes and signals, with brazecfg in a real subprocess: kill -9 at many
points, SIGINT and SIGTERM mid-apply, and a crash between a confirmed create and its ledger
commit. The emulator runs in this process (a real HTTP server on loopback) with latency, so
requests are in flight when the signal lands; what Braze holds is read from the emulator."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from brazecfg.state.ledger import Ledger
from tests.delivery_project import RECENT, Generated, make_project
from tests.helpers import ROOT, Run, cli
from tests.test_delivery import (
    assert_braze_holds_the_warehouse,
    assert_ledger_agrees_with_braze,
    event_rows,
    ledger_events,
    plan,
    profiles,
)

FAST = {"concurrency": 4, "settle_after_seconds": 0}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRAZE_API_KEY", raising=False)
    monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)


@pytest.fixture
def emulators(start: Any) -> Any:
    """The shared ``start`` fixture (tests/conftest.py), under this file's name."""
    return start


def spawn(gen: Generated, emu: Emulator, *extra: str) -> subprocess.Popen[str]:
    short_lease(gen)
    env = {k: v for k, v in os.environ.items() if k not in ("BRAZE_API_KEY", "BRAZECFG_HASH_KEY")}
    env.update(BRAZE_REST_ENDPOINT=emu.url, NO_COLOR="1", PYTHONPATH=str(ROOT),
               TMPDIR=str(scratch_dir(gen)))
    return subprocess.Popen(
        [sys.executable, "-m", "brazecfg", "--no-color", "apply", str(gen.root),
         "--auto-approve", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def scratch_dir(gen: Generated) -> Path:
    """The subprocess's temporary directory: its own, so a test can see what it leaves."""
    path = gen.root.parent / "tmp"
    path.mkdir(exist_ok=True)
    return path


def wait_for(condition: Any, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"apply ended (exit {proc.returncode}) before the point:\n"
                                 f"{out}\n{err}")
        assert time.monotonic() < deadline, "the point was never reached"
        time.sleep(0.002)


def events_answered(emu: Emulator) -> int:
    """Event requests the emulator answered (each logged just before its answer leaves)."""
    return sum(1 for e in emu.store.requests("/users/track") if b'"events"' in e.body)


def parsed_bodies(emu: Emulator) -> list[dict[str, Any]]:
    """/users/track bodies the emulator received; a body cut off by the kill is skipped."""
    out = []
    for e in emu.store.requests("/users/track"):
        try:
            out.append(json.loads(e.body))
        except ValueError:
            continue
    return out


def answered(emu: Emulator) -> int:
    return len(emu.store.requests())


def settle_down(emu: Emulator) -> None:
    """Let the emulator finish requests still in flight when the client died."""
    n = -1
    while n != answered(emu):
        n = answered(emu)
        time.sleep(0.4)


def apply(gen: Generated, *extra: str) -> Run:
    """The apply after a crash: a killed apply's lease is still in the state, so this one
    waits for it to expire (a 2 s TTL here, see short_lease) instead of failing at once."""
    short_lease(gen)
    return cli("apply", str(gen.root), "--auto-approve", "--lock-timeout", "10s", *extra)


def short_lease(gen: Generated) -> None:
    """A 2 s lease, so the lock of a process killed with -9 expires within the test."""
    (gen.root / "brazecfg.yml").write_text("name: delivery\nstate: {lock_ttl: 2}\n")


# -- SIGINT and SIGTERM ------------------------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_apply_stops_cleanly(tmp_path: Path, emulators: Any,
                                          signum: signal.Signals) -> None:
    """Ctrl-C and CI's SIGTERM: no new request starts, those in flight finish and are
    committed, nothing is left "sending", exit 130 or 143 in one line; the next apply sends
    the rest, each event row exactly once."""
    gen = make_project(tmp_path, 600, braze_options=FAST, event_month=RECENT)
    emu = emulators(EmulatorConfig(port=0, latency_ms=150))
    proc = spawn(gen, emu)
    # Attribute chunks and group calls come first: the signal lands among events.
    wait_for(lambda: events_answered(emu) >= 1, proc)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, (out, err)
    assert f"interrupted ({signum.name})" in err, err
    assert "unexpected error" not in out + err and "Traceback" not in out + err
    assert len(err.strip().splitlines()) <= 2  # the notice and the one-line message

    held = profiles(emu)
    states = ledger_events(gen)
    count = event_rows(held)
    assert count and max(count.values()) == 1
    assert set(states.values()) == {"sent"}  # nothing left sending, unknown or released
    assert set(states) == set(count)  # the ledger says sent exactly what Braze has
    assert len(count) < len(gen.events)  # it did stop part way
    assert_ledger_agrees_with_braze(gen, held)

    sent_before = len(emu.store.requests("/users/track"))
    out2 = apply(gen)
    assert out2.exit_code == 0, out2.output
    held = profiles(emu)
    assert event_rows(held) == Counter(e.id for e in gen.events)  # each row exactly once
    assert_braze_holds_the_warehouse(gen, held)
    assert len(emu.store.requests("/users/track")) > sent_before
    assert "No changes." in plan(gen).output


# -- kill -9 at many points ----------------------------------------------------------------

@pytest.mark.parametrize("point", [2, 6, 10, 13, 16, 19, 22])
def test_kill_9_at_any_point_then_settle_sends_each_event_once(
        tmp_path: Path, emulators: Any, point: int) -> None:
    """kill -9 after ``point`` answered requests (attribute chunks, group calls, events),
    then `apply --settle-unknown`: rows that never left are sent, rows Braze has are marked
    sent, each event reaches Braze exactly once; only rows Braze's counts cannot settle stay
    unknown, and they are reported."""
    gen = make_project(tmp_path, 600, braze_options=FAST, event_month=RECENT)
    emu = emulators(EmulatorConfig(port=0, latency_ms=40))
    proc = spawn(gen, emu)
    wait_for(lambda: answered(emu) >= point, proc)
    proc.kill()
    proc.communicate(timeout=10)  # reaps it and closes its pipes
    settle_down(emu)

    # Only what left is marked: rows in flight reached the emulator. (A kill between a
    # worker's mark and its send can leave one batch marked that never left; settling
    # sends those.) Rows marked when queued would be several batches here.
    received = {int(e["properties"]["row"]) for b in parsed_bodies(emu)
                for e in b.get("events", [])}
    Ledger(gen.root / ".brazecfg" / "ledger.sqlite", writable=True).close()  # as apply would
    marked = {r for r, s in ledger_events(gen).items() if s in ("sending", "unknown")}
    assert len(marked - received) <= 75, "rows marked in flight that never left"

    out = apply(gen, "--settle-unknown")
    held = profiles(emu)
    count = event_rows(held)
    states = ledger_events(gen)
    unknown = {r for r, s in states.items() if s in ("sending", "unknown")}
    assert max(count.values()) == 1, "an event reached Braze twice"
    assert set(count) | unknown == {e.id for e in gen.events}  # nothing lost silently
    assert {r for r, s in states.items() if s == "sent"} == set(count) - unknown
    if unknown:
        assert out.exit_code == 1 and "stay unknown" in out.output, out.output
    else:
        assert out.exit_code == 0, out.output
        assert "No changes." in plan(gen).output
    assert_braze_holds_the_warehouse(gen, held)
    assert_ledger_agrees_with_braze(gen, held)


# -- what a killed process leaves --------------------------------------------------------------

def test_a_killed_apply_leaves_no_personal_data_behind(tmp_path: Path, emulators: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 runs no cleanup, so the killed apply's spool (its users' attributes) stays in
    the temporary directory; the next brazecfg that makes a scratch directory removes it,
    and never one whose process is alive."""
    from brazecfg.scratch import Scratch

    gen = make_project(tmp_path, 150, events=False, braze_options=FAST)
    emu = emulators(EmulatorConfig(port=0, latency_ms=1500))
    proc = spawn(gen, emu)
    wait_for(lambda: intents(gen) > 0, proc)  # planned and spooled: sending now
    proc.kill()
    proc.communicate(timeout=10)
    left = list(scratch_dir(gen).glob("brazecfg-spool-*"))
    assert len(left) == 1, left
    assert "@example.com" in (left[0] / "braze_users.jsonl").read_text()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_dir(gen)))
    live = Scratch("spool")  # another brazecfg, alive, in the same directory
    making = scratch_dir(gen) / "brazecfg-spool-beingmade"  # no lock file yet
    making.mkdir()
    try:
        emu.config.latency_ms = 0
        env = {k: v for k, v in os.environ.items()
               if k not in ("BRAZE_API_KEY", "BRAZECFG_HASH_KEY")}
        env.update(BRAZE_REST_ENDPOINT=emu.url, NO_COLOR="1", PYTHONPATH=str(ROOT),
                   TMPDIR=str(scratch_dir(gen)))
        done = subprocess.run(
            [sys.executable, "-m", "brazecfg", "--no-color", "apply", str(gen.root),
             "--auto-approve", "--lock-timeout", "10s"],
            env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert not left[0].exists()
        assert live.path.is_dir() and making.is_dir()
        assert sorted(scratch_dir(gen).iterdir()) == sorted([live.path, making])
    finally:
        live.cleanup()
    assert not live.path.exists()


# -- a crash between a confirmed create and its commit ---------------------------------------

def intents(gen: Generated) -> int:
    db = gen.root / ".brazecfg" / "ledger.sqlite"
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT count(*) FROM intents").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def test_a_crash_after_creates_reached_braze_never_orphans_them(tmp_path: Path,
                                                                emulators: Any) -> None:
    """Braze created the users, the process died before the ledger commit, and the users
    left the warehouse before the next run: sync mode must still delete them."""
    gen = make_project(tmp_path, 150, events=False, braze_options=FAST)
    emu = emulators(EmulatorConfig(port=0, latency_ms=1500))
    proc = spawn(gen, emu)
    wait_for(lambda: intents(gen) > 0, proc)  # recorded right before the creates leave
    time.sleep(0.3)  # the requests are at the emulator, sleeping out its latency
    proc.kill()
    proc.communicate(timeout=10)  # reaps it and closes its pipes
    emu.config.latency_ms = 0
    time.sleep(1.5)  # the emulator processes what it received, answering a dead socket
    settle_down(emu)
    created = set(profiles(emu))
    assert created, "no create reached Braze; the test proves nothing"
    with sqlite3.connect(gen.root / ".brazecfg" / "ledger.sqlite") as con:
        assert con.execute("SELECT count(*) FROM records").fetchone()[0] == 0

    gone = sorted(created, key=int)[:20]
    gen.execute(f"DELETE FROM users WHERE id IN ({', '.join(gone)})")
    gen.users = [u for u in gen.users if u.external_id not in gone]
    text = plan(gen).output
    assert "- 20 to delete" in text, text
    out = apply(gen)
    assert out.exit_code == 0, out.output
    held = profiles(emu)
    assert not set(gone) & set(held)  # no orphan
    assert_braze_holds_the_warehouse(gen, held)
    assert intents(gen) == 0
    assert "No changes." in plan(gen).output


def test_a_second_signal_abandons_requests_in_flight_honestly(tmp_path: Path,
                                                              emulators: Any) -> None:
    """Impatient Ctrl-C twice: exit now; rows in flight stay "delivery unknown" (never
    "sent" unconfirmed, never released), and settling then sends each event exactly once."""
    gen = make_project(tmp_path, 600, braze_options=FAST, event_month=RECENT)
    emu = emulators(EmulatorConfig(port=0, latency_ms=400))
    proc = spawn(gen, emu)
    wait_for(lambda: events_answered(emu) >= 1, proc)  # more in flight, each slow
    proc.send_signal(signal.SIGINT)
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    assert "abandoned" in err and "Traceback" not in out + err
    # it exited at once, without the cleanup a normal exit runs: the spools (users'
    # attributes) were removed first all the same
    assert not list(scratch_dir(gen).iterdir())
    emu.config.latency_ms = 0
    time.sleep(0.5)
    settle_down(emu)
    journal = gen.root / ".brazecfg" / "ledger.sqlite-journal"
    if journal.exists() and journal.stat().st_size > 0:
        # Exited mid-write: a read-only open (plan) reads the last committed state from a
        # private copy and writes nothing; apply's writable open rolls the journal back.
        ledger = gen.root / ".brazecfg" / "ledger.sqlite"
        before = ledger.read_bytes()
        text = cli("plan", str(gen.root))
        assert text.exit_code == 0 and "Traceback" not in text.output, text.output
        assert ledger.read_bytes() == before and journal.exists()
        Ledger(gen.root / ".brazecfg" / "ledger.sqlite", writable=True).close()
    states = ledger_events(gen)
    count = event_rows(profiles(emu))
    assert {r for r, s in states.items() if s == "sent"} <= set(count)
    in_flight = {r for r, s in states.items() if s == "sending"}
    assert in_flight, "nothing was in flight; the test proves nothing"

    result = apply(gen, "--settle-unknown")
    assert result.exit_code == 0, result.output
    held = profiles(emu)
    assert event_rows(held) == Counter(e.id for e in gen.events)
    assert_braze_holds_the_warehouse(gen, held)


def _at_the_prompt(argv: list[str], env: dict[str, str], keys: list[bytes],
                   question: bytes = b"[y/N]:") -> tuple[int, str]:
    """brazecfg ``argv`` on a terminal (a pty): each time ``question`` shows, type the next
    of ``keys``; then read until the terminal closes. Its exit code and the screen's text."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: brazecfg on a terminal
        os.execve(sys.executable, [sys.executable, "-m", "brazecfg", "--no-color", *argv], env)
    seen = b""

    def read(until: float) -> bytes | None:
        """What the terminal shows next, b"" at the child's end, None when nothing came by
        ``until`` (never a blocking read: a lost keystroke must fail the test, not hang it)."""
        ready, _, _ = select.select([fd], [], [], max(0.0, until - time.monotonic()))
        if not ready:
            return None
        try:
            return os.read(fd, 4096)
        except OSError:  # the child ended
            return b""

    ended = False
    try:
        for key in keys:
            deadline = time.monotonic() + 30
            asked = seen.count(question) + 1
            while seen.count(question) < asked:
                chunk = read(deadline)
                assert chunk, seen.decode(errors="replace")  # ended or silent before asking
                seen += chunk
            os.write(fd, key)
        while (chunk := read(time.monotonic() + 10)) != b"":
            assert chunk is not None, ("no answer in 10 s to the keys typed: " +
                                       seen.decode(errors="replace"))
            seen += chunk
        ended = True  # the terminal closed: the child is exiting
    finally:
        if not ended:  # a failed assertion: never leave the child waiting at its prompt
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace"))
    return os.waitstatus_to_exitcode(status), text


def _terminal_env(emu: Emulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BRAZE_API_KEY", "BRAZECFG_HASH_KEY")}
    env.update(BRAZE_REST_ENDPOINT=emu.url, NO_COLOR="1", PYTHONPATH=str(ROOT))
    return env


def test_ctrl_c_at_the_prompt_cancels_in_one_line(tmp_path: Path, emulators: Any) -> None:
    """At "Apply these changes?" Ctrl-C is a cancellation, not an unexpected error. It is
    typed as soon as the question shows: a SIGINT that landed before the prompt's read began
    (twice in full test runs on a loaded machine) left input() blocked until Enter, the
    Ctrl-C unhandled; the prompt now waits in select() with a timeout."""
    gen = make_project(tmp_path, 5, events=False)
    emu = emulators(EmulatorConfig(port=0))
    code, text = _at_the_prompt(["apply", str(gen.root)], _terminal_env(emu), [b"\x03"])
    assert code == 130, text
    assert "interrupted (SIGINT)" in text and "unexpected error" not in text
    # nothing was sent: only the plan's read-only lookups reached Braze
    assert {r.path for r in emu.store.requests()} <= {"/subscription/status/get",
                                                       "/users/export/ids"}


def test_the_prompt_applies_on_yes_asks_again_on_nonsense_and_cancels_on_no(
        tmp_path: Path, emulators: Any) -> None:
    """The prompt reads a line: "maybe" asks again, "y" applies, "n" (or Enter) cancels and
    sends nothing; `state rm` asks the same way."""
    gen = make_project(tmp_path, 5, events=False)
    emu = emulators(EmulatorConfig(port=0))
    env = _terminal_env(emu)
    code, text = _at_the_prompt(["apply", str(gen.root)], env, [b"n\r"])
    assert code == 1 and "apply cancelled; nothing was sent" in text, text
    assert not profiles(emu)
    code, text = _at_the_prompt(["apply", str(gen.root)], env, [b"maybe\r", b"y\r"])
    assert code == 0, text
    assert "Error: invalid input" in text and text.count("Apply these changes") == 2, text
    assert len(profiles(emu)) == 5
    code, text = _at_the_prompt(["state", "rm", "destination/braze_users", "-p", str(gen.root)],
                                env, [b"\r"])
    assert code == 1 and "cancelled; the state is unchanged" in text, text
    code, text = _at_the_prompt(["state", "rm", "destination/braze_users", "-p", str(gen.root)],
                                env, [b"yes\r"])
    assert code == 0 and "Removed destination/braze_users" in text, text
