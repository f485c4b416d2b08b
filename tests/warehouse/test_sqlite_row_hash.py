"""SQLite's record hash (engine.sqlite_row_hash): a filter for what a plan reads, so two
different lists of values must never share one, and the same values must always give it."""

from __future__ import annotations

import itertools
import sqlite3

from brazecfg.warehouse.compile import SQLITE_ROW_HASH
from brazecfg.warehouse.engine import sqlite_row_hash

# Values that look alike in some spelling but differ in type, sign, length or position.
SINGLE = [None, 0, 1, -1, 2**31, 2**63 - 1, -(2**63), 0.0, -0.0, 1.0, 1.5, 1e300, "", "0",
          "1", "1.0", "~", "None", "é", "e\u0301", "\ud800", "a\x00b", b"", b"1", b"\x00"]


def test_different_values_never_share_a_hash() -> None:
    lists = [(v,) for v in SINGLE]
    lists += [("a", "b"), ("ab",), ("a,b",), ("a", ""), ("", "a"), ("a", None), (None, "a"),
              (None, None), (), (1, 2), (12,), ("1", 2), (1, "2"), (b"a", "a")]
    lists += list(itertools.product([None, 0, "0", 0.0], repeat=2))
    hashes: dict[bytes, tuple[object, ...]] = {}
    # one of each list (by repr: 0 == 0.0 == -0.0 as keys, but they are different values)
    for values in {repr(v): v for v in lists}.values():
        h = sqlite_row_hash(*values)
        assert len(h) == 8
        assert h not in hashes, f"{values!r} and {hashes[h]!r} share a hash"
        hashes[h] = values


def test_the_hash_depends_on_the_values_not_on_which_objects_hold_them() -> None:
    """marshal's format 3 and later write an object met twice as a reference to the first:
    the same two texts would hash one way as one object and another way as two."""
    one = "".join(["ab", "c"])
    other = "".join(["a", "bc"])
    assert one == other and one is not other
    assert sqlite_row_hash(one, one) == sqlite_row_hash(one, other)
    big = 2**40 + 1
    assert sqlite_row_hash(big, big) == sqlite_row_hash(big, int(str(big)))
    assert sqlite_row_hash("x", 1.5) == sqlite_row_hash("x", 1.5)


def test_sqlite_passes_each_storage_class_as_its_own_value() -> None:
    """Through SQLite itself: the same text as INTEGER, REAL, TEXT and BLOB, and NULL, hash
    apart; equal rows hash alike."""
    db = sqlite3.connect(":memory:")
    db.create_function(SQLITE_ROW_HASH, -1, sqlite_row_hash, deterministic=True)
    rows = db.execute(f"SELECT {SQLITE_ROW_HASH}(v, 'k') FROM (SELECT 1 AS v UNION ALL "
                      "SELECT 1.0 UNION ALL SELECT '1' UNION ALL SELECT CAST('1' AS BLOB) "
                      "UNION ALL SELECT NULL UNION ALL SELECT 1)").fetchall()
    hashes = [bytes(r[0]) for r in rows]
    assert len(set(hashes[:5])) == 5
    assert hashes[5] == hashes[0]
