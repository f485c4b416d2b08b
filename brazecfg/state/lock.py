"""An exclusive lock around apply, so two applies never interleave their ledger writes."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from brazecfg.errors import StateError


@contextmanager
def exclusive(path: Path, *, on_wait: Callable[[str], None] | None = None,
              blocking: bool = True) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not blocking:
                raise StateError(
                    f"another brazecfg apply holds {path}; wait for it to finish") from None
            if on_wait:
                on_wait(f"waiting for another brazecfg apply to release {path} ...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
