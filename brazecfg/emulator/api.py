"""The Braze endpoints: each takes the parsed body and answers (status, JSON payload).

Requests are checked whole before anything is applied, so a 400 never leaves a half-done
change behind; /users/track is the exception Braze makes, applying the valid objects and
listing the rejected ones.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from brazecfg.emulator.config import EmulatorConfig
from brazecfg.emulator.fields import Invalid
from brazecfg.emulator.store import Store
from brazecfg.emulator.validation import (
    AttributeUpdate,
    Identifier,
    Occurrence,
    is_uuid,
    validate_attributes,
    validate_event,
    validate_purchase,
)

MAX_IDS = 50
# Fatal messages: the names in Braze's error table (errors.md).
MAX_INPUT_LENGTH = "Max Input Length Exceeded"
MAX_IDS_EXCEEDED = "The max number of ids per request was exceeded"
MAX_EXPORT_IDS_EXCEEDED = "The max number of external_ids and aliases per request was exceeded"
DELETE_KINDS = ("external_ids", "user_aliases", "braze_ids", "email_addresses", "phone_numbers")
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
NO_VALID_DATA = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
GROUP_STATES = ("subscribed", "unsubscribed")

Reply = tuple[int, dict[str, Any]]
Handler = Callable[[Any, Store, EmulatorConfig], Reply]


class BadRequest(Exception):
    """The whole request is rejected with 400 and this message."""


@dataclass(frozen=True)
class Endpoint:
    permission: str
    handler: Handler
    method: str = "POST"


def track(body: Any, store: Store, config: EmulatorConfig) -> Reply:
    return _track(_track_arrays(body, config), store, config)


def track_bulk(body: Any, store: Store, config: EmulatorConfig) -> Reply:
    """/users/track/bulk: the body, identifiers and answers of /users/track, with its own
    caps: ``bulk_track_cap`` objects in all and ``bulk_objects_per_profile`` per profile
    (both 400 when passed, as Max Input Length Exceeded)."""
    arrays = _arrays(body)
    if sum(len(items) for items in arrays.values()) > config.bulk_track_cap:
        raise BadRequest(MAX_INPUT_LENGTH)
    per_profile = Counter(str(o.get("external_id")) for items in arrays.values() for o in items
                          if isinstance(o, dict) and o.get("external_id") is not None)
    if per_profile and max(per_profile.values()) > config.bulk_objects_per_profile:
        raise BadRequest(MAX_INPUT_LENGTH)
    return _track(arrays, store, config)


def _track(arrays: dict[str, list[Any]], store: Store, config: EmulatorConfig) -> Reply:
    validators: dict[str, Callable[[Any, EmulatorConfig], AttributeUpdate | Occurrence]] = {
        "attributes": validate_attributes,
        "events": validate_event,
        "purchases": validate_purchase,
    }
    updates: list[AttributeUpdate] = []
    occurrences: list[Occurrence] = []
    errors: list[dict[str, Any]] = []
    processed: dict[str, int] = {}
    for name, items in arrays.items():
        processed[name] = 0
        for index, obj in enumerate(items):
            try:
                result = validators[name](obj, config)
            except Invalid as exc:
                errors.append({"index": index, "input_array": name, "type": str(exc)})
                continue
            processed[name] += 1
            if isinstance(result, AttributeUpdate):
                updates.append(result)
            else:
                occurrences.append(result)
    if not updates and not occurrences:
        return 400, {"message": NO_VALID_DATA, **({"errors": errors} if errors else {})}
    store.apply_track(updates, occurrences)
    reply: dict[str, Any] = {"message": "success"}
    reply.update({f"{name}_processed": n for name, n in processed.items()})
    if errors:
        reply["errors"] = errors
    return 201, reply


def _arrays(body: Any) -> dict[str, list[Any]]:
    """The attributes, events and purchases arrays of a /users/track(/bulk) body."""
    _require_object(body)
    arrays: dict[str, list[Any]] = {}
    for name in ("attributes", "events", "purchases"):
        if body.get(name) is not None:
            if not isinstance(body[name], list):
                raise BadRequest(f"'{name}' must be an array")
            arrays[name] = body[name]
    return arrays


def _track_arrays(body: Any, config: EmulatorConfig) -> dict[str, list[Any]]:
    arrays = _arrays(body)
    cap = config.track_cap  # per array or in total, by contract
    if config.track_cap_mode == "per_array":
        too_many = any(len(items) > cap for items in arrays.values())
    else:
        too_many = sum(len(items) for items in arrays.values()) > cap
    if too_many:
        raise BadRequest(MAX_INPUT_LENGTH)
    return arrays


def delete(body: Any, store: Store, config: EmulatorConfig) -> Reply:
    _require_object(body)
    kinds = [k for k in DELETE_KINDS if body.get(k) is not None]
    if len(kinds) > 1:
        # post_user_delete.md: one of them per request.
        raise BadRequest(f"Provide only one of {', '.join(repr(k) for k in DELETE_KINDS)}, "
                         f"not {' and '.join(repr(k) for k in kinds)}")
    if kinds and kinds[0] in ("email_addresses", "phone_numbers"):
        raise BadRequest(f"The emulator does not model deleting by '{kinds[0]}'; use "
                         "'external_ids', 'user_aliases' or 'braze_ids'")
    external_ids = _strings(body, "external_ids")
    braze_ids = _strings(body, "braze_ids")
    aliases = _aliases(body, "user_aliases")
    total = len(external_ids) + len(braze_ids) + len(aliases)
    if total == 0:
        raise BadRequest("Provide 'external_ids', 'user_aliases', or 'braze_ids'")
    if total > MAX_IDS:
        raise BadRequest(MAX_IDS_EXCEEDED)
    deleted = store.delete(external_ids, braze_ids, aliases)
    return 201, {"deleted": deleted, "message": "success"}


def export_ids(body: Any, store: Store, config: EmulatorConfig) -> Reply:
    _require_object(body)
    who = [Identifier("external_id", i) for i in _strings(body, "external_ids")]
    who += [Identifier("user_alias", a) for a in _aliases(body, "user_aliases")]
    if len(who) > MAX_IDS:
        raise BadRequest(MAX_EXPORT_IDS_EXCEEDED)
    for key, kind in (("braze_id", "braze_id"), ("email_address", "email"), ("phone", "phone")):
        if body.get(key) is not None:
            if not isinstance(body[key], str):
                raise BadRequest(f"'{key}' must be a string")
            who.append(Identifier(kind, body[key]))
    if not who:
        raise BadRequest("Provide at least one user identifier to export")
    fields = body.get("fields_to_export")
    if fields is not None and not (
        isinstance(fields, list) and all(isinstance(f, str) for f in fields)
    ):
        raise BadRequest("'fields_to_export' must be an array of strings")
    users, invalid = store.export(who, fields)
    reply: dict[str, Any] = {"users": users}
    if invalid:  # Braze documents the key as optional: absent when every id was found
        reply["invalid_user_ids"] = invalid
    reply["message"] = "success"
    return 201, reply


def subscription_set(body: Any, store: Store, config: EmulatorConfig) -> Reply:
    _require_object(body)
    group, state = _group(body)
    if body.get("email") is not None and body.get("phone") is not None:
        raise BadRequest(
            "Either an email address or a phone number should be provided, but not both."
        )
    who = _recipients(body, {"external_id": "external_id", "email": "email", "phone": "phone"})
    store.set_subscription(group, state, who)
    return 201, {"message": "success"}


def subscription_set_v2(body: Any, store: Store, config: EmulatorConfig) -> Reply:
    _require_object(body)
    groups = body.get("subscription_groups")
    if not isinstance(groups, list) or not groups:
        raise BadRequest("'subscription_groups' must be a non-empty array")
    planned = []
    kinds: set[str] = set()
    for g in groups:  # check every group before changing any
        _require_object(g)
        group, state = _group(g)
        who = _recipients(g, {"external_ids": "external_id", "emails": "email", "phones": "phone"})
        kinds |= {k for k in ("emails", "phones") if g.get(k) is not None}
        for w in who:
            if w.kind == "phone" and not _E164.match(str(w.value)):
                raise BadRequest("'phones' must be E.164 numbers such as +14155550100")
        planned.append((group, state, who))
    if len(kinds) > 1:  # never both in one request (..._v2.md)
        raise BadRequest(
            "Either an email address or a phone number should be provided, but not both."
        )
    for group, state, who in planned:
        store.set_subscription(group, state, who)
    return 201, {"message": "success"}


def subscription_status_get(query: Any, store: Store, config: EmulatorConfig) -> Reply:
    """GET /subscription/status/get?subscription_group_id=G&external_id[]=1&external_id[]=2:
    each user's state in one group, ``Subscribed``, ``Unsubscribed`` or ``Unknown``."""
    group = (query.get("subscription_group_id") or [""])[0]
    if not group:
        raise BadRequest("'subscription_group_id' is required")
    ids = [*query.get("external_id[]", []), *query.get("external_id", [])]
    if not ids:
        raise BadRequest("Provide at least one external_id")
    if len(ids) > MAX_IDS:
        raise BadRequest(f"At most {MAX_IDS} external_ids per request")
    return 201, {"status": store.subscription_status(group, ids), "message": "success"}


def _group(body: dict[str, Any]) -> tuple[str, str]:
    group = body.get("subscription_group_id")
    if not isinstance(group, str) or not group:
        raise BadRequest("'subscription_group_id' is required")
    if not is_uuid(group):
        raise BadRequest("'subscription_group_id' must be a UUID")
    state = body.get("subscription_state")
    if state not in GROUP_STATES:
        raise BadRequest("'subscription_state' must be 'subscribed' or 'unsubscribed'")
    return group, str(state)


def _recipients(body: dict[str, Any], keys: dict[str, str]) -> list[Identifier]:
    who: list[Identifier] = []
    for key, kind in keys.items():
        values = body.get(key)
        if values is None:
            continue
        values = [values] if isinstance(values, str) else values
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise BadRequest(f"'{key}' must be a string or an array of strings")
        if len(values) > MAX_IDS:
            raise BadRequest(MAX_IDS_EXCEEDED)
        who += [Identifier(kind, v) for v in values]
    if not who:
        raise BadRequest(f"Provide one of {', '.join(repr(k) for k in keys)}")
    return who


def _require_object(body: Any) -> None:
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object")


def _strings(body: dict[str, Any], key: str) -> list[str]:
    values = body.get(key)
    if values is None:
        return []
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise BadRequest(f"'{key}' must be an array of strings")
    return values


def _aliases(body: dict[str, Any], key: str) -> list[tuple[str, str]]:
    values = body.get(key)
    if values is None:
        return []
    ok = isinstance(values, list) and all(
        isinstance(v, dict)
        and isinstance(v.get("alias_name"), str)
        and isinstance(v.get("alias_label"), str)
        for v in values
    )
    if not ok:
        raise BadRequest(f"'{key}' must be an array of {{alias_name, alias_label}} objects")
    return [(v["alias_label"], v["alias_name"]) for v in values]


ENDPOINTS: dict[str, Endpoint] = {
    "/users/track": Endpoint("users.track", track),
    "/users/track/bulk": Endpoint("users.track.bulk", track_bulk),
    "/users/delete": Endpoint("users.delete", delete),
    "/users/export/ids": Endpoint("users.export.ids", export_ids),
    "/subscription/status/set": Endpoint("subscription.status.set", subscription_set),
    "/v2/subscription/status/set": Endpoint("subscription.status.set", subscription_set_v2),
    "/subscription/status/get": Endpoint("subscription.status.get", subscription_status_get,
                                         "GET"),
}
