"""The Braze endpoints: each takes the parsed body and answers (status, JSON payload).

Requests are checked whole before anything is applied, so a 400 never leaves a half-done
change behind; /users/track is the exception Braze makes, applying the valid objects and
listing the rejected ones.
"""

from __future__ import annotations

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
    validate_attributes,
    validate_event,
    validate_purchase,
)

MAX_IDS = 50
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
    arrays = _track_arrays(body, config)
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


def _track_arrays(body: Any, config: EmulatorConfig) -> dict[str, list[Any]]:
    _require_object(body)
    arrays: dict[str, list[Any]] = {}
    for name in ("attributes", "events", "purchases"):
        if body.get(name) is not None:
            if not isinstance(body[name], list):
                raise BadRequest(f"'{name}' must be an array")
            arrays[name] = body[name]
    cap = config.track_cap
    if config.track_cap_mode == "per_array":
        too_many = any(len(items) > cap for items in arrays.values())
        rule = f"at most {cap} objects in each of attributes, events and purchases"
    else:
        too_many = sum(len(items) for items in arrays.values()) > cap
        rule = f"at most {cap} attributes, events and purchases in total"
    if too_many:
        raise BadRequest(f"Too many objects in request: /users/track accepts {rule}")
    return arrays


def delete(body: Any, store: Store, config: EmulatorConfig) -> Reply:
    _require_object(body)
    external_ids = _strings(body, "external_ids")
    braze_ids = _strings(body, "braze_ids")
    aliases = _aliases(body, "user_aliases")
    total = len(external_ids) + len(braze_ids) + len(aliases)
    if total == 0:
        raise BadRequest("Provide 'external_ids', 'user_aliases', or 'braze_ids'")
    if total > MAX_IDS:
        raise BadRequest(f"At most {MAX_IDS} users can be deleted per request")
    deleted = store.delete(external_ids, braze_ids, aliases)
    return 201, {"deleted": deleted, "message": "success"}


def export_ids(body: Any, store: Store, config: EmulatorConfig) -> Reply:
    _require_object(body)
    who = [Identifier("external_id", i) for i in _strings(body, "external_ids")]
    who += [Identifier("user_alias", a) for a in _aliases(body, "user_aliases")]
    if len(who) > MAX_IDS:
        raise BadRequest(f"At most {MAX_IDS} external_ids and user_aliases per request")
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
    for g in groups:  # check every group before changing any
        _require_object(g)
        group, state = _group(g)
        who = _recipients(g, {"external_ids": "external_id", "emails": "email", "phones": "phone"})
        planned.append((group, state, who))
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
            raise BadRequest(f"'{key}' may include at most {MAX_IDS} values")
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
    "/users/delete": Endpoint("users.delete", delete),
    "/users/export/ids": Endpoint("users.export.ids", export_ids),
    "/subscription/status/set": Endpoint("subscription.status.set", subscription_set),
    "/v2/subscription/status/set": Endpoint("subscription.status.set", subscription_set_v2),
    "/subscription/status/get": Endpoint("subscription.status.get", subscription_status_get,
                                         "GET"),
}
