"""Braze's standard user profile fields and the property types that can feed each one.

``/users/track`` treats these exact lowercase names as standard fields; any other name becomes
a custom attribute, so a misspelt standard field silently turns into a custom attribute. The
config checks use this table to reject unknown names in a destination's ``mapping`` and
properties whose type cannot produce a value Braze accepts (see shared/braze-api-facts.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

_TEXT = frozenset({"string"})
_TIMES = frozenset({"datetime", "date", "string"})
_COUNT = frozenset({"integer"})

STANDARD_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType({
    # The identifier: the text of the model's primary key (at most 987 bytes).
    "external_id": frozenset({"string", "integer", "email", "phone"}),
    "first_name": _TEXT,
    "last_name": _TEXT,
    "email": frozenset({"email", "string"}),
    "phone": frozenset({"phone", "string"}),  # E.164
    "country": _TEXT,  # ISO-3166-1 alpha-2
    "dob": frozenset({"date", "string"}),  # YYYY-MM-DD
    "gender": _TEXT,  # M F O N P
    "home_city": _TEXT,
    "language": _TEXT,  # ISO-639-1
    "time_zone": _TEXT,  # IANA name
    "email_subscribe": _TEXT,  # opted_in subscribed unsubscribed
    "push_subscribe": _TEXT,
    "email_open_tracking_disabled": frozenset({"boolean"}),
    "email_click_tracking_disabled": frozenset({"boolean"}),
    # ISO 8601 date-times (user_attributes_object.md).
    "date_of_first_session": _TIMES,
    "date_of_last_session": _TIMES,
    "marked_email_as_spam_at": _TIMES,
    "image_url": frozenset({"url", "string"}),
    # facebook and twitter are hashes "containing any of" these keys; each key is mapped on
    # its own and brazecfg sends the whole hash (see HASH_FIELDS).
    "facebook.id": frozenset({"string", "integer"}),
    "facebook.likes": frozenset({"string_array"}),
    "facebook.num_friends": _COUNT,
    "twitter.id": _COUNT,
    "twitter.screen_name": _TEXT,
    "twitter.followers_count": _COUNT,
    "twitter.friends_count": _COUNT,
    "twitter.statuses_count": _COUNT,
})

# Standard fields that are hashes: mapped as "facebook.id" etc., sent as {"facebook": {...}}.
# Braze does not document whether a partial hash replaces the stored one, so brazecfg keeps
# each hash as one field: any change sends every mapped key of it again.
HASH_FIELDS: frozenset[str] = frozenset({"facebook", "twitter"})


def hash_of(field: str) -> str | None:
    """The hash a mapped field belongs to ("facebook.id" -> "facebook"), else None."""
    head, dot, _ = field.partition(".")
    return head if dot and head in HASH_FIELDS else None


def nest_hashes(values: dict[str, Any], invalid: set[str]) -> None:
    """Folds "facebook.id"-style fields into one "facebook" value, in place. A hash with an
    invalid key is not sent at all (a partial hash might erase the key Braze holds); a hash
    whose keys are all empty is None (removes it)."""
    for name in sorted({h for f in values.keys() | invalid if (h := hash_of(f))}):
        keys = sorted(f for f in values.keys() | invalid if hash_of(f) == name)
        bad = [k for k in keys if k in invalid]
        parts = {k.partition(".")[2]: values.pop(k) for k in keys if k in values}
        invalid.difference_update(keys)
        if bad:
            invalid.add(name)
            continue
        present = {k: v for k, v in parts.items() if v is not None}
        values[name] = present or None

# Names a custom attribute must not take: the standard fields, fields no property type can feed
# yet, and the keys /users/track reads from an attributes object.
RESERVED_ATTRIBUTE_NAMES: frozenset[str] = frozenset(STANDARD_FIELDS) | {
    "current_location", "braze_id", "user_alias", "subscription_groups", *HASH_FIELDS,
    "push_tokens",
    "_update_existing_only", "_merge_objects",
}
