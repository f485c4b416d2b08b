from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from brazecfg.plan.values import ValueProblem, check_field, normalise


@pytest.mark.parametrize(("raw", "type_", "expected"), [
    ("abc", "string", "abc"),
    (12, "string", "12"),
    (447.71999999999997, "string", "447.72"),  # no float noise in text either
    (1e20, "string", "100000000000000000000"),
    (Decimal("12"), "integer", 12),
    ("  7 ", "integer", 7),
    (3.0, "integer", 3),
    (Decimal("10.50"), "float", 10.5),
    (10.0, "float", 10),  # one spelling for 10 and 10.0: hashes agree across warehouses
    ("1", "boolean", True),
    ("No", "boolean", False),
    (0, "boolean", False),
    (date(2024, 2, 29), "date", "2024-02-29"),
    ("2024-02-29 13:00:00", "date", "2024-02-29"),
    (datetime(2024, 1, 2, 3, 4, 5), "datetime", "2024-01-02T03:04:05Z"),
    (datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))), "datetime",
     "2024-01-02T01:04:05Z"),
    ("2024-01-02 03:04:05", "datetime", "2024-01-02T03:04:05Z"),
    ("A@Example.com ", "email", "A@Example.com"),
    ("+33 6 12-34-56-78", "phone", "+33612345678"),
    ("https://example.com/x", "url", "https://example.com/x"),
    ('["a","b","a"]', "string_array", ["a", "b"]),
    ("a, b", "string_array", ["a", "b"]),
    (["x", None, 3], "string_array", ["x", "3"]),
    (None, "integer", None),
])
def test_normalise(raw: object, type_: str, expected: object) -> None:
    assert normalise(raw, type_) == expected


@pytest.mark.parametrize(("raw", "type_"), [
    ("x", "integer"), (1.5, "integer"), ("nan", "float"), ("maybe", "boolean"),
    ("2024-13-01", "date"), ("yesterday", "datetime"), ("no-at-sign", "email"),
    ("0612345678", "phone"), ("ftp://x", "url"), (5, "string_array"),
])
def test_normalise_rejects_without_quoting_the_value(raw: object, type_: str) -> None:
    with pytest.raises(ValueProblem) as info:
        normalise(raw, type_)
    assert str(raw) not in str(info.value) or str(raw) in type_


@pytest.mark.parametrize(("field", "raw", "expected"), [
    ("country", "fr", "FR"), ("language", "EN", "en"), ("gender", "f", "F"),
    ("dob", "1990-05-01", "1990-05-01"), ("time_zone", "Europe/Paris", "Europe/Paris"),
    ("email_subscribe", "Opted_In", "opted_in"), ("home_city", "Paris", "Paris"),
    # Values Braze maps: sent as Braze stores them, so they do not re-diff forever.
    ("country", "France", "FR"), ("country", "united kingdom", "GB"),
    ("time_zone", "Eastern Time (US & Canada)", "America/New_York"),
    ("date_of_first_session", "2024-03-01 10:00:00", "2024-03-01T10:00:00Z"),
    ("facebook.id", 1001, "1001"), ("dob", "1980-12-21T00:00:00.000Z", "1980-12-21"),
])
def test_check_field_accepts_and_canonicalises(field: str, raw: object, expected: object) -> None:
    assert check_field(field, raw) == expected


@pytest.mark.parametrize(("field", "raw"), [
    ("country", "Atlantis"), ("language", "english"), ("gender", "male"), ("dob", "01/05/1990"), ("dob", "1990-02-30"),
    ("time_zone", "Mars/Olympus"), ("email_subscribe", "yes"),
    ("email_open_tracking_disabled", "true"), ("home_city", "x" * 256),
    ("custom", ["y" * 256]),
])
def test_check_field_rejects(field: str, raw: object) -> None:
    with pytest.raises(ValueProblem):
        check_field(field, raw)


@pytest.mark.parametrize(("raw", "expected"), [
    (447.71999999999997, 447.72), (0.1 + 0.2, 0.3), (10.0, 10), (Decimal("447.720"), 447.72),
    (Decimal("12345678901234567"), 12345678901234567), (1 / 3, 0.333333333333333),
])
def test_floats_are_sent_without_arithmetic_noise(raw: object, expected: object) -> None:
    assert normalise(raw, "float") == expected
    assert type(normalise(raw, "float")) is type(expected)


@pytest.mark.parametrize("raw", ["ada@example.com", "o'neil@example.com", "a..b@example.com",
                                 "josé@example.com", "bob+tag@outlook.com", "ab@gmail.com"])
def test_emails_braze_accepts(raw: str) -> None:
    assert check_field("email", raw) == raw


@pytest.mark.parametrize("raw", ["bo..b@hotmail.com", "x@gmail.com", ".bob@example.com",
                                 "bob@example.123", "bob@[1.2.3.4]", "bob!@example.com",
                                 "bob@exämple.com", "a b@example.com", "bob@example"])
def test_emails_braze_refuses(raw: str) -> None:
    with pytest.raises(ValueProblem):
        check_field("email", raw)


@pytest.mark.parametrize(("raw", "expected"), [
    ("+14155552671", "+14155552671"), ("(415) 555-2671", "+14155552671"),
    ("+44 20 7183 8750", "+442071838750"),
])
def test_phones_braze_accepts_are_sent_in_e164(raw: str, expected: str) -> None:
    assert check_field("phone", raw) == expected


@pytest.mark.parametrize("raw", ["+1234", "+999123456", "0612345678", "+123456789012345", "12"])
def test_phones_braze_refuses(raw: str) -> None:
    with pytest.raises(ValueProblem):
        check_field("phone", raw)
