"""The spool line of a record change: read back exactly as written, whichever encoder wrote it."""

from __future__ import annotations

import pytest

from brazecfg.plan.definition import Action, RecordChange


@pytest.mark.parametrize("attributes", [
    {"email": "a@example.com", "score": 5, "ltv": 1.5, "gone": None, "tags": ["x", "é"]},
    {"big": 2 ** 70, "negative": -(2 ** 65)},  # past 64 bits: orjson refuses, json writes it
    {"nested": {"k": [1, {"z": "ü"}]}, "flag": True},
])
def test_a_change_reads_back_as_written(attributes: dict[str, object]) -> None:
    change = RecordChange(Action.UPDATE, "42", attributes, {"score": "h1"}, frozenset({"g"}),
                          ("g",), ("h",))
    line = change.to_json() + "\n"
    assert RecordChange.from_json(line) == change
    assert RecordChange.from_json(line.encode()) == change
    assert line.startswith('{"a":"update",')  # the reader tells deletions apart by this


def test_the_digest_line_ignores_field_hashes_and_set_order() -> None:
    a = RecordChange(Action.CREATE, "1", {"b": 1, "a": 2}, {"a": "x"}, frozenset({"g", "h"}))
    b = RecordChange(Action.CREATE, "1", {"a": 2, "b": 1}, {"a": "y"}, frozenset({"h", "g"}))
    assert a.digest_line() == b.digest_line()
    assert a.digest_line() != RecordChange(Action.CREATE, "1", {"a": 3, "b": 1}).digest_line()
