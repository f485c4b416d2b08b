"""One user profile as the emulator holds it, how an attribute update changes it, and the
shapes it is shown in (inspection, saved state, /users/export/ids)."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from brazecfg.emulator.fields import STANDARD_FIELDS, is_number
from brazecfg.emulator.validation import AttributeOp


@dataclass(slots=True)
class Profile:
    """A benchmark holds a million of these, hence slots and containers that stay None
    (about 230 bytes a profile) until the first alias, subscription, event or purchase."""

    braze_id: str
    created_at: str
    external_id: str | None = None
    aliases: tuple[tuple[str, str], ...] = ()  # (alias_label, alias_name)
    attributes: dict[str, Any] = field(default_factory=dict)
    subscriptions: dict[str, str] | None = None  # group id -> state
    events: list[dict[str, Any]] | None = None
    purchases: list[dict[str, Any]] | None = None

    def set_subscriptions(self, states: Iterable[tuple[str, str]]) -> None:
        if self.subscriptions is None:
            self.subscriptions = {}
        self.subscriptions.update(states)

    def record(self, kind: str, record: dict[str, Any]) -> None:
        """Appends an event or a purchase; Braze never deduplicates them."""
        if kind == "event":
            self.events = self.events or []
            self.events.append(record)
        else:
            self.purchases = self.purchases or []
            self.purchases.append(record)

    def counts(self) -> tuple[int, int]:
        return len(self.events or ()), len(self.purchases or ())

    def apply(self, op: AttributeOp, max_array_length: int) -> None:
        attrs = self.attributes
        if op.op == "set":
            # No copy: the value comes from a request body parsed for this request alone.
            attrs[op.name] = op.value
        elif op.op == "unset":
            attrs.pop(op.name, None)
        elif op.op == "inc":
            # Incrementing a missing or non-numeric attribute starts from zero.
            current = attrs.get(op.name)
            attrs[op.name] = (current if is_number(current) else 0) + op.value
        elif op.op == "add_remove":
            add, remove = op.value
            current = attrs.get(op.name)
            values = [v for v in current if isinstance(v, str)] if isinstance(current, list) else []
            # An element already present moves to the end (user_attributes_object.md).
            dropped = set(remove) | set(add)
            values = [v for v in values if v not in dropped] + list(add)
            # Past the cap Braze drops the oldest values, so the newest adds survive.
            attrs[op.name] = values[-max_array_length:] if max_array_length else []
        elif op.op == "merge":
            current = attrs.get(op.name)
            base = current if isinstance(current, dict) else {}
            attrs[op.name] = _deep_merge(base, op.value)
        else:  # pragma: no cover - validation only produces the ops above
            raise ValueError(op.op)

    def to_json(self) -> dict[str, Any]:
        """Everything held, for inspection and saved state."""
        return {
            "external_id": self.external_id,
            "braze_id": self.braze_id,
            "created_at": self.created_at,
            "user_aliases": [{"alias_label": lbl, "alias_name": nm} for lbl, nm in self.aliases],
            "attributes": self.attributes,
            "subscription_groups": self.subscriptions or {},
            "events": self.events or [],
            "purchases": self.purchases or [],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Profile:
        return cls(
            braze_id=data["braze_id"],
            created_at=data["created_at"],
            external_id=data.get("external_id"),
            aliases=tuple(
                (a["alias_label"], a["alias_name"]) for a in data.get("user_aliases", [])
            ),
            attributes=dict(data.get("attributes", {})),
            subscriptions=data.get("subscription_groups") or None,
            events=data.get("events") or None,
            purchases=data.get("purchases") or None,
        )

    def export(self, fields: Iterable[str] | None, dob_format: str = "date") -> dict[str, Any]:
        """The /users/export/ids shape, as recorded from real Braze: `appboy_id` (= braze_id),
        `random_bucket`, `total_revenue`, `push_subscribe`/`email_subscribe` (`subscribed`
        unless set); `custom_attributes`, `custom_events` and `purchases` only when there is
        something in them. external_id is always included so a caller can match users to the
        ids it asked for. `dob_format` "datetime" gives the recorded `1980-12-21T00:00:00.000Z`,
        "date" the documented `1980-12-21`."""
        out: dict[str, Any] = {
            "created_at": self.created_at,
            "external_id": self.external_id,
            "user_aliases": [{"alias_name": nm, "alias_label": lbl} for lbl, nm in self.aliases],
            "appboy_id": self.braze_id,
            "braze_id": self.braze_id,
            "random_bucket": random_bucket(self.braze_id),
        }
        custom: dict[str, Any] = {}
        for name, value in self.attributes.items():
            if name == "current_location":
                out["last_coordinates"] = [value["longitude"], value["latitude"]]
            elif name == "dob" and dob_format == "datetime":
                out[name] = f"{value}T00:00:00.000Z"
            elif name in STANDARD_FIELDS:
                out[name] = value
            else:
                custom[name] = value
        if custom:
            out["custom_attributes"] = custom
        purchases = self.purchases or []
        if self.events:
            out["custom_events"] = _summary(self.events, "name")
        if purchases:
            out["purchases"] = _summary(purchases, "product_id")
        out["total_revenue"] = sum(p["price"] * p.get("quantity", 1) for p in purchases)
        for channel in ("push_subscribe", "email_subscribe"):
            out.setdefault(channel, "subscribed")
        if fields is not None:
            wanted = set(fields) | {"external_id"}
            out = {k: v for k, v in out.items() if k in wanted}
        return out


def random_bucket(braze_id: str) -> int:
    """Braze's per-profile random number 0-9999, fixed for a profile: derived from its id so
    it needs no storage and stays the same across restarts."""
    digest = hashlib.blake2b(braze_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000


def _summary(records: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Braze exports counts per name with first/last times, not the individual records."""
    by_name: dict[str, dict[str, Any]] = {}
    for r in records:
        s = by_name.setdefault(
            r[key], {"name": r[key], "first": r["time"], "last": r["time"], "count": 0}
        )
        s["first"], s["last"] = min(s["first"], r["time"]), max(s["last"], r["time"])
        s["count"] += 1
    return list(by_name.values())


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out
