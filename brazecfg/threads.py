"""Background threads and the stop signals: one rule for every thread brazecfg starts."""

from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def leave_signals_to_the_main_thread() -> None:
    """Block SIGINT and SIGTERM in the calling (background) thread. The kernel delivers a
    process signal to any thread that does not block it; Python runs its handler in the main
    thread, but a main thread blocked in a read (the "Apply these changes?" prompt) is only
    woken when the signal lands on it, so a Ctrl-C that landed on a worker was not acted on
    until Enter. Every thread brazecfg itself starts in a command calls this first."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
