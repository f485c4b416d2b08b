"""Read-only Braze calls made by a process of its own: the opt-out check of a big plan.

brazecfg's plan is bound by one core: the merge holds Python's lock, and every thread that
talks to Braze beside it takes that lock too, for its own work and at every socket read and
write. The 10,859 opt-out checks of a million new users cost the 1M first plan 10 s of its
35 (issue 9). A second process has a lock of its own, on the second core, and the merge's
thread talks to it itself, with no thread of its own in between: it writes a group id and
up to 50 ids to a pipe, and reads the states back when it next looks.

``StatusProcess(settings, workers)`` starts a child (a new interpreter: nothing of this
process is copied, no thread of it forked) that serves ``workers`` pipes, one thread each, with one
BrazeClient of its own (its limiter and retries: the client's). The settings (the API key
among them) go through the pipes, never the command line or the environment. ``start``
sends a call and returns it; ``Call.done()`` and ``Call.result()`` take its answer, as a
Future's would: the states, or the BrazeError the child's client raised. A retry in the
child reaches ``on_retry`` as the client's own would, when the answers are next read.
Everything here runs on the thread that made the StatusProcess. The child ignores Ctrl-C
(the parent stops it) and exits when its pipes close, so it never outlives the plan.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from brazecfg.braze.client import BrazeClient, BrazeSettings, DeliveryUnknown, NotSent
from brazecfg.errors import BrazeError

_ERRORS: dict[str, type[BrazeError]] = {"BrazeError": BrazeError, "NotSent": NotSent,
                                         "DeliveryUnknown": DeliveryUnknown}
# A call with neither an answer nor a retry notice for this long: the child hangs.
ANSWER_SECONDS = 600.0


class Call:
    """One /subscription/status/get made by the child."""

    def __init__(self, pipe: _Pipe) -> None:
        self._pipe = pipe
        self._states: dict[str, str] | None = None
        self._error: BrazeError | None = None

    def done(self) -> bool:
        if self._states is None and self._error is None:
            self._pipe.read(wait=False)
        return self._states is not None or self._error is not None

    def result(self) -> dict[str, str]:
        while not self.done():
            self._pipe.read(wait=True)
        if self._error is not None:
            raise self._error
        assert self._states is not None
        return self._states


class _Pipe:
    """One of the child's threads: its calls answer in the order they were sent."""

    def __init__(self, conn: Connection, owner: StatusProcess) -> None:
        self.conn = conn
        self.owner = owner
        self.calls: deque[Call] = deque()

    def read(self, *, wait: bool) -> None:
        """Take the answers that arrived (``wait``: at least one, or a failure)."""
        try:
            while self.calls and self.conn.poll(ANSWER_SECONDS if wait else 0):
                kind, value = self.conn.recv()
                if kind == "retry":
                    if self.owner.on_retry is not None:
                        self.owner.on_retry(*value)
                    continue
                call = self.calls.popleft()
                if kind == "ok":
                    call._states = value
                else:
                    name, message, status = value
                    call._error = _ERRORS.get(name, BrazeError)(message, status,
                                                                self.owner.app)
                if wait:
                    return
            if wait and self.calls:
                self._fail("stopped answering")
        except (EOFError, OSError):
            self._fail(f"ended (exit code {self.owner.exitcode})")

    def _fail(self, what: str) -> None:
        error = BrazeError(f"app/{self.owner.app}: the process making the opt-out checks {what}"
                           "; nothing was sent. Run the command again", None, self.owner.app)
        while self.calls:
            self.calls.popleft()._error = error


class StatusProcess:
    def __init__(self, settings: BrazeSettings, workers: int,
                 on_retry: Callable[[float, str], None] | None = None) -> None:
        """Raises OSError when the child cannot be started."""
        pairs = [socket.socketpair() for _ in range(max(1, workers))]
        fds = [child.fileno() for _, child in pairs]
        self.app = settings.app
        self.on_retry = on_retry
        # The brazecfg this process runs, first on the child's path, wherever it came from.
        here = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [here, *filter(None, [os.environ.get("PYTHONPATH")])]))
        try:
            # Not multiprocessing: it would import this program's main module in the child.
            # Its output goes nowhere: its failures reach the parent as answers, or as pipes
            # that closed ("ended (exit code N)").
            self._proc = subprocess.Popen(
                [sys.executable, "-c", "import sys; from brazecfg.braze.remote import serve; "
                 "serve(sys.argv[1:])", *map(str, fds)],
                pass_fds=fds, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, close_fds=True, env=env)
        finally:
            for _, child in pairs:
                child.close()
        self._pipes = [_Pipe(Connection(parent.detach()), self) for parent, _ in pairs]
        self._closed = False
        try:
            for pipe in self._pipes:
                pipe.conn.send(settings)  # through the pipe: never argv or the environment
        except OSError:
            self.close()
            raise

    @property
    def exitcode(self) -> int | None:
        """The child's exit code, once it has ended (given a second to, when it closed its
        pipes)."""
        try:
            return self._proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return None

    def start(self, group_id: str, external_ids: list[str]) -> Call:
        """Send the call to the pipe with the fewest calls waiting."""
        pipe = min(self._pipes, key=lambda p: len(p.calls))
        call = Call(pipe)
        pipe.calls.append(call)
        try:
            pipe.conn.send((group_id, external_ids))
        except OSError:
            pipe._fail(f"ended (exit code {self.exitcode})")
        return call

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for p in self._pipes:
            try:
                p.conn.close()
            except OSError:
                pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def serve(fds: list[str]) -> None:
    """The child: one thread per pipe, one client for all; it exits when the pipes close, or
    when its parent is gone (a kill -9 closes the pipes too, but a thread in a call would
    only notice once the call ends)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)  # the parent stops the plan, and then this
    conns = [Connection(int(fd)) for fd in fds]
    parent = os.getppid()
    settings: BrazeSettings = conns[0].recv()
    for c in conns[1:]:
        c.recv()  # the same settings, sent to every pipe
    client = BrazeClient(settings)
    mine = threading.local()  # the pipe of the thread the client retries on
    client.on_retry = lambda seconds, why: mine.conn.send(("retry", (seconds, why)))
    threads = [threading.Thread(target=_answer, args=(client, c, mine), daemon=True)
               for c in conns]
    for t in threads:
        t.start()
    while alive := [t for t in threads if t.is_alive()]:
        alive[0].join(timeout=1.0)
        if os.getppid() != parent:
            os._exit(0)
    client.close()


def _answer(client: BrazeClient, conn: Connection, mine: threading.local) -> None:
    mine.conn = conn
    while True:
        try:
            group_id, ids = conn.recv()
        except (EOFError, OSError):
            return
        reply: tuple[str, Any]
        try:
            reply = ("ok", client.subscription_status(group_id, ids))
        except BrazeError as exc:
            reply = ("error", (type(exc).__name__, str(exc), exc.status))
        except Exception as exc:  # noqa: BLE001 (answered as an error, never a traceback)
            reply = ("error", ("BrazeError", f"app/{client.settings.app}: the opt-out check "
                               f"failed: {type(exc).__name__}", None))
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
