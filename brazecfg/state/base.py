"""The state behind two small protocols: what plan reads and what apply writes.

Plan, apply and the CLI talk to the state only through these methods, never through its SQL,
so the backend (a local SQLite file, a PostgreSQL schema, tables in a warehouse) is a setting
in brazecfg.yml. Every backend streams rows in *byte* order of their key (external_id,
row_key), the order of the merge-diff; a backend that cannot is refused, never trusted.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

# 1: records, events, failures, meta; 2: + state id, lease, create intents;
# 3: event rows keep user, name, weight, time (settling); 4: records keep the warehouse's
# record hash (row_hash) and, on SQLite, their field hashes packed as binary
SCHEMA_VERSION = 4


@dataclass(frozen=True, init=False)
class LedgerRecord:
    """What Braze confirmed for one record: a keyed hash per field sent, its synced groups."""

    external_id: str
    fields: dict[str, str] = field(default_factory=dict)  # field -> keyed hash
    groups: frozenset[str] = frozenset()
    # The warehouse's hash of the record's source values when Braze confirmed it (README
    # "How it works"): a filter for what to read, never what decides a send. None: unknown.
    row_hash: bytes | None = None

    def __init__(self, external_id: str, fields: dict[str, str] | None = None,
                 groups: frozenset[str] = frozenset(), row_hash: bytes | None = None) -> None:
        # One is read per record of the state on every plan: filling the instance dict costs
        # half of the frozen dataclass's object.__setattr__ per field. Still frozen.
        d = self.__dict__
        d["external_id"] = external_id
        d["fields"] = {} if fields is None else fields
        d["groups"] = groups
        d["row_hash"] = row_hash


@dataclass(frozen=True, init=False)  # LedgerRecord's __init__
class StoredKey(LedgerRecord):
    """A record read without its field hashes (key, groups and row hash only): the light
    read of plans that compare record hashes. Load the full record before judging it."""


@dataclass(frozen=True)
class StateTable:
    """Where a state's records of one destination are, for a warehouse that can read them
    in its own SQL and compare record hashes there (README "How it works", the diff in the
    warehouse). ``attach``: a SQLite file to attach (the local state, or a SQLite warehouse's
    own file), else the table is in the database of warehouse app ``app``. ``groups``: the
    column holding a record's groups (``fields`` in the compact layout, packing.py)."""

    dialect: str
    table: str
    schema: str | None
    destination: Any  # what the destination column holds for it (a number when compact)
    groups: str
    attach: Path | None = None
    app: str | None = None


@dataclass(frozen=True)
class Failure:
    external_id: str
    reason: str


@dataclass(frozen=True)
class EventMark:
    """An event row about to leave: its key and what settling needs to find it in Braze."""

    stream: str
    row_key: str
    user: str
    name: str  # the event name, or a purchase's product_id (what Braze counts by)
    weight: int  # a purchase's quantity; 1 for events
    time: str


@dataclass(frozen=True)
class EventState:
    """One event row as the state knows it (for settling)."""

    destination: str
    stream: str
    row_key: str
    state: str
    user: str | None
    name: str | None
    weight: int | None
    time: str | None
    at: str


# What mark_sending replaced, for restore_events: (stream, row_key) -> (state, reason) or
# None when the state had no row for the key.
Previous = dict[tuple[str, str], "tuple[str, str | None] | None"]


@dataclass(frozen=True)
class StateIdentity:
    """Which state this is: the lockfile records it, so a plan can tell a missing or swapped
    state from an empty one. ``state_id`` is a UUID made once, when the state is created
    (None: there is no state yet)."""

    backend: str
    state_id: str | None
    generation: int


@dataclass(frozen=True)
class LockInfo:
    """The lease on a state: who holds it, since when, until when (epoch milliseconds)."""

    lock_id: str
    user: str
    host: str
    pid: int
    command: str
    acquired_ms: int
    expires_ms: int
    fence: int

    def describe(self, now_ms: int) -> str:
        age = max(0, now_ms - self.acquired_ms) // 1000
        left = (self.expires_ms - now_ms) // 1000
        expiry = f"expires in {left}s" if left >= 0 else f"expired {-left}s ago"
        return (f"{self.user}@{self.host}, pid {self.pid}, running `{self.command}` for "
                f"{_age(age)} (lock id {self.lock_id}, {expiry})")


def _age(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m {seconds % 60}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"


@runtime_checkable
class StateReader(Protocol):
    """What plan needs. A missing state reads as empty (plan never creates one)."""

    @property
    def identity(self) -> StateIdentity: ...
    @property
    def schema_version(self) -> int: ...
    @property
    def generation(self) -> int: ...
    @property
    def key_check(self) -> str | None: ...
    def describe(self) -> str: ...
    def meta(self, key: str) -> str | None: ...
    def watermark(self, destination: str) -> dict[str, str] | None: ...
    def stream(self, destination: str, batch_size: int = 5000) -> Iterator[LedgerRecord]: ...
    def count(self, destination: str) -> int: ...
    def destinations(self) -> list[str]: ...
    def failures(self, destination: str, limit: int | None = None
                 ) -> tuple[int, list[Failure]]: ...
    def stream_events(self, destination: str, stream: str, batch_size: int = 5000
                      ) -> Iterator[tuple[str, str]]: ...
    def event_states(self, destination: str) -> dict[str, int]: ...
    def stream_intents(self, destination: str) -> Iterator[str]: ...
    def close(self) -> None: ...


@runtime_checkable
class StateWriter(Protocol):
    """What apply writes, each call one transaction. Safe to call from worker threads. When
    the state was opened under a lease, every call first checks (inside its transaction) that
    the lease is still held, so a process whose lease expired or was force-unlocked gets a
    StateError instead of writing."""

    def commit(self, destination: str, *, upserts: Iterable[LedgerRecord] = (),
               deletes: Iterable[str] = (), failures: Iterable[Failure] = ()) -> None: ...
    def update_groups(self, destination: str, external_ids: Iterable[str], group: str, *,
                      member: bool) -> None: ...
    def mark_events(self, destination: str, stream: str,
                    states: Iterable[tuple[str, str, str | None]]) -> None: ...
    def set_watermark(self, destination: str, mark: dict[str, str]) -> None: ...
    def set_key_check(self, value: str) -> None: ...
    def set_meta(self, key: str, value: str | None) -> None: ...
    def forget_destination(self, destination: str) -> None: ...
    def rename_destination(self, old: str, new: str) -> None: ...
    def rename_stream(self, destination: str, old: str, new: str) -> None: ...
    def add_intents(self, destination: str, external_ids: Iterable[str]) -> None: ...
    def clear_intents(self, destination: str, external_ids: Iterable[str]) -> None: ...
