"""Rows counted as the planner reads them: the planner's one hook for a progress display.

The display itself lives in the CLI (cli/progress.py); the planner only calls a plain
function with counts, never with a row's contents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

RowsRead = Callable[[str, str, int, int | None], None]
"""(destination, "records" or "events", rows read so far, rows expected or None)."""

EVERY = 1000  # rows between two reports: cheap enough for a million rows


def reporter(on_rows: RowsRead | None, destination: str, kind: str,
             expected: int | None = None) -> Callable[[int], None] | None:
    """``on_rows`` bound to one destination and kind of row (None when nobody listens)."""
    if on_rows is None:
        return None
    return lambda n: on_rows(destination, kind, n, expected)


def counted(rows: Iterable[T], report: Callable[[int], None] | None,
            every: int = EVERY) -> Iterator[T]:
    """``rows`` unchanged, reporting how many were read: 0 before the first (the query may
    take a while), every ``every`` rows, and the total once they are all read."""
    if report is None:
        yield from rows
        return
    report(0)
    n = 0
    for row in rows:
        yield row
        n += 1
        if n % every == 0:
            report(n)
    report(n)


class Tally:
    """How many rows of a destination's records left the warehouse, over every read of a
    plan (the rows, the keys and hashes, the reads by key): plan JSON ``rows_read``."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, rows: Iterable[T]) -> Iterator[T]:
        for row in rows:
            self.n += 1
            yield row
