"""A yes/no question on the terminal that a Ctrl-C always answers.

Python runs a signal's handler between bytecodes of the main thread. A SIGINT that lands
after the prompt is written but before the blocking read begins (a loaded machine, a user
quick on the keys) does not interrupt that read, since it came first: ``input()`` then sat
until Enter with the Ctrl-C unhandled ("Apply these changes to Braze? [y/N]:^C", then
nothing). Here the wait is a ``select`` with a short timeout, so a pending handler runs
within a tenth of a second, and the line is read only once it is there.
"""

from __future__ import annotations

import select
import sys

WAKE_EVERY = 0.1  # seconds between chances for a pending signal handler to run


def _wait_for_a_line() -> None:
    try:
        while not select.select([sys.stdin], [], [], WAKE_EVERY)[0]:
            pass
    except (OSError, ValueError, TypeError):  # no select on this stream (Windows)
        return


def yes_or_no(question: str) -> bool:
    """``question [y/N]: `` until the answer is y, yes, n, no or empty (no). Ctrl-C raises
    KeyboardInterrupt (or what the SIGINT handler raises); end of input raises EOFError."""
    while True:
        sys.stdout.write(f"{question} [y/N]: ")
        sys.stdout.flush()
        _wait_for_a_line()
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        answer = line.strip().lower()
        if answer in ("y", "yes"):
            return True
        if answer in ("", "n", "no"):
            return False
        sys.stdout.write("Error: invalid input\n")
