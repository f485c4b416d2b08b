"""Field hashes are what the ledger compares: pinned, so a faster hasher can never change one
(a changed hash would resend every user of an existing project)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brazecfg.state.hashing import _ENCODE, Hasher, canonical

KEY = b"0123456789abcdef-pinned-test-key"
# Computed with the hasher as it was before per-field hashing (commit c05bf96).
PINNED: list[tuple[str, Any, str]] = [
    ('email', 'ada@example.com', '930a1b4043c6b0ce'),
    ('first_name', 'Zoë', '82fdad880d58bf7a'),
    ('last_name', 'quote"back\\slash\n', '6792854a1ae394c6'),
    ('purchase_count', 3, '8e6b6f27a4b35706'),
    ('purchase_count', 0, 'd7a884fc2ef91d8b'),
    ('lifetime_value', 447.72, 'ede2b31852c52ed5'),
    ('lifetime_value', 1e-07, '378985ceaf125b78'),
    ('lifetime_value', 12345678901234567, '8c3ede4473791d0e'),
    ('flag', True, 'f1068bb57fdce780'),
    ('flag', False, '1b3cc687294ccc85'),
    ('gone', None, '4047bdcf3de0f7ec'),
    ('tags', ['a', 'b'], 'dc1281329de37153'),
    ('facebook', {'likes': ['x'], 'id': '1001'}, '788799b6997c469a'),
    ('emoji', '😀\u2028', 'fab2118abad05da1'),
    ('big', 2.5e+300, '8948f421921d8bc8'),
    ('ctrl', '\x00\x1f\x7f', 'f63608b34a6932e6'),
]


@pytest.mark.parametrize(("name", "value", "expected"), PINNED)
def test_field_hashes_are_pinned(name: str, value: Any, expected: str) -> None:
    hasher = Hasher(KEY)
    assert hasher.field(name, value) == expected
    assert hasher.for_field(name)(value) == expected
    assert hasher.for_field(name)(value) == expected  # the remembered hash, the second time


def test_the_key_check_value_is_pinned() -> None:
    assert Hasher(KEY).check_value() == "7b4b8a287f446d69"


def test_equal_values_of_different_types_keep_their_own_hashes() -> None:
    field = Hasher(KEY).for_field("n")
    one, true, float_one, text_one = field(1), field(True), field(1.0), field("1")
    assert len({one, true, float_one, text_one}) == 4
    assert (field(1), field(True), field(1.0), field("1")) == (one, true, float_one, text_one)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=8)


@given(json_values)
def test_canonical_is_the_json_encoder_spelling(value: Any) -> None:
    assert canonical(value) == _ENCODE(value)
