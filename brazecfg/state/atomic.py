"""Atomic file writes: temp file in the same folder, flush, fsync, rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Read once, at import (single-threaded then): os.umask can only be read by setting it.
_UMASK = _read_umask()


def write_atomic(path: Path, data: str, mode: int = 0o666) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a torn
    one. ``mode`` is filtered by the umask, like open() does (mkstemp alone would make 0600)."""
    write_atomic_lines(path, [data], mode, newline=False)


def write_atomic_lines(path: Path, lines: Iterable[str], mode: int = 0o666, *,
                       newline: bool = True) -> int:
    """Stream ``lines`` (each followed by a newline unless ``newline`` is False) to ``path``
    atomically, as write_atomic does; returns how many were written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    n = 0
    try:
        os.fchmod(fd, mode & ~_UMASK)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for line in lines:
                f.write(line + "\n" if newline else line)
                n += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n
