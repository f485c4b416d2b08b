"""The state's lock: a lease row in the backend itself, so two checkouts (two laptops, two CI
runners) sharing one state can never both write to it.

The lease records a lock id, its owner (user, host, pid, command, start time) and when it
expires. A heartbeat thread renews it every third of its TTL; a holder killed with -9 stops
renewing and its lease expires after the TTL. Taking the lease bumps a fencing generation,
and every write checks, inside its own transaction, that the lease is still this process's
(ledger.py ``_fence``): a holder whose lease expired or was force-unlocked
(`brazecfg state unlock LOCK_ID`) gets a clear error at its next write instead of writing.

Waiting works like Terraform's ``-lock-timeout``: the default 0 fails at once, naming the
owner and the age of the lock; a timeout waits that long, saying once who holds it.
Clocks of the machines sharing a state must agree to well within the TTL.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

from brazecfg.errors import StateError
from brazecfg.state.ledger import Ledger, now_ms
from brazecfg.threads import leave_signals_to_the_main_thread


def owner(command: str) -> dict[str, object]:
    """Who is taking the lease, as shown to whoever waits for it."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {"user": user, "host": socket.gethostname(), "pid": os.getpid(),
            "command": command,
            "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def command_line() -> str:
    """The brazecfg command being run, without options' values (they may be paths or URLs)."""
    words = [a for a in sys.argv[1:] if not a.startswith("-")][:2]
    return "brazecfg " + " ".join(words) if words else "brazecfg"


def parse_duration(text: str) -> float:
    """'0', '30s', '5m', '1h' (or a bare number of seconds) -> seconds."""
    t = text.strip().lower()
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if t.endswith(suffix) and t[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(t[: -len(suffix)]) * units[suffix]
    if t.replace(".", "", 1).isdigit():
        return float(t)
    raise StateError(f"--lock-timeout takes a duration such as 0, 30s, 5m or 1h, not {text!r}")


class _Heartbeat(threading.Thread):
    def __init__(self, ledger: Ledger, ttl: float) -> None:
        super().__init__(name="brazecfg-lease", daemon=True)
        self.ledger, self.ttl = ledger, ttl
        self.stopped = threading.Event()

    def run(self) -> None:
        leave_signals_to_the_main_thread()  # Ctrl-C at the prompt must reach the main thread
        while not self.stopped.wait(self.ttl / 3):
            try:
                if not self.ledger.renew(self.ttl):
                    return  # lost: the next write fails with a clear message
            except Exception:  # noqa: BLE001 - a blip: try again; expiry stops writes anyway
                continue


@contextmanager
def lease(ledger: Ledger, command: str, *, timeout: float = 0.0,
          on_wait: Callable[[str], None] | None = None) -> Iterator[Ledger]:
    """Hold the state's lease for the block (writable ledgers only), renewing it."""
    ttl = ledger.backend.lock_ttl
    deadline = time.monotonic() + max(0.0, timeout)
    told = False
    while True:
        held = ledger.try_acquire(owner(command), ttl)
        if held is None:
            break
        who = held.describe(now_ms())
        if time.monotonic() >= deadline:
            waited = f" after waiting {timeout:g}s" if timeout > 0 else ""
            raise StateError(
                f"the state ({ledger.describe()}) is locked by {who}{waited}. Wait for it to "
                "finish, pass --lock-timeout (e.g. 5m) to wait, or, if that process is gone "
                f"and you cannot wait for the lock to expire, `brazecfg state unlock "
                f"{held.lock_id}`")
        if not told and on_wait is not None:
            on_wait(f"waiting for the state lock held by {who} ...")
            told = True
        time.sleep(min(1.0, max(0.05, deadline - time.monotonic()), ttl / 4))
    beat = _Heartbeat(ledger, ttl)
    beat.start()
    try:
        yield ledger
    finally:
        beat.stopped.set()
        beat.join(timeout=5)
        try:
            ledger.release()
        except Exception:  # noqa: BLE001 - it expires after its TTL anyway
            pass
