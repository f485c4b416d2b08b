"""Schedules as declared (``schedule:`` on a destination or a source) and when each is next due.

Two forms, both parsed here only: an interval (``every 15 minutes``, ``every hour``,
``every 2 days``), counted from the start of the last run, and a cron expression (five fields,
or ``@hourly``/``@daily``/...), evaluated in UTC by croniter, never by a parser of our own.
A job that never ran is due at once: a new project syncs on its first start, not an hour later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from croniter import croniter

_INTERVAL = re.compile(r"^\s*every\s+(?:(\d+)\s+)?(second|minute|hour|day|week)s?\s*$", re.I)
_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}


class ScheduleError(ValueError):
    """A schedule that is neither an interval nor a cron expression; the message says why."""


@dataclass(frozen=True)
class Schedule:
    text: str
    interval: timedelta | None = None  # None: a cron expression

    def next_after(self, last: datetime | None, now: datetime) -> datetime:
        """When the job is next due, given the start of its last run (None: never ran)."""
        if last is None:
            return now
        if self.interval is not None:
            return last + self.interval
        return croniter(self.text, last).get_next(datetime)

    def following(self, slot: datetime, now: datetime) -> datetime:
        """The first slot after ``now`` (slots missed while a run went on are not queued)."""
        nxt = self.next_after(slot, now)
        if self.interval is not None:
            if nxt <= now:
                missed = (now - nxt) // self.interval + 1
                nxt = nxt + missed * self.interval
            return nxt
        return nxt if nxt > now else croniter(self.text, now).get_next(datetime)


def parse_schedule(text: str) -> Schedule:
    m = _INTERVAL.match(text)
    if m:
        n = int(m.group(1) or 1)
        seconds = n * _UNITS[m.group(2).lower()]
        if seconds <= 0:
            raise ScheduleError(f"{text!r}: an interval must be longer than zero")
        return Schedule(text, timedelta(seconds=seconds))
    if not croniter.is_valid(text.strip()) or len(text.split()) not in (1, 5):
        raise ScheduleError(f"{text!r} is not a schedule: use an interval such as \"every 15 "
                            "minutes\" or \"every hour\", a cron expression (5 fields, UTC) or "
                            "@hourly, @daily, @weekly, @monthly, @yearly")
    return Schedule(text.strip())
