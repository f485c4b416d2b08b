"""Create intents in the diff: users Braze may have though the ledger has no record of them.

Apply records a new user's id (an intent) right before its create request leaves, and the
ledger gets the record only once Braze confirmed it. A crash in between leaves an intent and
no record. Such an id must not be forgotten: if the user left the warehouse meanwhile, sync
mode must still delete it from Braze. So the diff reads intents as ledger records with no
fields (``Intent``): gone from the warehouse, they are planned like any record that left (a
delete in sync mode); still in the warehouse, they are planned as creates.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from brazecfg.plan.merge import merge_join, ordered
from brazecfg.state.ledger import LedgerRecord


@dataclass(frozen=True, init=False)  # LedgerRecord's __init__
class Intent(LedgerRecord):
    """A create that may have reached Braze, never confirmed: no fields, no groups."""


def with_intents(records: Iterable[LedgerRecord], intents: Iterable[str]
                 ) -> Iterator[LedgerRecord]:
    """Ledger records, plus an Intent for each intent id the ledger has no record of; both
    inputs and the output in external_id byte order, through the one merge primitive (which
    refuses out-of-order input)."""
    recs = ordered(records, _record_key, what="records", state=True)
    ids = ordered(intents, _id, what="create intents", state=True)
    for rec, intent in merge_join(recs, ids, _record_key, _id):
        if rec is not None:
            yield rec  # confirmed: the record is the truth
        elif intent is not None:
            yield Intent(intent)


def _record_key(record: LedgerRecord) -> str:
    return record.external_id


def _id(key: str) -> str:
    return key
