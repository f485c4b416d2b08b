"""The one merge primitive (unit tests; the CLI tests cover its callers)."""

from __future__ import annotations

import pytest

from brazecfg.errors import StateError, WarehouseError
from brazecfg.plan.merge import HashCursor, merge_join, ordered


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


def test_hash_cursor_reports_skipped_keys_folds_duplicates_and_gives_the_rest() -> None:
    h = b"\x01" * 8
    cursor = HashCursor(iter([("a", h, None), ("b", h, None), ("b", h, None), ("c", h, None),
                              ("d", h, frozenset({"g"})), ("e", h, None)]), what="keys")
    skipped: list[str] = []
    assert cursor.find("b", skipped.append) == (True, None, None)  # a duplicate: always read
    assert cursor.find("bb", skipped.append) == (False, None, frozenset())
    assert cursor.find("d", skipped.append) == (True, h, frozenset({"g"}))
    assert skipped == ["a", "c"]
    assert list(cursor.rest()) == ["e"]


def test_hash_cursor_refuses_an_unordered_key_stream() -> None:
    cursor = HashCursor(iter([("b", None, None), ("a", None, None)]), what="record keys")
    with pytest.raises(WarehouseError, match="record keys out of key order"):
        cursor.find("z", lambda k: None)
