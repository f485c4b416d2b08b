"""Relative durations and ISO datetimes."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from brazecfg.warehouse.dates import as_datetime, parse_relative


@pytest.mark.parametrize(("text", "want"), [
    ("30 days", timedelta(days=30)),
    ("1 day", timedelta(days=1)),
    ("2 weeks", timedelta(days=14)),
    ("6 months", timedelta(days=180)),  # a month is 30 days
    ("1 year", timedelta(days=365)),
    ("12 hours", timedelta(hours=12)),
    ("90 minutes", timedelta(minutes=90)),
    ("45 seconds", timedelta(seconds=45)),
    ("  3 DAYS ", timedelta(days=3)),
    ("10min", timedelta(minutes=10)),
])
def test_parse_relative(text: str, want: timedelta) -> None:
    assert parse_relative(text) == want


@pytest.mark.parametrize("text", ["", "days", "30", "-3 days", "1.5 days", "3 fortnights",
                                  "30 days ago"])
def test_parse_relative_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="relative duration"):
        parse_relative(text)


def test_as_datetime_reads_both_iso_spellings_and_offsets() -> None:
    want = datetime(2024, 1, 1, 10, 0, 0)
    assert as_datetime("2024-01-01 10:00:00") == want
    assert as_datetime("2024-01-01T10:00:00") == want
    assert as_datetime("2024-01-01T12:00:00+02:00") == want
    assert as_datetime("2024-01-01T10:00:00Z") == want
    assert as_datetime("2024-01-01") == datetime(2024, 1, 1)
    assert as_datetime(date(2024, 1, 1)) == datetime(2024, 1, 1)
    assert as_datetime(datetime(2024, 1, 1, 11, tzinfo=timezone(timedelta(hours=1)))) == want
    assert as_datetime("paid") is None
    assert as_datetime("2024-13-45") is None
    assert as_datetime(5) is None
