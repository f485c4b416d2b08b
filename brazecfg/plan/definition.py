"""A plan is frozen data: what will change in the config and, per destination, in Braze.

The summary (counts, per-field counts, a few samples) lives in memory; the full list of record
changes is streamed to a spool only when apply needs it, so a million users never means a
million objects in memory. Nothing in a Plan holds a secret; only samples hold values, and the
JSON/Markdown renderers leave those out.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import orjson


class Action(str, Enum):
    CREATE = "create"  # new Braze user (sync, additive)
    UPDATE = "update"  # changed fields and/or group memberships of a user brazecfg sent before
    ENRICH = "enrich"  # enrich mode: a user Braze has that brazecfg never sent; updated only
    DELETE = "delete"  # sync mode: gone from the warehouse


_ACTIONS = {a.value: a for a in Action}


class ConfigAction(str, Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True)
class ConfigChange:
    action: ConfigAction
    ref: str  # kind/name
    keys: tuple[str, ...] = ()  # top-level keys that changed, for updates



@dataclass(frozen=True, init=False)
class RecordChange:
    """One record's change. ``attributes`` are the values to send (None removes the attribute);
    ``fields``/``groups`` are the ledger's state for the record once Braze confirmed it."""

    action: Action
    external_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)
    groups: frozenset[str] = frozenset()
    joins: tuple[str, ...] = ()
    leaves: tuple[str, ...] = ()
    # the warehouse's record hash the change was made from, stored once Braze confirms it
    row_hash: bytes | None = None

    def __init__(self, action: Action, external_id: str,
                 attributes: dict[str, Any] | None = None, fields: dict[str, str] | None = None,
                 groups: frozenset[str] = frozenset(), joins: tuple[str, ...] = (),
                 leaves: tuple[str, ...] = (), row_hash: bytes | None = None) -> None:
        # The dataclass's own frozen __init__ sets each field through object.__setattr__:
        # one is built per planned record (twice with an opt-out check), and filling the
        # instance dict directly costs less than half. Still frozen: assignment raises.
        d = self.__dict__
        d["action"] = action
        d["external_id"] = external_id
        d["attributes"] = {} if attributes is None else attributes
        d["fields"] = {} if fields is None else fields
        d["groups"] = groups
        d["joins"] = joins
        d["leaves"] = leaves
        d["row_hash"] = row_hash

    def to_json(self, row_hash: bytes | None = None) -> str:
        """The spool line (sorted keys: the action comes first, so a reader can tell deletions
        apart before parsing); ``row_hash`` (else the change's own) rides along when known."""
        d: dict[str, Any] = {
            "a": self.action.value, "id": self.external_id, "attrs": self.attributes,
            "fields": self.fields, "groups": sorted(self.groups), "joins": list(self.joins),
            "leaves": list(self.leaves),
        }
        h = row_hash or self.row_hash
        if h is not None:
            d["h"] = h.hex()
        return _dumps(d)

    def digest_line(self) -> str:
        """What a saved plan is bound to: the change without its field hashes, which depend on
        the hash key (a fresh project has none until its first apply), so the same inputs
        always give the same digest."""
        return _dumps([self.action.value, self.external_id, self.attributes,
                       sorted(self.groups), list(self.joins), list(self.leaves)])

    @classmethod
    def from_json(cls, line: str | bytes) -> RecordChange:
        # A line json wrote (see _dumps) ends in a space: orjson would read its integers
        # past 64 bits as floats.
        raw = line.encode() if isinstance(line, str) else line
        d = json.loads(raw) if raw.rstrip(b"\n").endswith(b" ") else orjson.loads(raw)
        h = d.get("h")
        return cls(_ACTIONS[d["a"]], d["id"], d["attrs"], d["fields"], frozenset(d["groups"]),
                   tuple(d["joins"]), tuple(d["leaves"]), bytes.fromhex(h) if h else None)


def _dumps(value: Any) -> str:
    """Compact JSON with sorted keys, non-ASCII as is: orjson (a few times faster than json
    for spools of a million lines), json for what orjson refuses (integers past 64 bits),
    with a trailing space that tells RecordChange.from_json to read it with json too."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                          sort_keys=True) + " "


@dataclass(frozen=True)
class Issue:
    """A value that will not be sent: record, Braze field, and why (never the value)."""

    external_id: str
    field: str
    reason: str


SAMPLE_SIZE = 5
# The plan JSON's format (schemas/plan.json). Additive changes bump the minor version; a
# removed or retyped key bumps the major one, which a saved plan of the old major refuses.
FORMAT_VERSION = "2.3"  # 2.1: show_current (plan --show-current); 2.2: compared;
# 2.3: compared_in, rows_read
ISSUE_SAMPLE_SIZE = 50


@dataclass
class DestinationPlan:
    """What one destination will do. Built by the diff, frozen once finished."""

    destination: str
    mode: str
    model: str
    counts: Counter[str] = field(default_factory=Counter)  # action -> records (+ unchanged, kept, skipped)
    field_sets: Counter[str] = field(default_factory=Counter)  # field -> records getting a new value
    field_removals: Counter[str] = field(default_factory=Counter)  # field -> records where it is removed
    joins: Counter[str] = field(default_factory=Counter)  # group -> records joining
    leaves: Counter[str] = field(default_factory=Counter)  # group -> records leaving
    # group -> members not subscribed because they unsubscribed in Braze (respect_opt_outs)
    opted_out: Counter[str] = field(default_factory=Counter)
    samples: list[RecordChange] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)  # first ISSUE_SAMPLE_SIZE
    issue_count: int = 0
    failed_last_time: int = 0
    failed_samples: list[Issue] = field(default_factory=list)
    events_to_send: Counter[str] = field(default_factory=Counter)  # event stream -> rows to send
    events_unknown: Counter[str] = field(default_factory=Counter)  # stream -> delivery unknown
    read_since: str | None = None  # incremental read: records changed since this time
    full_read_reason: str = ""  # why a full read, when incremental reads were possible
    late_records: int = 0  # incremental: records read by key (not in the state, or failed)
    hashes_compared: int = 0  # record hashes compared with the state's (0: rows were read)
    # what those hashes cover: "values" (every property value and group flag), "counts"
    # (related-row counts, along an incremental read) or "keys" (an incremental read of a
    # model without aggregates: only which keys still exist); "" when none were compared
    compared: str = ""
    # where they were compared: "warehouse" (it read the state's records itself and only the
    # keys whose hash differs left it) or "brazecfg" (every key and hash merged here)
    compared_in: str = ""
    rows_read: int = 0  # rows of the records that left the warehouse (every read of the plan)
    rehashed: int = 0  # records read that need no change but a new stored record hash
    rehash_spool: Path | None = field(default=None, repr=False)  # their "key\thash" lines
    state_name: str = ""  # the name the state holds this destination under (a declared move)
    moved_from: str = ""  # why state_name differs from destination, for the plan
    binding_changes: list[str] = field(default_factory=list)  # what the state described, changed
    bindings: dict[str, Any] = field(default_factory=dict, repr=False)  # written once applied
    reset_state: bool = False  # another workspace: the old state is replaced on apply
    stream_renames: dict[str, str] = field(default_factory=dict)  # stream key in state -> identity
    source_rows: int = 0  # records the warehouse holds (rows read, or keys of an incremental read)
    members: Counter[str] = field(default_factory=Counter)  # group -> members the state holds
    data_points: int = 0  # Braze data points the changes cost (billing rules: plan/diff.py)
    billing: str = "data_points"  # the Braze app's billing model: data_points | mau
    requests: int = 0  # Braze requests apply will make (writes, events, deletes, groups)
    seconds_at_limit: float = 0.0  # how long those take at the app's rate limits, at least
    guardrails: list[Any] = field(default_factory=list)  # guardrails.Tripped, before overrides
    guardrail_limits: dict[str, Any] = field(default_factory=dict)
    next_watermark: dict[str, str] = field(default_factory=dict, repr=False)
    spool: Path | None = field(default=None, repr=False)
    event_spool: Path | None = field(default=None, repr=False)
    _digest: Any = field(default_factory=hashlib.sha256, repr=False)
    saved_digest: str = field(default="", repr=False)  # a plan rebuilt from its JSON (show)

    def add_to_digest(self, line: str) -> None:
        self._digest.update(line.encode())
        self._digest.update(b"\n")

    @property
    def digest(self) -> str:
        """sha256 over every change, binding a saved plan to the data it was made from."""
        return self.saved_digest or str(self._digest.hexdigest())

    @property
    def changes(self) -> int:
        return sum(self.counts[a.value] for a in Action) + sum(self.events_to_send.values())

    @property
    def state_changes(self) -> bool:
        """A move, a rename or a binding to record, even when no record changes."""
        return bool(self.moved_from or self.stream_renames or self.binding_changes
                    or self.reset_state)

    def read_event_spool(self) -> Iterator[dict[str, Any]]:
        if self.event_spool is None:
            return
        with self.event_spool.open(encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)

    def read_rehash(self) -> Iterator[tuple[str, bytes]]:
        """(external_id, record hash) of records read that need no change: apply stores
        the hashes so the next plan skips them."""
        if self.rehash_spool is None or not self.rehash_spool.exists():
            return
        with self.rehash_spool.open(encoding="utf-8") as f:
            for line in f:
                key, h = json.loads(line)
                yield str(key), bytes.fromhex(h)

    def read_spool(self, deletes: bool | None = None) -> Iterator[RecordChange]:
        """The spooled changes; only deletions (True) or only the rest (False) when asked,
        told apart before parsing (sorted keys put the action first)."""
        if self.spool is None:
            return
        with self.spool.open("rb") as f:
            for line in f:
                if deletes is not None and line.startswith(b'{"a":"delete",') != deletes:
                    continue
                yield RecordChange.from_json(line)

    def summary(self) -> dict[str, Any]:
        """JSON-safe summary: counts, field names, group names, ids of records with issues."""
        return {
            "destination": self.destination,
            "mode": self.mode,
            "model": self.model,
            "counts": {k: self.counts.get(k, 0) for k in
                       ("create", "update", "enrich", "delete", "unchanged", "kept", "skipped")},
            "fields_set": dict(sorted(self.field_sets.items())),
            "fields_removed": dict(sorted(self.field_removals.items())),
            "group_joins": dict(sorted(self.joins.items())),
            "group_leaves": dict(sorted(self.leaves.items())),
            "group_opted_out": dict(sorted(self.opted_out.items())),
            "issues": {"count": self.issue_count,
                       "first": [vars(i) for i in self.issues]},
            "events_to_send": dict(sorted(self.events_to_send.items())),
            "events_delivery_unknown": dict(sorted(self.events_unknown.items())),
            "failed_last_time": {"count": self.failed_last_time,
                                 "first": [vars(i) for i in self.failed_samples]},
            "read_since": self.read_since,
            "full_read_reason": None if self.read_since or self.hashes_compared
            else self.full_read_reason,
            "read_by_key": self.late_records,
            "hashes_compared": self.hashes_compared,
            "compared": self.compared or None,
            "compared_in": self.compared_in or None,
            "rows_read": self.rows_read,
            "data_points": self.data_points,
            "billing": self.billing,
            "requests": self.requests,
            "seconds_at_rate_limit": round(self.seconds_at_limit, 1),
            "guardrails": {"limits": dict(sorted(self.guardrail_limits.items())),
                           "tripped": [vars(t) for t in self.guardrails]},
            "moved_from": self.moved_from or None,
            "binding_changes": list(self.binding_changes),
            "stream_renames": dict(sorted(self.stream_renames.items())),
            "reset_state": self.reset_state,
            "digest": self.digest,
        }


@dataclass(frozen=True)
class RemovedDestination:
    """A destination the state knows and the config no longer declares: its users stay in
    Braze as they are, and its state is kept until `brazecfg state rm`."""

    name: str
    records: int
    event_rows: int


@dataclass
class Plan:
    config_changes: tuple[ConfigChange, ...]
    destinations: tuple[DestinationPlan, ...]
    config_fingerprint: str
    ledger_generation: int
    fingerprints: dict[str, str] = field(default_factory=dict)
    removed_destinations: tuple[RemovedDestination, ...] = ()
    targets: tuple[str, ...] = ()  # a partial plan: only these destinations (--target)
    allowed: frozenset[str] = frozenset()  # guardrails overridden for this run (--allow)

    @property
    def has_changes(self) -> bool:
        return bool(self.config_changes) or any(d.changes or d.state_changes
                                                for d in self.destinations)

    @property
    def data_points(self) -> int:
        return sum(d.data_points for d in self.destinations)

    def blocked(self, allowed: frozenset[str] = frozenset()) -> list[tuple[str, Any]]:
        """(destination, guardrail tripped) pairs that ``allowed`` does not override."""
        return [(d.destination, t) for d in self.destinations for t in d.guardrails
                if t.name not in allowed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "config_fingerprint": self.config_fingerprint,
            "ledger_generation": self.ledger_generation,
            "has_changes": self.has_changes,
            "data_points": self.data_points,
            "config_changes": [{"action": c.action.value, "resource": c.ref, "keys": list(c.keys)}
                               for c in self.config_changes],
            "destinations": [d.summary() for d in self.destinations],
            "removed_destinations": [vars(r) for r in self.removed_destinations],
            "targets": [f"destination/{t}" for t in self.targets],
            "guardrails_allowed": sorted(self.allowed),
            "blocked": [{"destination": d, "guardrail": t.name, "message": t.message}
                        for d, t in self.blocked(self.allowed)],
        }
