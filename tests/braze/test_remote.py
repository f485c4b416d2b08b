"""The opt-out check's process of its own (braze/remote.py, issue 9): calls made there
answer here in order, its client's errors and retries reach this process as the client's
own would, the API key never reaches its command line, and a child that dies fails its
calls with a clear error. Against a real HTTP server (tests/braze/stub.py)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from brazecfg.braze.client import BrazeSettings
from brazecfg.braze.remote import StartFailed, StatusProcess
from brazecfg.errors import BrazeError
from tests.braze.stub import Answer, Seen, Stub

CANARY = "canary-key-remote-7a6b5c4d"


@pytest.fixture
def stub() -> Iterator[Stub]:
    with Stub() as s:
        yield s


def settings(url: str) -> BrazeSettings:
    return BrazeSettings("prod", url, CANARY, max_retries=2, backoff_base=0.01,
                         backoff_cap=0.05)


def states(ids: list[str]) -> dict[str, str]:
    return {i: "Unsubscribed" if i.endswith("7") else "Subscribed" for i in ids}


def status_answer(seen: Seen) -> Answer:
    ids = parse_qs(urlparse(seen.path).query)["external_id[]"]
    return Answer(201, {"status": states(ids), "message": "success"})


def test_calls_made_by_the_other_process_answer_here_in_order(stub: Stub) -> None:
    stub.respond = status_answer
    proc = StatusProcess(settings(stub.url), workers=3)
    try:
        asked = [[f"{n}-{i}" for i in range(10)] for n in range(12)]
        calls = [proc.start("group-1", ids) for ids in asked]
        assert [c.result() for c in calls] == [states(ids) for ids in asked]
        assert len(stub.seen) == 12
        assert {s.headers["Authorization"] for s in stub.seen} == {f"Bearer {CANARY}"}
        cmdline = Path(f"/proc/{proc._proc.pid}/cmdline").read_bytes()
        assert CANARY.encode() not in cmdline  # the settings went through the pipe
    finally:
        proc.close()
    assert proc._proc.returncode == 0  # it ended on its own when its pipes closed


def test_an_error_of_the_other_process_is_raised_here(stub: Stub) -> None:
    stub.answer(Answer(403, {}))
    proc = StatusProcess(settings(stub.url), workers=1)
    try:
        with pytest.raises(BrazeError, match="lacks the permission for "
                           "/subscription/status/get") as err:
            proc.start("group-1", ["1"]).result()
        assert err.value.status == 403 and CANARY not in str(err.value)
        stub.respond = status_answer  # the process goes on answering
        assert proc.start("group-1", ["17"]).result() == {"17": "Unsubscribed"}
    finally:
        proc.close()


def test_a_retry_of_the_other_process_is_heard_here(stub: Stub) -> None:
    stub.answer(Answer(429, {}, {"Retry-After": "0"}))
    heard: list[str] = []
    proc = StatusProcess(settings(stub.url), workers=1,
                         on_retry=lambda seconds, why: heard.append(why))
    try:
        stub.respond = lambda seen: None if not stub.seen[:-1] else status_answer(seen)
        assert proc.start("group-1", ["7"]).result() == {"7": "Unsubscribed"}
        assert heard == ["429"] and len(stub.seen) == 2
    finally:
        proc.close()


def test_a_process_that_died_fails_its_calls_with_a_clear_error(stub: Stub) -> None:
    stub.answer(Answer(201, {"status": {}}, delay=5))
    proc = StatusProcess(settings(stub.url), workers=1)
    try:
        call = proc.start("group-1", ["1"])
        deadline = time.monotonic() + 10
        while not stub.seen and time.monotonic() < deadline:
            time.sleep(0.05)  # the call is in the child
        assert stub.seen
        proc._proc.kill()
        with pytest.raises(BrazeError, match=r"opt-out checks ended \(exit code -9\); "
                           "the plan stopped and nothing was changed in Braze") as err:
            call.result()
        assert not isinstance(err.value, StartFailed)  # it had started: not redone here
    finally:
        proc.close()


def test_a_process_that_cannot_start_leaves_the_calls_to_this_one(
        stub: Stub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An interpreter that ends before it is ready (a broken install, say): nothing was
    asked of Braze, so the plan's check makes the calls itself, these and every later one."""
    from brazecfg.braze.client import BrazeClient
    from brazecfg.plan.planner import REMOTE_AFTER, _OptOuts

    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\nsleep 0.3\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(broken))
    stub.respond = status_answer
    check = _OptOuts(BrazeClient(settings(stub.url)))
    try:
        assert check.start([("group-1", ["1"])] * REMOTE_AFTER) is None  # the first ones
        pending = check.start([("group-1", ["7", "8"]), ("group-1", ["17"])])
        assert pending is not None  # handed to the process...
        with pytest.raises(StartFailed):
            check._remote._pipes[0].calls[0].result()  # type: ignore[union-attr]
        assert pending.result() == [{"7"}, {"17"}]  # ... and made here when it failed
        assert check.local and check.start([("group-1", ["27"])]) is None
        assert len(stub.seen) == 2
    finally:
        check.close()
