"""Create intents in the diff: users Braze may have though the ledger has no record of them.

Apply records a new user's id (an intent) right before its create request leaves, and the
ledger gets the record only once Braze confirmed it. A crash in between leaves an intent and
no record. Such an id must not be forgotten: if the user left the warehouse meanwhile, sync
mode must still delete it from Braze. So the diff reads intents as ledger records with no
fields (``Intent``): gone from the warehouse, they are planned like any record that left (a
delete in sync mode); still in the warehouse, they are planned as creates.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from brazecfg.errors import StateError
from brazecfg.state.ledger import LedgerRecord


@dataclass(frozen=True)
class Intent(LedgerRecord):
    """A create that may have reached Braze, never confirmed: no fields, no groups."""


def with_intents(records: Iterator[LedgerRecord], intents: Iterator[str]
                 ) -> Iterator[LedgerRecord]:
    """Ledger records, plus an Intent for each intent id the ledger has no record of; both
    inputs and the output in external_id byte order. Out-of-order intents are refused."""
    rec = next(records, None)
    previous: str | None = None
    for ext_id in intents:
        if previous is not None and ext_id <= previous:
            raise StateError(f"the ledger returned create intents out of key order ({ext_id!r} "
                             f"after {previous!r}); its collation must compare bytes")
        previous = ext_id
        while rec is not None and rec.external_id < ext_id:
            yield rec
            rec = next(records, None)
        if rec is not None and rec.external_id == ext_id:
            continue  # confirmed: the record is the truth
        yield Intent(ext_id)
    while rec is not None:
        yield rec
        rec = next(records, None)
