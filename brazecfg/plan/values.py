"""From a raw warehouse value to the JSON value Braze receives, or a reason it cannot be sent.

Two checks run per value: the property's type (``normalise``), then the Braze field it feeds
(``check_field``). A failing value is reported for that record and field and not sent; the
rest of the record still syncs. Reasons never quote the value (it may be personal data).

The field checks follow what Braze itself accepts (``shared/braze-api-facts.md`` and Braze's
docs), because a value Braze refuses fails its record at every apply, for ever:

- ``phone``: a number libphonenumber takes for a valid number (Braze routes SMS on the same
  data; it refuses ``+1234``), written ``+`` country code digits (E.164). Spaces, dashes, dots
  and brackets are dropped, as Braze drops them; ten digits without ``+`` are a US number, as
  Braze maps them. Sent in E.164.
- ``email``: Braze's published syntax rules (email_validation.md): its local-part pattern
  (stricter for Microsoft domains, two characters at least for Gmail), an ASCII host of two or
  more labels of letters, digits and inner hyphens, a top-level label that is not all digits,
  no IP address, no white space (Braze answers 400 to the whole request).
- numbers: a float is sent rounded to 15 significant digits (warehouse arithmetic leaves
  ``447.71999999999997`` for ``447.72``); a decimal as its own value; whole numbers as integers.

Stricter than Braze on purpose (each reason says so): ``country`` must be an ISO-3166-1
alpha-2 code (Braze maps other spellings best-effort and silently stores NULL for the rest),
``time_zone`` an IANA name (Braze also takes Rails names such as "Eastern Time (US & Canada)"
and silently ignores an unknown one), ``language`` an ISO-639-1 code, ``dob`` a real day
``YYYY-MM-DD``, ``gender`` one of M F O N P; strings at most 255 characters (Braze's
documented limit; past it is undocumented).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

import phonenumbers

from brazecfg.braze.codes import LANGUAGES, country_code, iana_time_zone

MAX_STRING = 255
SIGNIFICANT_DIGITS = 15  # what a double holds faithfully: beyond it is arithmetic noise
# Braze's email rules (braze-docs email_validation.md). Python's \w is Unicode letters, digits
# and underscore, as the docs' [\p{L}\p{N}_].
_EMAIL_LOCAL = re.compile(r"^[\w\-](?:[.+'\w&#/\-]*[\w\-])?$")
_EMAIL_LOCAL_MICROSOFT = re.compile(r"^\w[\-\w]*(?:\.[\-\w]+)*$", re.ASCII)
_EMAIL_HOST = re.compile(
    r"^[a-z\d](?:[a-z\d-]{0,61}[a-z\d])?(?:\.[a-z\d](?:[a-z\d-]{0,61}[a-z\d])?)+$",
    re.IGNORECASE | re.ASCII)
_MICROSOFT = ("msn", "hotmail", "outlook", "live")
_GMAIL = ("gmail.com", "googlemail.com")
_PHONE_NOISE = re.compile(r"[\s\-().]")
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


class ValueProblem(Exception):
    """Why one value cannot be sent. The message is safe to show: it never holds the value."""


def normalise(value: Any, type_: str) -> Any:
    """The JSON value for a property of ``type_``; None stays None. Raises ValueProblem."""
    if value is None:
        return None
    match type_:
        case "string":
            return _string(value)
        case "integer":
            return _integer(value)
        case "float":
            return _float(value)
        case "boolean":
            return _boolean(value)
        case "date":
            return _date(value)
        case "datetime":
            return _datetime(value)
        case "email":
            return email(_string(value).strip())
        case "phone":
            return phone(_string(value))
        case "url":
            s = _string(value).strip()
            if not _URL.match(s):
                raise ValueProblem("not an http(s) URL")
            return s
        case "string_array":
            return _string_array(value)
    raise ValueProblem(f"unknown property type {type_!r}")


def _string(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise ValueProblem("bytes that are not UTF-8 text") from None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float) and math.isfinite(value):
        return str(plain_number(value))  # 447.71999999999997 -> "447.72"
    return str(value)


def plain_number(value: float | Decimal) -> int | float:
    """The number to send for a float or decimal: a whole number as an integer (10.0 and 10
    are one value for Braze, and one spelling keeps hashes stable across warehouses), a float
    rounded to 15 significant digits (``447.71999999999997`` -> ``447.72``: the digits past
    the 15th are arithmetic noise, not what anyone declared), a decimal as its own value
    (a whole one exactly, however large; else the nearest float, shortest spelling)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    f = float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    return int(f) if f.is_integer() and abs(f) < 2**53 else f


def phone(text: str) -> str:
    """The E.164 form of a phone number Braze accepts (see the module docstring)."""
    s = _PHONE_NOISE.sub("", text)
    try:
        if s.startswith("+"):
            number = phonenumbers.parse(s, None)
        elif len(s) == 10 and s.isdigit():
            number = phonenumbers.parse(s, "US")  # Braze maps ten digits to a US number
        else:
            number = None
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise ValueProblem("not a phone number Braze accepts: write + country code and "
                           "number, e.g. +14155552671 (E.164), a number valid in its country")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, (float, Decimal)):
        if not math.isfinite(value) or value != int(value):
            raise ValueProblem("not a whole number")
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                return _integer(Decimal(value.strip()))
            except ArithmeticError:
                raise ValueProblem("not an integer") from None
    raise ValueProblem(f"not an integer (got {type(value).__name__})")


def _float(value: Any) -> int | float:
    if isinstance(value, bool):
        raise ValueProblem("a boolean where a number is expected")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueProblem("not a finite number")
        return plain_number(value)
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueProblem("not a number") from None
    if not math.isfinite(f):
        raise ValueProblem("not a finite number")
    return plain_number(f)


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, Decimal)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueProblem("not a boolean (true/false, 1/0, yes/no)")


def _date(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10]).isoformat()
        except ValueError:
            pass
    raise ValueProblem("not a date (YYYY-MM-DD)")


def _datetime(value: Any) -> str:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        s = value.strip().replace("Z", "+00:00")
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            raise ValueProblem("not an ISO 8601 date-time") from None
    else:
        raise ValueProblem(f"not a date-time (got {type(value).__name__})")
    # Braze reads a time with no zone as UTC; say so explicitly, and send every time in UTC.
    dt = dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)
    text = dt.isoformat(timespec="milliseconds" if dt.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def _string_array(value: Any) -> list[str]:
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("["):
            try:
                value = json.loads(s)
            except ValueError:
                raise ValueProblem("not a JSON array of strings") from None
        else:
            value = [p.strip() for p in s.split(",") if p.strip()] if s else []
    if not isinstance(value, (list, tuple)):
        raise ValueProblem("not an array of strings")
    out: list[str] = []
    for item in value:
        if item is None:
            continue
        s = _string(item)
        if s not in out:  # Braze keeps array values unique; so do we, keeping first-seen order
            out.append(s)
    return out


_SUBSCRIBE = {"opted_in", "subscribed", "unsubscribed"}


def check_field(field: str, value: Any) -> Any:
    """Check (and canonicalise) a value against the Braze field it feeds. Raises ValueProblem."""
    if value is None:
        return None
    match field:
        case "country":
            # Braze maps names best-effort ("Australia" -> AU): send the code it would store,
            # so the value does not re-diff forever. Stricter than Braze on purpose: a value
            # that maps to nothing Braze sets to NULL; brazecfg does not send it.
            code = country_code(str(value))
            if code is None:
                raise ValueProblem("country must be an ISO-3166-1 alpha-2 code such as US or FR "
                                   "or a country name (Braze would set this one to NULL)")
            return code
        case "language":
            s = str(value).strip().lower()
            if s not in LANGUAGES:
                raise ValueProblem("language must be an ISO-639-1 code such as en or fr")
            return s
        case "gender":
            s = str(value).strip().upper()
            if s not in {"M", "F", "O", "N", "P"}:
                raise ValueProblem("gender must be one of M, F, O, N, P")
            return s
        case "dob":
            s = str(value)
            try:
                if len(s) > 10 and s[10] in "T ":
                    # Braze accepted a full date-time and kept its day (recorded traffic):
                    # send the day, as Braze stores it.
                    _datetime(s)
                    s = s[:10]
                if not _DATE.match(s):
                    raise ValueError
                date.fromisoformat(s)  # a real day: Braze rejects 1990-02-30 too
            except (ValueError, ValueProblem):
                raise ValueProblem("dob must be a date YYYY-MM-DD (give the property "
                                   "type: date to turn a date-time into one)") from None
            return s
        case "time_zone":
            # IANA or Rails-style ("Eastern Time (US & Canada)"), sent as the IANA name. An
            # unknown zone Braze ignores; brazecfg reports it instead of sending it.
            zone = iana_time_zone(str(value))
            if zone is None:
                raise ValueProblem("time_zone must be an IANA time zone name such as Europe/Paris "
                                   "or a Rails name (Braze would ignore this one)")
            return zone
        case "date_of_first_session" | "date_of_last_session" | "marked_email_as_spam_at":
            return _datetime(value)  # ISO 8601, in UTC
        case "image_url":
            if not _URL.match(str(value)):
                raise ValueProblem("image_url must be an http(s) URL")
        case "facebook.id":
            value = str(value)
        case "email":
            value = email(str(value).strip())
        case "phone":
            return phone(str(value))
        case "email_subscribe" | "push_subscribe":
            s = str(value).strip().lower()
            if s not in _SUBSCRIBE:
                raise ValueProblem(f"{field} must be opted_in, subscribed or unsubscribed")
            return s
        case "email_open_tracking_disabled" | "email_click_tracking_disabled":
            if not isinstance(value, bool):
                raise ValueProblem(f"{field} must be a boolean")
    return _length(value)


# -- compiled once per field ----------------------------------------------------------------
# ``converter(type_, field)`` is ``normalise`` then ``check_field`` for one mapped field, with
# the dispatch on type and field names done once instead of per value, and fast paths for the
# common Python types. Same values, same problems, same reasons (tests/plan/test_compiled_values.py
# checks it against the per-value functions).

Convert = Callable[[Any], Any]
_WHITESPACE = re.compile(r"\s")  # str.isspace() for every code point (tested)
_MICROSOFT_RE = re.compile("|".join(_MICROSOFT))


# The common address in one match: an ASCII local part of two or more characters that
# _EMAIL_LOCAL takes, one "@", a host that _EMAIL_HOST takes whose last label starts with a
# letter (so it is not all digits) and holds none of _MICROSOFT. Every text it matches,
# _email_rules accepts (tests/plan/test_compiled_values.py checks it on random text); any
# other text goes through _email_rules. 1M addresses: 1.4 s against 2.1 s (bench/README.md).
# re.ASCII: without it IGNORECASE lets [a-z] match the Kelvin sign and the long s.
_EMAIL_COMMON = re.compile(
    r"[a-z\d_-][.+'a-z\d_&#/-]*[a-z\d_-]@(?![^@]*(?:" + "|".join(_MICROSOFT) + r"))"
    r"(?:[a-z\d](?:[a-z\d-]{0,61}[a-z\d])?\.)+[a-z](?:[a-z\d-]{0,61}[a-z\d])?",
    re.IGNORECASE | re.ASCII).fullmatch


def email(text: str) -> str:
    """``text`` if Braze's own syntax rules take it for an email address; else ValueProblem
    (the per-character scans are regular expressions: this runs once per email value)."""
    if _EMAIL_COMMON(text) is not None:
        return text
    return _email_rules(text)


def _email_rules(text: str) -> str:
    """Braze's syntax rules for an email address, each checked in turn (see email)."""
    local, at, host = text.rpartition("@")
    if not at or not local or not host or _WHITESPACE.search(text):
        raise ValueProblem("not a valid email address")
    host_l = host.lower()
    if _MICROSOFT_RE.search(host_l):
        ok = bool(_EMAIL_LOCAL_MICROSOFT.match(local.split("+")[0]))
        ok = ok and (not local.endswith(".") and ".." not in local)
    else:
        ok = bool(_EMAIL_LOCAL.match(local))
        if host_l in _GMAIL and len(local) < 2:
            ok = False
    top = host.rsplit(".", 1)[-1]
    if not ok or not _EMAIL_HOST.match(host) or top.isdigit():
        raise ValueProblem("not a valid email address (Braze's rules: letters, digits and "
                           "_-.+'&#/ before the @, an ASCII domain with a dot after it)")
    return text


_MEMO_LIMIT = 4096  # low-cardinality fields (country, language...) memoised up to this size


def _to_string(v: Any) -> str:
    return v if type(v) is str else _string(v)


def _to_integer(v: Any) -> int:
    return v if type(v) is int else _integer(v)


def _to_float(v: Any) -> int | float:
    if type(v) is float:
        if not math.isfinite(v):
            raise ValueProblem("not a finite number")
        f = float(f"{v:.{SIGNIFICANT_DIGITS}g}")
        return int(f) if f.is_integer() and abs(f) < 2**53 else f
    return _float(v)


def _to_boolean(v: Any) -> bool:
    return v if type(v) is bool else _boolean(v)


def _to_email(v: Any) -> str:
    return email((v if type(v) is str else _string(v)).strip())


def _to_phone(v: Any) -> str:
    return phone(_to_string(v))


def _to_url(v: Any) -> str:
    s = _to_string(v).strip()
    if not _URL.match(s):
        raise ValueProblem("not an http(s) URL")
    return s


_NORMALISERS: dict[str, Convert] = {
    "string": _to_string, "integer": _to_integer, "float": _to_float, "boolean": _to_boolean,
    "date": _date, "datetime": _datetime, "email": _to_email, "phone": _to_phone,
    "url": _to_url, "string_array": _string_array,
}


def _length(value: Any) -> Any:
    """The check every field ends with (the tail of :func:`check_field`)."""
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise ValueProblem(f"longer than Braze's {MAX_STRING}-character limit ({len(value)} characters)")
    if isinstance(value, list):
        for item in value:
            if len(item) > MAX_STRING:
                raise ValueProblem(f"an array item is longer than {MAX_STRING} characters")
    return value


def _field_check(field: str) -> Convert:
    """``check_field(field, value)`` for a value that is not None, as one callable."""
    match field:
        case ("country" | "language" | "gender" | "dob" | "time_zone" | "date_of_first_session"
              | "date_of_last_session" | "marked_email_as_spam_at" | "phone" | "email_subscribe"
              | "push_subscribe"):
            # Each of these returns from its own case: nothing of the tail applies.
            def returning(value: Any) -> Any:
                return check_field(field, value)
            return returning
        case "image_url":
            def image_url(value: Any) -> Any:
                if not _URL.match(str(value)):
                    raise ValueProblem("image_url must be an http(s) URL")
                return _length(value)
            return image_url
        case "facebook.id":
            return lambda value: _length(str(value))
        case "email":
            return lambda value: _length(email(str(value).strip()))
        case "email_open_tracking_disabled" | "email_click_tracking_disabled":
            def boolean(value: Any) -> Any:
                if not isinstance(value, bool):
                    raise ValueProblem(f"{field} must be a boolean")
                return _length(value)
            return boolean
    return _length


def _memoised(fn: Convert) -> Convert:
    """``fn`` remembering its answers (or its problem) for str arguments, up to _MEMO_LIMIT
    of them: for fields with few distinct values, such as a country or a language."""
    memo: dict[str, tuple[bool, Any]] = {}

    def call(value: Any) -> Any:
        if type(value) is not str:
            return fn(value)
        hit = memo.get(value)
        if hit is None:
            try:
                hit = (True, fn(value))
            except ValueProblem as problem:
                hit = (False, str(problem))
            if len(memo) < _MEMO_LIMIT:
                memo[value] = hit
        if hit[0]:
            return hit[1]
        raise ValueProblem(hit[1])

    return call


_LOW_CARDINALITY = frozenset({"country", "language", "gender", "time_zone", "email_subscribe",
                              "push_subscribe"})


def converter(type_: str, field: str | None) -> Convert:
    """``normalise(value, type_)`` and then, for a Braze standard ``field`` (None for a custom
    attribute), ``check_field(field, value)``: one callable built once per mapped field.
    None stays None; a value that cannot be sent raises ValueProblem with the same reason."""
    norm = _NORMALISERS.get(type_)
    if norm is None:
        def unknown(value: Any) -> Any:
            if value is None:
                return None
            raise ValueProblem(f"unknown property type {type_!r}")
        return unknown
    if type_ == "email" and field in (None, "email"):
        # the normaliser already ran the email rules on the stripped text; check_field's
        # second run of them on the same text cannot fail, so only the length check is left
        check: Convert = _length
    else:
        check = _field_check(field or "")
    if field in _LOW_CARDINALITY:
        check = _memoised(check)
    if check is _length and type_ in ("integer", "float", "boolean"):
        # these give a number or a boolean, which the length check passes unread
        def number(value: Any) -> Any:
            return None if value is None else norm(value)
        return number
    if type_ == "email" and check is _length:
        def address(value: Any) -> Any:
            if value is None:
                return None
            text = email((value if type(value) is str else _string(value)).strip())
            if len(text) > MAX_STRING:
                raise ValueProblem(f"longer than Braze's {MAX_STRING}-character limit "
                                   f"({len(text)} characters)")
            return text
        return address
    if type_ == "string" and check is _length:
        def text(value: Any) -> Any:
            if value is None:
                return None
            if type(value) is not str:
                value = _string(value)
            if len(value) > MAX_STRING:
                raise ValueProblem(f"longer than Braze's {MAX_STRING}-character limit "
                                   f"({len(value)} characters)")
            return value
        return text

    def convert(value: Any) -> Any:
        if value is None:
            return None
        value = norm(value)
        return None if value is None else check(value)
    return convert
