"""Scratch directories: the one home for the files brazecfg writes only for the length of a
command (the plan's spools, DuckDB's spill files, private copies of the state).

They hold personal data (a spool line is a user's attributes), so none may outlive its
process, however that process ends:

- a command that ends, fails or is interrupted removes its own (``Scratch.cleanup``);
- an apply abandoned by a second Ctrl-C exits at once (``os._exit``, no cleanup runs), so
  the signal handler calls ``remove_all`` first;
- a process killed outright (``kill -9``, the OOM killer, a lost machine) runs nothing, so
  each directory holds a lock (``flock``) that its process keeps for the directory's life and
  the kernel releases when the process dies, however it dies. The first scratch directory a
  later brazecfg makes sweeps the temporary directory for brazecfg's directories whose lock
  it can take: their process is gone. A directory being made (no lock file yet), one of
  another user, or one whose lock is held is never touched; the lock is on the file, so this
  holds between containers that share ``/tmp`` as well (a process id would not).

Where ``flock`` does not exist (Windows), only the first two apply.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

PREFIX = "brazecfg-"
LOCK = ".brazecfg-scratch.lock"

_live: set[Scratch] = set()
_guard = threading.Lock()
_swept = False


class Scratch:
    """A private directory (mode 0700) under the temporary directory, locked while it lives."""

    def __init__(self, kind: str) -> None:
        sweep_once()
        self.path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-"))
        self._fd: int | None = None
        if fcntl is not None:
            # Locked under another name, then renamed: a sweep only ever sees a held lock.
            making = self.path / f"{LOCK}.new"
            fd = os.open(making, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.replace(making, self.path / LOCK)
            self._fd = fd
        with _guard:
            _live.add(self)

    def cleanup(self) -> None:
        """Remove the directory and everything in it (again: nothing)."""
        with _guard:
            _live.discard(self)
        shutil.rmtree(self.path, ignore_errors=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def remove_all() -> None:
    """Remove every scratch directory of this process now (before ``os._exit``)."""
    with _guard:
        live = list(_live)
    for s in live:
        s.cleanup()


def sweep_once() -> None:
    global _swept
    if not _swept:
        _swept = True
        sweep()


def sweep(root: Path | None = None) -> list[Path]:
    """Remove the scratch directories whose process is gone; the ones removed. Best effort:
    whatever cannot be read or locked is left alone."""
    if fcntl is None:  # pragma: no cover - Windows
        return []
    root = Path(root or tempfile.gettempdir())
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    uid = os.getuid()
    for entry in entries:
        if not entry.name.startswith(PREFIX):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(
                    follow_symlinks=False).st_uid != uid:
                continue
            fd = os.open(Path(entry.path) / LOCK, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:  # no lock file: being made, or not ours
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its process is alive
            os.close(fd)
            continue
        try:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
        finally:
            os.close(fd)
    return removed
