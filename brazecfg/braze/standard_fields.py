"""Braze's standard user profile fields and the property types that can feed each one.

``/users/track`` treats these exact lowercase names as standard fields; any other name becomes
a custom attribute, so a misspelt standard field silently turns into a custom attribute. The
config checks use this table to reject unknown names in a destination's ``mapping`` and
properties whose type cannot produce a value Braze accepts (see shared/braze-api-facts.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

_TEXT = frozenset({"string"})

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
})

# Names a custom attribute must not take: the standard fields, fields no property type can feed
# yet, and the keys /users/track reads from an attributes object.
RESERVED_ATTRIBUTE_NAMES: frozenset[str] = frozenset(STANDARD_FIELDS) | {
    "current_location", "braze_id", "user_alias", "subscription_groups",
    "_update_existing_only", "_merge_objects",
}
