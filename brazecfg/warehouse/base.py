"""The warehouse interface the planner depends on.

A warehouse computes, for one model, every property value and every group flag per record in
one query (or a few), and streams the rows ordered by the record key *as text in byte order*
(the ledger sorts the same way; the merge-diff relies on it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from brazecfg.state.base import StateTable


@dataclass(frozen=True, init=False)
class ModelRow:
    """One record of a model as the warehouse computed it.

    key: the primary key rendered as text (Braze external ids are strings).
    values: property name -> raw database value (None when empty); every property of the model.
    groups: names of the model's groups this record belongs to.
    """

    key: str
    values: dict[str, Any]
    groups: frozenset[str]
    row_hash: bytes | None = None  # the warehouse's record hash (None: not computed here)

    def __init__(self, key: str, values: dict[str, Any], groups: frozenset[str],
                 row_hash: bytes | None = None) -> None:
        # One per row read: the instance dict filled directly costs half of the frozen
        # dataclass's object.__setattr__ per field. Still frozen.
        d = self.__dict__
        d["key"] = key
        d["values"] = values
        d["groups"] = groups
        d["row_hash"] = row_hash


class Warehouse(Protocol):
    app_name: str

    def stream_model(
        self, model: str, *, now: datetime, batch_size: int = 5000,
        changed_since: datetime | None = None, only_keys: list[str] | None = None,
        hash_kind: str = "values",
    ) -> Iterator[ModelRow]:
        """Rows of every record of ``model``, ordered by key text (byte order), streamed.

        ``now`` anchors relative dates ("within 30 days"), so a plan is reproducible.
        ``changed_since`` (incremental reads) limits rows to records whose sources changed since;
        ``only_keys`` to the records with these keys (as text). ``hash_kind``: what each
        row's record hash covers ("values" or "counts", compile.HASH_VALUES/HASH_COUNTS), or
        "none" (HASH_NONE): no record hash, ``row_hash`` None."""
        ...

    def hashes_supported(self) -> bool:
        """Whether this warehouse computes record hashes (``stream_hashes``)."""
        ...

    def stream_hashes(self, model: str, *, now: datetime, batch_size: int = 20000,
                      kind: str = "values"
                      ) -> Iterator[tuple[str, bytes | None, frozenset[str] | None]]:
        """Every record key of ``model`` with its record hash of ``kind`` and groups, in key
        byte order. "values": every property and group is computed in the warehouse; only
        the key, the hash and the group flags leave it. "counts": the hash of the record's
        related-row counts, groups None (not computed)."""
        ...

    def joins_state(self, state: StateTable | None, kind: str = "counts") -> bool:
        """Whether this warehouse reads the state's records (``Ledger.joinable``) in its own
        SQL to run the diff of record hashes of ``kind`` there."""
        ...

    def stream_hash_changes(self, model: str, *, now: datetime, state: StateTable,
                            batch_size: int = 20000, kind: str = "counts"
                            ) -> Iterator[tuple[str | None, bytes | None, str | None, Any,
                                                bytes | None]]:
        """The keys whose record hash of ``kind`` ("counts": related-row counts; "values")
        differs from the state's (new, changed, gone, repeated), in key byte order: (key,
        hash) on the warehouse's side and (key, groups column, row hash) on the state's,
        None where a side has no such key."""
        ...

    def stream_events(self, model: str, source: str, *, key: str, user: str, columns: list[str],
                      since: datetime | None = None, time_column: str | None = None,
                      batch_size: int = 5000) -> Iterator[EventRow]:
        """Rows of ``source`` ordered by ``key`` as text (byte order), with ``columns``, only
        for users that are records of ``model`` (an event never resurrects a deleted user),
        and only rows whose ``time_column`` >= ``since`` when given."""
        ...

    def max_updated_at(self, model: str) -> datetime | None:
        """The warehouse's greatest ``updated_at`` over the sources of ``model`` that declare
        one (aware, UTC), or None. Read it before ``stream_model`` to set a watermark from the
        warehouse's own clock."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class EventRow:
    """One row of an event source: its own key (text), the user's key (text), raw values."""

    key: str
    user: str
    values: dict[str, Any]
