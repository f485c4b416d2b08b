"""Background threads and the stop signals: one rule for every thread brazecfg starts; the
read-ahead of iterators on threads of their own."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def leave_signals_to_the_main_thread() -> None:
    """Block SIGINT and SIGTERM in the calling (background) thread. The kernel delivers a
    process signal to any thread that does not block it; Python runs its handler in the main
    thread, but a main thread blocked in a read (the "Apply these changes?" prompt) is only
    woken when the signal lands on it, so a Ctrl-C that landed on a worker was not acted on
    until Enter. Every thread brazecfg itself starts in a command calls this first."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)



_END = object()


class _Started(Generic[T]):
    """An iterator made, and its first item taken, on a thread of its own."""

    def __init__(self, make: Callable[[], Iterator[T]], name: str) -> None:
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._it: Iterator[T] | None = None
        self._first: T | object = _END
        self._exc: BaseException | None = None
        self._abandoned = False
        threading.Thread(target=self._run, args=(make,), name=name, daemon=True).start()

    def _run(self, make: Callable[[], Iterator[T]]) -> None:
        leave_signals_to_the_main_thread()
        try:
            it = make()
            first = next(it, _END)
        except BaseException as exc:  # noqa: BLE001 (raised by take, on the reader's thread)
            self._exc = exc
        else:
            with self._lock:
                self._it, self._first = it, first
                abandoned = self._abandoned
            if abandoned:
                try:
                    _close(it)
                except Exception:  # noqa: BLE001, S110 (nobody reads it: the read had stopped)
                    pass
        finally:
            self._done.set()

    def take(self) -> tuple[T | object, Iterator[T]]:
        """Its first item (_END: none; waits for it) and the iterator of the others, to be
        read on the caller's thread."""
        self._done.wait()
        if self._exc is not None:
            raise self._exc
        assert self._it is not None
        return self._first, self._it

    def abandon(self) -> None:
        """Never read: closed now, or by its thread when it has started."""
        with self._lock:
            self._abandoned = True
            it = self._it
        if it is not None:
            _close(it)


def _close(it: Iterator[Any]) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        close()


def read_ahead(makers: Sequence[Callable[[], Iterator[T]]], *,
               name: str = "read-ahead") -> Iterator[T]:
    """The items of the iterators ``makers`` make, one after the other, in order. Each is
    made and its first item taken on a thread of its own while the one before it is read,
    so that what it does before its first item (a database computing a whole sorted result,
    with Python's lock released) overlaps the use of the one before; its other items are
    taken here, on the reader's thread (a thread taking them would wait for Python's lock
    at every row while the reader holds it). One is started ahead at most. An exception is
    raised here when its iterator's turn comes; stopping early closes the one ahead."""
    ahead: _Started[T] | None = _Started(makers[0], f"{name} 1") if makers else None
    current: Iterator[T] | None = None
    try:
        for i in range(len(makers)):
            assert ahead is not None
            first, current = ahead.take()
            ahead = None
            if i + 1 < len(makers):
                ahead = _Started(makers[i + 1], f"{name} {i + 2}")
            if first is not _END:
                yield first  # type: ignore[misc]
            yield from current
    finally:
        if ahead is not None:
            ahead.abandon()
        if current is not None:
            _close(current)  # the one being read, if stopped early (a no-op once exhausted)
