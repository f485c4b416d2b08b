"""values.converter (normalise + check_field compiled once per field) against the per-value
functions it replaces in the plan: same value, same type, same problem, on random input."""

from __future__ import annotations

import re
import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brazecfg.braze.standard_fields import STANDARD_FIELDS
from brazecfg.plan import values
from brazecfg.plan.values import ValueProblem, check_field, converter, normalise

TYPES = ["string", "integer", "float", "boolean", "date", "datetime", "email", "phone", "url",
         "string_array", "no_such_type"]
FIELDS: list[str | None] = [None, *sorted(STANDARD_FIELDS)]


def outcome(fn: Any, raw: Any) -> tuple[str, str]:
    """What a check gives, spelled so that 10 and 10.0, or 1 and True, differ."""
    try:
        value = fn(raw)
    except ValueProblem as problem:
        return ("problem", str(problem))
    except Exception as exc:  # noqa: BLE001 - a crash must be the same crash (Decimal('sNaN'))
        return ("raises", type(exc).__name__)
    return (type(value).__name__, repr(value))


def per_value(type_: str, field: str | None) -> Any:
    """What RecordBuilder.build did per value before the checks were compiled."""
    def check(raw: Any) -> Any:
        value = normalise(raw, type_)
        if field is not None or value is not None:
            value = check_field(field or "", value)
        return value
    return check


_local = st.text(alphabet="ab.+_-'#/&é Z9", min_size=0, max_size=8)
_host = st.sampled_from(["example.com", "gmail.com", "hotmail.fr", "outlook.com", "live.nl",
                         "x", "ex-ample.co.uk", "example.123", "[1.2.3.4]", "exämple.com", ""])
emails = st.builds(lambda a, h, pad: pad + a + "@" + h + pad, _local, _host,
                   st.sampled_from(["", " ", "\t", "\u00a0"]))
texts = st.one_of(
    st.text(max_size=12), emails,
    st.sampled_from(["fr", "France", " us ", "EN", "english", "f", "M", "opted_in", "Yes",
                     "Europe/Paris", "Eastern Time (US & Canada)", "1990-05-01",
                     "1990-02-30", "2024-03-01 10:00:00", "1980-12-21T00:00:00.000Z",
                     "https://example.com/a.png", "ftp://x", "+14155552671", "4155552671",
                     "+1234", '["a","b","a"]', "a, b", "[1,", "  7 ", "1e3", "nan", "inf",
                     "true", "0", "10.50", "x" * 256, "y" * 255]))
raw_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.decimals(allow_nan=True),
    texts, st.binary(max_size=6), st.dates(), st.datetimes(),
    st.datetimes(timezones=st.just(timezone(timedelta(hours=-5)))),
    st.lists(st.one_of(st.none(), texts, st.integers()), max_size=4),
)


@settings(max_examples=400, deadline=None)
@given(type_=st.sampled_from(TYPES), field=st.sampled_from(FIELDS), raw=raw_values)
def test_compiled_check_equals_the_per_value_check(type_: str, field: str | None,
                                                    raw: Any) -> None:
    compiled = converter(type_, field)
    want = outcome(per_value(type_, field), raw)
    assert outcome(compiled, raw) == want
    assert outcome(compiled, raw) == want  # again: a memoised answer is the same answer


@pytest.mark.parametrize(("type_", "field", "raw"), [
    ("string", "country", "France"), ("string", "country", "Atlantis"),
    ("email", "email", " a@example.com "), ("email", None, "x@gmail.com"),
    ("string", "email", "bo..b@hotmail.com"), ("string", None, "x" * 256),
    ("float", None, 447.71999999999997), ("float", None, 10.0), ("float", None, float("inf")),
    ("integer", None, True), ("integer", None, 3.0), ("boolean", None, 1),
    ("string", "dob", "1990-02-30"), ("string_array", "facebook.likes", ["y" * 256]),
    ("string", "email_open_tracking_disabled", "true"), ("no_such_type", None, 1),
    ("string", None, 12.5), ("string", "home_city", b"\xff"),
])
def test_compiled_check_on_known_cases(type_: str, field: str | None, raw: Any) -> None:
    assert outcome(converter(type_, field), raw) == outcome(per_value(type_, field), raw)


def test_the_email_whitespace_scan_is_str_isspace_for_every_code_point() -> None:
    space = values._WHITESPACE
    differ = [cp for cp in range(sys.maxunicode + 1)
              if bool(space.search(chr(cp))) != chr(cp).isspace()]
    assert differ == []


def test_a_memoised_field_reports_its_problem_every_time() -> None:
    check = converter("string", "country")
    for _ in range(3):
        with pytest.raises(ValueProblem, match="ISO-3166-1"):
            check("Atlantis")
    assert check("fr") == "FR"
    assert re.fullmatch(r"[A-Z]{2}", check("United Kingdom"))


def test_dates_and_datetimes_through_the_compiled_check() -> None:
    assert converter("date", "dob")(datetime(2024, 2, 29, 13)) == "2024-02-29"
    assert converter("datetime", None)(date(2024, 1, 2)) == "2024-01-02T00:00:00Z"
    assert converter("float", None)(Decimal("10.50")) == 10.5


# Text near the edges of the one-match email path: the characters its classes take and
# those they must not (Kelvin sign, long s, dotless i: IGNORECASE without re.ASCII would
# take them for letters), the Microsoft and Gmail hosts, labels of 63 and 64 characters.
_edge = st.text(alphabet="aZ9_-.+'&#/@!éKſı\n \tmsnhotmaillive", max_size=14)
_edge_emails = st.builds(
    lambda a, h, top: a + "@" + h + top, _edge,
    st.one_of(st.sampled_from(["", "example.", "gmail.", "x.", "Hotmail.", "a-b.", "1.",
                               "LIVE.", "sub.outlook.", "m" * 63 + ".", "m" * 64 + ".", "-a.",
                               "a-.", "a..b."]),
              _edge.map(lambda label: label + ".")),
    st.sampled_from(["com", "COM", "123", "c0m", "c", "k" * 63, "k" * 64, "com-", "", "c\n"]))


@settings(max_examples=3000, deadline=None)
@given(text=st.one_of(_edge, _edge_emails, emails))
def test_the_common_email_match_takes_only_what_the_full_rules_take(text: str) -> None:
    full = outcome(values._email_rules, text)
    if values._EMAIL_COMMON(text) is not None:
        assert full == ("str", repr(text))
    assert outcome(values.email, text) == full


@pytest.mark.parametrize("text", [
    "ab@example.com", "o'neil.x+tag@sub.ex-ample.co.uk", "AB@EXAMPLE.COM", "a_b@x.io",
    "ab@" + "m" * 63 + ".com"])
def test_the_common_email_match_takes_the_usual_addresses(text: str) -> None:
    assert values._EMAIL_COMMON(text) is not None
    assert values._email_rules(text) == text


@pytest.mark.parametrize("text", [
    "x@gmail.com", "ab@hotmail.fr", "ab@LIVE.nl", "ab@example.123", "ab@example",
    "ab@" + "m" * 64 + ".com", "ab@example.com\n", "a\u212a@example.com", "ab@ex\u017fmple.com",
    "ab.@example.com", "ab@-example.com", "josé@example.com"])
def test_the_common_email_match_leaves_the_rest_to_the_full_rules(text: str) -> None:
    assert values._EMAIL_COMMON(text) is None
