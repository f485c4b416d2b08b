"""threads.read_ahead: the items of several iterators in order, each started (made, first item
taken) on a thread of its own while the one before is read, the rest taken on the reader's
thread; errors raised in turn, and an early stop closes what was started ahead."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from brazecfg.threads import read_ahead


class Part:
    """An iterator of ``items`` that records where it was made, where each item was taken,
    and whether it was closed."""

    def __init__(self, items: list[int], *, fail_at: int | None = None,
                 delay: float = 0.0) -> None:
        self.items, self.fail_at, self.delay = items, fail_at, delay
        self.made_on: str | None = None
        self.taken_on: list[str] = []
        self.closed = threading.Event()
        self.started = threading.Event()

    def make(self) -> Iterator[int]:
        self.made_on = threading.current_thread().name
        return self._gen()

    def _gen(self) -> Iterator[int]:
        try:
            self.started.set()
            time.sleep(self.delay)
            for i, item in enumerate(self.items):
                if i == self.fail_at:
                    raise ValueError(f"part failed at {item}")
                self.taken_on.append(threading.current_thread().name)
                yield item
        finally:
            self.closed.set()


def makers(parts: list[Part]) -> list[Callable[[], Iterator[int]]]:
    return [p.make for p in parts]


def test_the_items_come_in_order_the_first_of_each_taken_ahead() -> None:
    parts = [Part([1, 2, 3]), Part([]), Part([4]), Part([5, 6])]
    assert list(read_ahead(makers(parts), name="t")) == [1, 2, 3, 4, 5, 6]
    me = threading.current_thread().name
    for i, p in enumerate(parts):
        assert p.made_on == f"t {i + 1}", p.made_on
        assert p.closed.is_set()
        if p.items:
            assert p.taken_on[0] == f"t {i + 1}"  # its first item, on its own thread
            assert p.taken_on[1:] == [me] * (len(p.items) - 1)  # the rest, here


def test_the_next_part_starts_while_this_one_is_read() -> None:
    slow = Part([2], delay=0.3)
    parts = [Part([1]), slow]
    it = read_ahead(makers(parts))
    assert next(it) == 1
    assert slow.started.wait(5), "the next part was not started while the first was read"
    assert list(it) == [2]


def test_no_more_than_one_part_runs_ahead() -> None:
    parts = [Part([1, 2]), Part([3]), Part([4])]
    it = read_ahead(makers(parts))
    assert next(it) == 1
    assert parts[1].started.wait(5)
    time.sleep(0.1)
    assert not parts[2].started.is_set(), "a second part ahead was started"
    assert list(it) == [2, 3, 4]


def test_an_error_is_raised_in_its_turn_after_the_items_before_it() -> None:
    parts = [Part([1, 2]), Part([3, 4, 5], fail_at=1), Part([6])]
    got: list[int] = []
    with pytest.raises(ValueError, match="part failed at 4"):
        got.extend(read_ahead(makers(parts)))
    assert got == [1, 2, 3]
    assert parts[1].closed.is_set()


def test_an_error_making_a_part_is_raised_in_its_turn() -> None:
    def broken() -> Iterator[int]:
        raise RuntimeError("cannot connect")

    got: list[int] = []
    with pytest.raises(RuntimeError, match="cannot connect"):
        got.extend(read_ahead([Part([1]).make, broken]))
    assert got == [1]


def test_stopping_early_closes_the_part_started_ahead() -> None:
    ahead = Part([3, 4], delay=0.2)  # still before its first item when the reader stops
    parts = [Part([1, 2]), ahead, Part([5])]
    it = read_ahead(makers(parts))
    assert next(it) == 1
    it.close()
    assert parts[0].closed.is_set()
    assert ahead.closed.wait(5), "the part started ahead was never closed"
    assert len(ahead.taken_on) <= 1  # its first item at most, taken ahead, never read on
    assert parts[2].made_on is None


def test_nothing_to_read() -> None:
    assert list(read_ahead([])) == []


def test_an_error_taking_the_first_item_ahead_is_raised_in_its_turn() -> None:
    parts = [Part([1, 2]), Part([3], fail_at=0), Part([4])]
    got: list[int] = []
    with pytest.raises(ValueError, match="part failed at 3"):
        got.extend(read_ahead(makers(parts)))
    assert got == [1, 2]
    assert parts[1].closed.is_set()
    assert parts[2].made_on is None  # nothing after the failed part is started


def test_stopping_after_the_part_ahead_took_its_first_item_closes_it() -> None:
    ahead = Part([3, 4])
    parts = [Part([1, 2]), ahead]
    it = read_ahead(makers(parts))
    assert next(it) == 1
    deadline = time.monotonic() + 5
    while not ahead.taken_on and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ahead.taken_on, "the part ahead never took its first item"
    it.close()
    assert ahead.closed.wait(5), "the part ahead was not closed when the read stopped"
    assert parts[0].closed.is_set()
    assert len(ahead.taken_on) == 1
