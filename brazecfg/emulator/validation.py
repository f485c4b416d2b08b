"""Turn one /users/track object into a typed update, or the sentence that rejects it.

Pure functions over parsed JSON: whether a profile exists is the store's business, so
everything that depends on state (update-only mode, increments) is applied later.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from brazecfg.emulator.config import EmulatorConfig
from brazecfg.emulator.fields import (
    IGNORED,
    STANDARD_FIELDS,
    Invalid,
    check_string,
    is_number,
    parse_time,
)

MAX_EXTERNAL_ID_BYTES = 987
MAX_OBJECT_BYTES = 100 * 1024
PRIMARY_IDENTIFIERS = ("external_id", "user_alias", "braze_id")
# Keys of an attributes object that steer the request rather than name an attribute.
CONTROL_KEYS = frozenset(
    {
        *PRIMARY_IDENTIFIERS,
        "_update_existing_only",
        "_merge_objects",
        "push_token_import",
        "subscription_groups",
        "push_tokens",
    }
)
GROUP_STATES = ("subscribed", "unsubscribed")
# Event property names that "will result in API errors" (event_object.md), besides a leading $.
RESERVED_PROPERTY_NAMES = frozenset({"time", "event_name"})
MAX_PROPERTY_NAME = 255


def is_uuid(value: object) -> bool:
    """Subscription group ids are UUIDs (braze-api-facts.md, BAD_SUBSCRIPTION_GROUP_ID)."""
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


@dataclass(frozen=True)
class Identifier:
    """Who an object is about. `value` is (alias_label, alias_name) for a user_alias."""

    kind: str  # "external_id" | "user_alias" | "braze_id" | "email" | "phone"
    value: str | tuple[str, str]


@dataclass(frozen=True)
class AttributeOp:
    name: str
    op: str  # "set" | "unset" | "inc" | "add_remove" | "merge"
    value: Any = None  # for add_remove: (values to add, values to remove)


@dataclass(frozen=True)
class AttributeUpdate:
    who: Identifier
    update_existing_only: bool
    ops: tuple[AttributeOp, ...]
    subscriptions: tuple[tuple[str, str], ...]  # (subscription_group_id, state)


@dataclass(frozen=True)
class Occurrence:
    """An event or a purchase: appended to the profile, never deduplicated."""

    who: Identifier
    update_existing_only: bool
    kind: str  # "event" | "purchase"
    record: dict[str, Any]


def identify(obj: dict[str, Any]) -> tuple[Identifier, bool]:
    """The object's one identifier and whether it may only update an existing profile."""
    present = [k for k in PRIMARY_IDENTIFIERS if obj.get(k) is not None]
    if len(present) > 1:
        # The sentence measured from real Braze (braze-api-facts.md).
        raise Invalid("You must specify only one of 'external_id', 'user_alias' or 'braze_id'")
    if present:
        who = _primary(present[0], obj[present[0]])
    elif isinstance(obj.get("email"), str):
        who = Identifier("email", obj["email"])
    elif isinstance(obj.get("phone"), str):
        who = Identifier("phone", obj["phone"])
    else:
        raise Invalid(
            "Must provide one of 'external_id', 'user_alias', 'braze_id', 'email', or 'phone'"
        )
    only = obj.get("_update_existing_only", who.kind == "user_alias")
    if not isinstance(only, bool):
        raise Invalid("'_update_existing_only' must be true or false")
    return who, only


def _primary(kind: str, value: Any) -> Identifier:
    if kind == "user_alias":
        if not isinstance(value, dict) or not all(
            isinstance(value.get(k), str) and value.get(k) for k in ("alias_name", "alias_label")
        ):
            raise Invalid("'user_alias' must be an object with 'alias_name' and 'alias_label'")
        return Identifier(kind, (value["alias_label"], value["alias_name"]))
    if not isinstance(value, str) or not value:
        raise Invalid(f"'{kind}' must be a non-empty string")
    if kind == "external_id" and len(value.encode("utf-8")) > MAX_EXTERNAL_ID_BYTES:
        raise Invalid(f"'external_id' must be at most {MAX_EXTERNAL_ID_BYTES} bytes")
    return Identifier(kind, value)


def validate_attributes(obj: Any, config: EmulatorConfig) -> AttributeUpdate:
    if not isinstance(obj, dict):
        raise Invalid("Each attributes object must be a JSON object")
    who, only = identify(obj)
    merge = obj.get("_merge_objects") is True
    ops = []
    for name, value in obj.items():
        if name in CONTROL_KEYS:
            continue
        if name in STANDARD_FIELDS:
            checked = (
                None if value is None
                else STANDARD_FIELDS[name](name, value, config.max_string_length)
            )
            if checked is IGNORED:
                continue  # accepted, not set (an unknown time zone)
            # None: null removes the field; a country that maps to nothing is set to NULL.
            ops.append(AttributeOp(name, "unset") if checked is None
                       else AttributeOp(name, "set", checked))
        else:
            ops.append(_custom(name, value, merge, config))
    groups = _subscription_groups(obj.get("subscription_groups"))
    return AttributeUpdate(who, only, tuple(ops), groups)


def _custom(name: str, value: Any, merge: bool, config: EmulatorConfig) -> AttributeOp:
    if not name or name.startswith("$") or len(name) > config.max_string_length:
        raise Invalid(f"Custom attribute name '{name[:64]}' is not allowed")
    if value is None:
        return AttributeOp(name, "unset")
    if isinstance(value, bool) or is_number(value):
        return AttributeOp(name, "set", value)
    if isinstance(value, str):
        return AttributeOp(name, "set", check_string(name, value, config.max_string_length))
    if isinstance(value, list):
        return AttributeOp(name, "set", _array(name, value, config, whole=True))
    if isinstance(value, dict):
        if set(value) == {"inc"}:
            if not is_number(value["inc"]):
                raise Invalid(f"'{name}' increment must be a number")
            return AttributeOp(name, "inc", value["inc"])
        if value and set(value) <= {"add", "remove"}:
            add = _array(name, value.get("add", []), config, whole=False)
            remove = _array(name, value.get("remove", []), config, whole=False)
            return AttributeOp(name, "add_remove", (add, remove))
        if len(json.dumps(value)) > MAX_OBJECT_BYTES:
            raise Invalid(f"'{name}' nested object must be at most 100 KB")
        return AttributeOp(name, "merge" if merge else "set", value)
    raise Invalid(f"'{name}' has an unsupported value type")


def _array(name: str, values: Any, config: EmulatorConfig, *, whole: bool) -> list[Any]:
    if not isinstance(values, list):
        raise Invalid(f"'{name}' array operations take a list of strings")
    if values and all(isinstance(v, dict) for v in values) and whole:
        return values  # an array of objects, set as a whole
    if not all(isinstance(v, str) for v in values):
        raise Invalid(f"'{name}' array values must all be strings")
    for v in values:
        check_string(name, v, config.max_string_length)
    unique = list(dict.fromkeys(values))  # Braze keeps array values unique, first wins
    if whole and len(unique) > config.max_array_length:
        raise Invalid(f"'{name}' array must have at most {config.max_array_length} values")
    return unique


def _subscription_groups(groups: Any) -> tuple[tuple[str, str], ...]:
    if groups is None:
        return ()
    if not isinstance(groups, list):
        raise Invalid("BAD_SUBSCRIPTION_GROUP_ARRAY: 'subscription_groups' must be an array")
    out = []
    for g in groups:
        if not isinstance(g, dict):
            raise Invalid("BAD_SUBSCRIPTION_GROUP_HASH: each subscription group must be an object")
        if not is_uuid(g.get("subscription_group_id")):
            raise Invalid("BAD_SUBSCRIPTION_GROUP_ID: 'subscription_group_id' must be a UUID")
        if g.get("subscription_state") not in GROUP_STATES:
            raise Invalid("BAD_SUBSCRIPTION_GROUP_STATE: 'subscription_state' must be "
                          "'subscribed' or 'unsubscribed'")
        out.append((g["subscription_group_id"], g["subscription_state"]))
    return tuple(out)


def validate_event(obj: Any, config: EmulatorConfig) -> Occurrence:
    if not isinstance(obj, dict):
        raise Invalid("Each events object must be a JSON object")
    who, only = identify(obj)
    if obj.get("name") is None:
        raise Invalid("'name' is required")
    name = check_string("name", obj["name"], config.max_string_length)
    if not name:
        raise Invalid("'name' must not be empty")
    if "time" not in obj:
        raise Invalid("'time' is required")
    record: dict[str, Any] = {"name": name, "time": parse_time("time", obj["time"])}
    _copy_optional(obj, record)
    return Occurrence(who, only, "event", record)


def validate_purchase(obj: Any, config: EmulatorConfig) -> Occurrence:
    if not isinstance(obj, dict):
        raise Invalid("Each purchases object must be a JSON object")
    who, only = identify(obj)
    for required in ("product_id", "currency", "price", "time"):
        if obj.get(required) is None:
            raise Invalid(f"'{required}' is required")
    product = check_string("product_id", obj["product_id"], config.max_string_length)
    currency = obj["currency"]
    if not (
        isinstance(currency, str)
        and len(currency) == 3
        and currency.isascii()
        and currency.isalpha()
    ):
        raise Invalid("'currency' must be a three-letter ISO 4217 currency code")
    if not is_number(obj["price"]):
        raise Invalid("'price' must be a number")
    quantity = obj.get("quantity", 1)
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= 100:
        raise Invalid("'quantity' must be an integer from 1 to 100")
    record: dict[str, Any] = {
        "product_id": product,
        "currency": currency.upper(),
        "price": obj["price"],
        "quantity": quantity,
        "time": parse_time("time", obj["time"]),
    }
    _copy_optional(obj, record)
    return Occurrence(who, only, "purchase", record)


def _copy_optional(obj: dict[str, Any], record: dict[str, Any]) -> None:
    props = obj.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            raise Invalid("'properties' must be an object")
        if any(not k or k.startswith("$") or len(k) > MAX_PROPERTY_NAME for k in props):
            raise Invalid("'properties' keys must be non-empty, at most 255 characters, and "
                          "must not start with '$'")
        reserved = sorted(RESERVED_PROPERTY_NAMES & set(props))
        if reserved:
            raise Invalid(f"'properties' must not use the reserved key '{reserved[0]}'")
        record["properties"] = props
    if obj.get("app_id") is not None:
        record["app_id"] = obj["app_id"]
