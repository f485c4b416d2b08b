"""The one merge primitive: every ordered stream brazecfg walks goes through here.

The plan is a sorted merge join of streams that must share one order: the key as text, in
byte order (UTF-8 bytes = code points = Python's ``str`` order). Model rows, the record-hash
read, event rows and every stream read back from the state all pass
through :func:`ordered`, which refuses a key smaller than the one before it. A stream that is
out of order (a collation that is not binary, a state backend that sorts differently) would
otherwise make the merge see a live user as gone and plan its deletion, or take an event
already sent for a new one. Stopping the plan is the only safe answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from brazecfg.errors import StateError, WarehouseError

T = TypeVar("T")
L = TypeVar("L")
R = TypeVar("R")


def ordered(items: Iterable[T], key: Callable[[T], str], *, what: str,
            state: bool = False) -> Iterator[T]:
    """``items`` unchanged, checked to be in non-decreasing byte order of ``key``.

    Equal keys pass (callers report duplicates in their own words); a smaller key raises.
    ``what`` names the stream in the error; ``state`` says whether it came from the state
    (a StateError) or from a warehouse (a WarehouseError)."""
    previous: str | None = None
    for item in items:
        k = key(item)
        if previous is not None and k < previous:
            if state:
                raise StateError(
                    f"the state returned {what} out of key order ({k!r} after {previous!r}); "
                    "its backend must sort keys by bytes. Nothing was planned.")
            raise WarehouseError(
                f"the warehouse returned {what} out of key order ({k!r} after {previous!r}); "
                "its collation must compare bytes. Nothing was planned.")
        previous = k
        yield item


def merge_join(left: Iterator[L], right: Iterator[R], lkey: Callable[[L], str],
               rkey: Callable[[R], str]) -> Iterator[tuple[L | None, R | None]]:
    """Walk two streams sorted by key together: each pair shares a key, or one side is None.

    Both inputs must already be :func:`ordered` (the check is not repeated here) and unique
    per key on the right side; a key repeated on the left pairs with the right item once,
    then stands alone (the caller sees it as a duplicate)."""
    a = next(left, None)
    b = next(right, None)
    ka = "" if a is None else lkey(a)  # each key computed once, when its item is read
    kb = "" if b is None else rkey(b)
    while a is not None and b is not None:
        if ka < kb:
            yield a, None
            a = next(left, None)
            if a is not None:
                ka = lkey(a)
        elif kb < ka:
            yield None, b
            b = next(right, None)
            if b is not None:
                kb = rkey(b)
        else:
            yield a, b
            a, b = next(left, None), next(right, None)
            if a is not None:
                ka = lkey(a)
            if b is not None:
                kb = rkey(b)
    while a is not None:
        yield a, None
        a = next(left, None)
    while b is not None:
        yield None, b
        b = next(right, None)


class HashCursor:
    """Lookups of (key, record hash) in an ordered stream of them, for non-decreasing keys,
    in one pass (the keys+hash read of plans that compare record hashes).

    Items are (key, hash, groups). A key repeated in the stream (duplicate primary keys)
    looks up with hash None: which row wins is settled by the full read by key, so such a
    record is always read."""

    def __init__(self, pairs: Iterable[tuple[str, bytes | None, frozenset[str] | None]], *,
                 what: str) -> None:
        self._pairs = ordered(pairs, lambda p: p[0], what=what)
        self._current = next(self._pairs, None)
        self._last_query: str | None = None
        self.seen = 0 if self._current is None else 1

    def find(self, key: str, skipped: Callable[[str], None]
             ) -> tuple[bool, bytes | None, frozenset[str] | None]:
        """Whether ``key`` is in the stream, its hash and groups; keys passed over go to
        ``skipped``."""
        if self._last_query is not None and key < self._last_query:
            raise AssertionError("HashCursor queried out of order")
        self._last_query = key
        while self._current is not None and self._current[0] < key:
            skipped(self._advance()[0])
        if self._current is not None and self._current[0] == key:
            _, h, groups = self._advance()
            return True, h, groups
        return False, None, frozenset()

    def _advance(self) -> tuple[str, bytes | None, frozenset[str] | None]:
        """The current item, duplicates folded into it (hash None); moves past them."""
        assert self._current is not None
        key, h, groups = self._current
        self._current = next(self._pairs, None)
        while self._current is not None and self._current[0] == key:
            h = None
            self._current = next(self._pairs, None)
        if self._current is not None:
            self.seen += 1
        return key, h, groups

    def rest(self) -> Iterator[str]:
        """The keys after the last one queried, still order-checked."""
        while self._current is not None:
            yield self._advance()[0]
