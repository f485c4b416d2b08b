"""The one merge primitive (unit tests; the CLI tests cover its callers)."""

from __future__ import annotations

import pytest

from brazecfg.errors import StateError, WarehouseError
from brazecfg.plan.merge import KeyCursor, merge_join, ordered


def ident(k: str) -> str:
    return k


def test_ordered_passes_sorted_input_and_equal_keys() -> None:
    assert list(ordered(["a", "a", "b", "ä"], ident, what="rows")) == ["a", "a", "b", "ä"]


def test_ordered_refuses_a_smaller_key_from_the_warehouse_or_the_state() -> None:
    with pytest.raises(WarehouseError, match="'Bob' after 'alice'.*collation"):
        list(ordered(["alice", "Bob"], ident, what="model rows"))
    with pytest.raises(StateError, match="state returned records out of key order"):
        list(ordered(["b", "a"], ident, what="records", state=True))


def test_merge_join_pairs_equal_keys_and_leaves_the_rest_alone() -> None:
    pairs = list(merge_join(iter(["1", "10", "3"]), iter(["10", "2", "3", "4"]), ident, ident))
    assert pairs == [("1", None), ("10", "10"), (None, "2"), ("3", "3"), (None, "4")]


def test_key_cursor_reports_skipped_keys_and_the_rest_once() -> None:
    cursor = KeyCursor(iter(["a", "b", "b", "c", "d", "e"]), what="keys")
    skipped: list[str] = []
    assert cursor.contains("b", skipped.append)
    assert not cursor.contains("bb", skipped.append)
    assert cursor.contains("d", skipped.append)
    assert skipped == ["a", "c"]
    assert list(cursor.rest()) == ["e"]


def test_key_cursor_refuses_an_unordered_key_stream() -> None:
    cursor = KeyCursor(iter(["b", "a"]), what="record keys")
    with pytest.raises(WarehouseError, match="record keys out of key order"):
        cursor.contains("z")
