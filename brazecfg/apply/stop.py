"""Stopping an apply cleanly on SIGINT or SIGTERM.

The CLI's signal handlers call ``StopRequest.request``; the applier checks it before each
request it would start. Requests already in flight finish and are committed, batches not
started stay as they were (nothing of them was marked), and the apply then raises
``Interrupted``, which the CLI turns into exit 130 (SIGINT) or 143 (SIGTERM). Before any
request can start (planning, the prompt) there is nothing to finish, so the handler raises
at once.
"""

from __future__ import annotations

import signal
import threading


class Interrupted(KeyboardInterrupt):
    """The apply stopped on a signal. A KeyboardInterrupt, so that code cleaning up on
    BaseException treats SIGTERM exactly as it treats Ctrl-C."""

    def __init__(self, signum: int = signal.SIGINT, *, clean: bool = True) -> None:
        super().__init__(signum)
        self.signum = signum
        self.clean = clean  # True: requests in flight were finished and committed

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"


class StopRequest:
    """Set from a signal handler (main thread), read by the applier (main thread)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int | None = None
        self.sending = False  # True while requests may be in flight: finish them first

    def request(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise Interrupted if a stop was requested (between destinations, before sending)."""
        if self.signum is not None:
            raise Interrupted(self.signum)
