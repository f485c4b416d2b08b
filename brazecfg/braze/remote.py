"""Read-only Braze calls made by a process of its own: the opt-out check of a big plan.

brazecfg's plan is bound by one core: the merge holds Python's lock, and every thread that
talks to Braze beside it takes that lock too, for its own work and at every socket read and
write. The 10,859 opt-out checks of a million new users cost the 1M first plan 10 s of its
35 (issue 9). A second process has a lock of its own, on the second core, and the merge's
thread talks to it itself, with no thread of its own in between: it writes a group id and
up to 50 ids to a pipe, and reads the states back when it next looks.

``StatusProcess(settings, workers)`` starts a child (the same executable with this
process's ``sys.path``, isolated from the environment's Python settings and the current
directory; nothing of this process is copied, no thread forked) that serves ``workers``
pipes, one thread each, with one BrazeClient of its own: its limiter and its retries. The
settings (the API key among them) go through the pipes, never the command line or the
environment. ``start`` sends a call and returns it; ``Call.done()`` and ``Call.result()``
take its answer, as a Future's would: the states, or the error the child's client raised,
as the same BrazeError class (a bug in the child: a RuntimeError, reported as one). Every
read takes what arrived on any pipe, retry notices included (handed to ``on_retry`` as the
client's own would be), and waits as long as the child lives: its client's own timeouts and
retries bound a call, as they did on threads.

A child that ends before it said it was ready raises StartFailed from its calls: the caller
makes them itself (planner._OptOuts). Everything here runs on the thread that made the
StatusProcess. The child runs in a session of its own (a Ctrl-C at the terminal reaches
only the plan, which then stops it), ignores SIGINT and SIGTERM, and exits when its pipes
close or its parent is gone.
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
from multiprocessing.connection import wait as wait_readable
from typing import Any

from brazecfg.braze.client import BrazeClient, BrazeSettings, DeliveryUnknown, NotSent
from brazecfg.errors import BrazeError

_ERRORS: dict[str, type[BrazeError]] = {"BrazeError": BrazeError, "NotSent": NotSent,
                                         "DeliveryUnknown": DeliveryUnknown}
POLL_SECONDS = 1.0  # while waiting: how often to look whether the child still lives
PER_PIPE = 32  # calls waiting on one pipe at most: the next send first takes an answer


class StartFailed(BrazeError):
    """The child ended before it was ready (it could not import or start): nothing it was
    asked was sent; the calls can be made elsewhere."""


class Call:
    """One /subscription/status/get made by the child."""

    def __init__(self, owner: StatusProcess) -> None:
        self._owner = owner
        self._states: dict[str, str] | None = None
        self._error: BaseException | None = None

    @property
    def answered(self) -> bool:
        return self._states is not None or self._error is not None

    def done(self) -> bool:
        if not self.answered:
            self._owner.read(wait=False)
        return self.answered

    def result(self) -> dict[str, str]:
        while not self.answered:
            self._owner.read(wait=True)
        if self._error is not None:
            raise self._error
        assert self._states is not None
        return self._states


class _Pipe:
    """One of the child's threads: its calls answer in the order they were sent."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.calls: deque[Call] = deque()


class StatusProcess:
    def __init__(self, settings: BrazeSettings, workers: int,
                 on_retry: Callable[[float, str], None] | None = None) -> None:
        """Raises OSError when the child cannot be started."""
        if not sys.executable or os.name != "posix":  # (pipes passed as descriptors)
            raise OSError("no Python executable to start, or not on POSIX")
        self.app = settings.app
        self.on_retry = on_retry
        self._closed = False
        self._ever_ready = False
        pairs = [socket.socketpair() for _ in range(max(1, workers))]
        fds = [child.fileno() for _, child in pairs]
        # -I: no PYTHON* variables, no user site, not the current directory first (a
        # json.py there would shadow the real one); this process's sys.path instead, so the
        # child imports what this process imported (paths are not secrets).
        code = (f"import sys; sys.path[:] = {sys.path!r}; "
                "from brazecfg.braze.remote import serve; serve(sys.argv[1:])")
        try:
            try:
                # Not multiprocessing: it would import this program's main module in the
                # child. Its output goes nowhere: its failures reach the parent as answers,
                # or as pipes that closed.
                self._proc = subprocess.Popen(
                    [sys.executable, "-I", "-c", code, *map(str, fds)], pass_fds=fds,
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
            finally:
                for _, child in pairs:
                    child.close()
            self._pipes = [_Pipe(Connection(parent.detach())) for parent, _ in pairs]
            pairs = []
            for pipe in self._pipes:
                pipe.conn.send(settings)  # through the pipe: never argv or the environment
        except BaseException:
            for parent, _ in pairs:
                parent.close()
            if hasattr(self, "_proc"):
                self.close(kill=True)
            raise

    def start(self, group_id: str, external_ids: list[str]) -> Call:
        """Send the call to the pipe with the fewest calls waiting."""
        pipe = min(self._pipes, key=lambda p: len(p.calls))
        while len(pipe.calls) >= PER_PIPE:
            self.read(wait=True)  # never block on a full pipe while its answers wait
        call = Call(self)
        pipe.calls.append(call)
        try:
            pipe.conn.send((group_id, external_ids))
        except OSError:
            self._fail(pipe)
        return call

    def read(self, *, wait: bool) -> None:
        """Take the answers that arrived on any pipe; ``wait``: at least one message (an
        answer, a retry notice), or the end of the child."""
        busy = [p for p in self._pipes if p.calls]
        while busy:
            readable = wait_readable([p.conn for p in busy], POLL_SECONDS if wait else 0)
            ready = [p for p in busy if p.conn in readable]
            if not ready:
                if not wait:
                    return
                if self._proc.poll() is not None:  # ended, its pipes not yet seen closed
                    for pipe in busy:
                        self._fail(pipe)
                    return
                continue
            notices: list[tuple[float, str]] = []
            for pipe in ready:
                try:
                    kind, value = pipe.conn.recv()
                except (EOFError, OSError):
                    self._fail(pipe)
                    continue
                if kind == "ready":
                    self._ever_ready = True  # its first message, before any answer
                elif kind == "retry":
                    notices.append(value)
                else:
                    call = pipe.calls.popleft()
                    if kind == "ok":
                        call._states = value
                    elif kind == "bug":
                        call._error = RuntimeError(f"the opt-out check's process failed: "
                                                   f"{value}")
                    else:
                        name, message, status = value
                        call._error = _ERRORS.get(name, BrazeError)(message, status, self.app)
            if self.on_retry is not None:
                for seconds, why in notices:
                    self.on_retry(seconds, why)  # outside the reads: its errors are its own
            return

    def _fail(self, pipe: _Pipe) -> None:
        code = self._exitcode()
        if not self._ever_ready:
            error: BrazeError = StartFailed(
                f"app/{self.app}: the process for the opt-out checks could not start (exit "
                f"code {code})", None, self.app)
        else:
            error = BrazeError(
                f"app/{self.app}: the process making the opt-out checks ended (exit code "
                f"{code}); the plan stopped and nothing was changed in Braze. Run the "
                "command again", None, self.app)
        while pipe.calls:
            pipe.calls.popleft()._error = error

    def _exitcode(self) -> int | None:
        try:
            return self._proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return None

    def close(self, *, kill: bool = False) -> None:
        """Stop the child: at once when calls are still waiting (they are read-only, and
        nobody will read them) or ``kill``, else once its threads see the pipes close."""
        if self._closed:
            return
        self._closed = True
        pipes = getattr(self, "_pipes", [])
        if kill or any(p.calls for p in pipes):
            self._proc.kill()
        for p in pipes:
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
    try:
        conn.send(("ready", None))
    except OSError:
        return
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
        except Exception as exc:  # noqa: BLE001 (a bug: reported by the parent as one)
            reply = ("bug", f"{type(exc).__name__}: {str(exc)[:200]}")
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
