"""Relative and absolute dates for filters and group rules.

Every date a query compares with is computed here, in Python, from the injected ``now`` and
bound as a parameter: the SQL never calls ``now()``, so a plan is reproducible and no
per-dialect date arithmetic is needed.

Datetimes are compared in UTC. A naive ``now`` or a naive value is taken to be UTC already.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Any

# A month is 30 days and a year 365 days: a fixed length keeps "within 6 months" a plain
# subtraction from ``now`` that every warehouse agrees on (calendar months would make
# "6 months before 31 August" a matter of convention).
_UNITS: dict[str, timedelta] = {
    "second": timedelta(seconds=1),
    "sec": timedelta(seconds=1),
    "minute": timedelta(minutes=1),
    "min": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
    "month": timedelta(days=30),
    "year": timedelta(days=365),
}
_RELATIVE = re.compile(r"^\s*(\d+)\s*([a-z]+?)s?\s*$", re.IGNORECASE)

# ISO 8601 dates and datetimes, with "T" or a space, optional fraction and offset.
_ISO = re.compile(
    r"^\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
)

ISO_DATETIME = _ISO  # what as_datetime reads as text

# The text form SQLite's datetime() returns, which is what SQLite comparisons use.
SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S"


def parse_relative(text: str) -> timedelta:
    """A duration such as ``"30 days"``: a whole number and a unit.

    Units (singular or plural, case-insensitive): seconds, minutes (``min``), hours, days,
    weeks, months (30 days each) and years (365 days each). Raises ValueError otherwise.
    """
    m = _RELATIVE.match(text) if isinstance(text, str) else None
    unit = _UNITS.get(m.group(2).lower()) if m else None
    if m is None or unit is None:
        raise ValueError(
            f"{text!r} is not a relative duration; write a number and a unit, e.g. "
            "'30 days', '2 weeks', '6 months', '1 year', '12 hours' or '90 minutes'")
    return int(m.group(1)) * unit


def utc_naive(value: datetime) -> datetime:
    """``value`` in UTC without tzinfo (a naive value is assumed to be UTC already)."""
    if value.tzinfo is None:
        return value
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def as_datetime(value: Any) -> datetime | None:
    """A naive UTC datetime if ``value`` is a datetime, a date or an ISO 8601 string; else None.

    Comparisons with such values are done as datetimes in the warehouse, so
    ``2024-01-01 10:00:00`` and ``2024-01-01T10:00:00`` mean the same instant.
    """
    if isinstance(value, datetime):
        return utc_naive(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str) and _ISO.match(value.strip()):
        text = value.strip().replace("Z", "+00:00")
        try:
            return utc_naive(datetime.fromisoformat(text))
        except ValueError:
            return None
    return None
