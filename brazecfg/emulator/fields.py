"""Braze's standard profile fields and the value each accepts. A check returns the value to
store or raises Invalid with the sentence Braze would put in `errors[].type`."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from typing import Any

from brazecfg.braze.codes import COUNTRIES, LANGUAGES, time_zones


class Invalid(Exception):
    """One object of a request is rejected; the message is the sentence Braze reports."""


SUBSCRIBE_STATES = ("opted_in", "subscribed", "unsubscribed")
GENDERS = ("M", "F", "O", "N", "P")
# Deliberately loose: Braze's own check is not published, and a stricter emulator would
# reject addresses the real API takes.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

Check = Callable[[str, Any, int], Any]


def is_number(value: Any) -> bool:
    """JSON numbers only: bool is an int subclass in Python but not a number in JSON."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_string(name: str, value: Any, max_length: int) -> str:
    if not isinstance(value, str):
        raise Invalid(f"'{name}' must be a string")
    if len(value) > max_length:
        raise Invalid(f"'{name}' must be at most {max_length} characters")
    return value


def _email(name: str, value: Any, max_length: int) -> str:
    text = check_string(name, value, max_length)
    if not _EMAIL.match(text):
        raise Invalid(f"'{name}' must be a valid email address")
    return text


def _country(name: str, value: Any, max_length: int) -> str:
    text = check_string(name, value, max_length)
    if text.upper() not in COUNTRIES:
        raise Invalid(f"'{name}' must be an ISO-3166-1 alpha-2 country code")
    return text.upper()


def _dob(name: str, value: Any, max_length: int) -> str:
    text = check_string(name, value, max_length)
    try:
        if len(text) != 10:
            raise ValueError(text)
        dt.date.fromisoformat(text)
    except ValueError:
        raise Invalid(f"'{name}' must be a date in the format 'YYYY-MM-DD'") from None
    return text


def _gender(name: str, value: Any, max_length: int) -> str:
    if value not in GENDERS:
        raise Invalid(f"'{name}' must be 'M', 'F', 'O', 'N', 'P', or null")
    return str(value)


def _language(name: str, value: Any, max_length: int) -> str:
    text = check_string(name, value, max_length)
    if text.lower() not in LANGUAGES:
        raise Invalid(f"'{name}' must be an ISO-639-1 language code")
    return text.lower()


def _time_zone(name: str, value: Any, max_length: int) -> str:
    text = check_string(name, value, max_length)
    if text not in time_zones():
        raise Invalid(f"'{name}' must be a valid IANA time zone name")
    return text


def _subscribe(name: str, value: Any, max_length: int) -> str:
    if value not in SUBSCRIBE_STATES:
        raise Invalid(f"'{name}' must be 'subscribed', 'unsubscribed', or 'opted_in'")
    return str(value)


def _boolean(name: str, value: Any, max_length: int) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"'{name}' must be true or false")
    return value


def _location(name: str, value: Any, max_length: int) -> dict[str, float]:
    if not isinstance(value, dict) or set(value) != {"longitude", "latitude"}:
        raise Invalid(f"'{name}' must be an object with 'longitude' and 'latitude'")
    lon, lat = value["longitude"], value["latitude"]
    if not (is_number(lon) and is_number(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        raise Invalid(f"'{name}' must have a longitude in [-180, 180] and a latitude in [-90, 90]")
    return {"longitude": lon, "latitude": lat}


STANDARD_FIELDS: dict[str, Check] = {
    "first_name": check_string,
    "last_name": check_string,
    "email": _email,
    "phone": check_string,  # E.164 is recommended, not enforced, by Braze
    "country": _country,
    "dob": _dob,
    "gender": _gender,
    "home_city": check_string,
    "language": _language,
    "time_zone": _time_zone,
    "email_subscribe": _subscribe,
    "push_subscribe": _subscribe,
    "email_open_tracking_disabled": _boolean,
    "email_click_tracking_disabled": _boolean,
    "current_location": _location,
}


def parse_time(name: str, value: Any) -> str:
    """ISO 8601 datetimes (a trailing Z included, which 3.10's fromisoformat rejects)."""
    if not isinstance(value, str) or not value:
        raise Invalid(f"'{name}' must be an ISO-8601 datetime string")
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(f"'{name}' must be an ISO-8601 datetime string") from None
    return value
