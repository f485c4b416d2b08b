"""Braze's standard profile fields and the value each accepts. A check returns the value to
store or raises Invalid with the sentence Braze would put in `errors[].type`."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from typing import Any

from brazecfg.braze.codes import LANGUAGES, country_code, iana_time_zone


class Invalid(Exception):
    """One object of a request is rejected; the message is the sentence Braze reports."""


class _Ignored:
    """What a check returns for a value Braze accepts but does not set (an unknown time zone:
    "Only valid time zone values are set"): the object is processed, the field untouched."""

    def __repr__(self) -> str:
        return "IGNORED"


IGNORED = _Ignored()


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


def _country(name: str, value: Any, max_length: int) -> str | None:
    """Braze maps other forms best-effort ("Australia" -> AU) and sets a value that matches
    nothing to NULL, never an error (user_attributes_object.md). None: the field is unset."""
    return country_code(check_string(name, value, max_length))


def _dob(name: str, value: Any, max_length: int) -> str:
    """YYYY-MM-DD as documented; a full date-time ("1980-12-21T00:00:00.000Z") was accepted
    by real Braze in the recorded traffic, and keeps its day."""
    text = check_string(name, value, max_length)
    try:
        if len(text) == 10:
            dt.date.fromisoformat(text)
        elif len(text) > 10 and text[10] in "T ":
            dt.date.fromisoformat(text[:10])
            parse_time(name, text)
        else:
            raise ValueError(text)
    except (ValueError, Invalid):
        raise Invalid(f"'{name}' must be a date in the format 'YYYY-MM-DD'") from None
    return text[:10]


def _gender(name: str, value: Any, max_length: int) -> str:
    if value not in GENDERS:
        raise Invalid(f"'{name}' must be 'M', 'F', 'O', 'N', 'P', or null")
    return str(value)


def _language(name: str, value: Any, max_length: int) -> str:
    text = check_string(name, value, max_length)
    if text.lower() not in LANGUAGES:
        raise Invalid(f"'{name}' must be an ISO-639-1 language code")
    return text.lower()


def _time_zone(name: str, value: Any, max_length: int) -> Any:
    """IANA or Rails-style names; "Only valid time zone values are set": another is ignored."""
    text = check_string(name, value, max_length)
    return text if iana_time_zone(text) is not None else IGNORED


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


def _session_time(name: str, value: Any, max_length: int) -> str:
    """ISO 8601, or Braze's other documented form yyyy-MM-dd'T'HH:mm:ss:SSSZ."""
    text = check_string(name, value, max_length)
    if _BRAZE_TIME.match(text):
        return text
    return parse_time(name, text)


_BRAZE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}:\d{3}(Z|[+-]\d{4})$")
# facebook / twitter: "hash containing any of" these keys (user_attributes_object.md).
_SOCIAL: dict[str, dict[str, str]] = {
    "facebook": {"id": "string", "likes": "strings", "num_friends": "integer"},
    "twitter": {"id": "integer", "screen_name": "string", "followers_count": "integer",
                "friends_count": "integer", "statuses_count": "integer"},
}


def _social(name: str, value: Any, max_length: int) -> dict[str, Any]:
    keys = _SOCIAL[name]
    if not isinstance(value, dict) or not value or not set(value) <= set(keys):
        raise Invalid(f"'{name}' must be an object with any of {', '.join(keys)}")
    for key, item in value.items():
        kind = keys[key]
        if kind == "integer":
            ok = isinstance(item, int) and not isinstance(item, bool)
        elif kind == "string":
            ok = isinstance(item, str) and len(item) <= max_length
        else:
            ok = isinstance(item, list) and all(isinstance(v, str) for v in item)
        if not ok:
            raise Invalid(f"'{name}.{key}' must be {'an' if kind == 'integer' else 'a'} "
                          f"{'array of strings' if kind == 'strings' else kind}")
    return dict(value)


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
    "date_of_first_session": _session_time,
    "date_of_last_session": _session_time,
    "marked_email_as_spam_at": _session_time,
    "facebook": _social,
    "twitter": _social,
    "image_url": check_string,
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
