"""Events and purchases: each source row reaches Braze exactly once.

Braze never deduplicates events or purchases, so the ledger remembers every row key it sent
and its state: ``sent`` (Braze confirmed), ``failed`` (Braze rejected the object: it was not
processed, so sending it again is safe), ``sending`` (marked just before a request; left
behind by a crash) and ``unknown`` (a 5xx, a timeout or a dropped connection: Braze may or may
not have it). Rows in the last two states are never resent on their own: plan reports them
and ``apply --resend-unknown`` sends them again when the user decides to.

Like the record diff, this is a sorted merge of source rows and ledger keys, in key order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import IO, Any

from brazecfg.model.resources import EventSpec
from brazecfg.plan.definition import ISSUE_SAMPLE_SIZE, DestinationPlan, Issue
from brazecfg.plan.merge import merge_join, ordered
from brazecfg.plan.values import MAX_STRING, ValueProblem, normalise, plain_number
from brazecfg.warehouse.base import EventRow

UNSURE = ("sending", "unknown")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (Decimal, float)) and not isinstance(value, bool):
        return plain_number(value)  # never warehouse float noise (447.71999999999997)
    if isinstance(value, (datetime, date)):
        return normalise(value, "datetime")
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value


def build_object(spec: EventSpec, row: EventRow, update_existing_only: bool) -> dict[str, Any]:
    """The /users/track event or purchase object for a row. Raises ValueProblem."""
    v = row.values
    time = normalise(v.get(spec.time), "datetime")
    if time is None:
        raise ValueProblem(f"no time in column {spec.time}")
    obj: dict[str, Any] = {"external_id": row.user, "time": time}
    if spec.type == "purchase":
        product = v.get(spec.product_id or "")
        if product is None or str(product) == "" or len(str(product)) > MAX_STRING:
            raise ValueProblem("product_id is empty or longer than 255 characters")
        currency = spec.currency_code or v.get(spec.currency or "")
        if not isinstance(currency, str) or len(currency.strip()) != 3:
            raise ValueProblem("currency must be a three-letter ISO 4217 code")
        price = normalise(v.get(spec.price or ""), "float")
        if price is None:
            raise ValueProblem("price is empty")
        obj.update(product_id=str(product), currency=currency.strip().upper(), price=price)
        if spec.quantity:
            qty = normalise(v.get(spec.quantity), "integer") or 1
            if not 1 <= qty <= 100:
                raise ValueProblem("quantity must be between 1 and 100")
            obj["quantity"] = qty
    else:
        obj["name"] = spec.name
    props = {name: _jsonable(v.get(col)) for name, col in sorted(spec.properties.items())
             if v.get(col) is not None}
    if props:
        obj["properties"] = props
    if update_existing_only:
        obj["_update_existing_only"] = True
    return obj


def merge_keys(rows: Iterable[EventRow], known: Iterable[tuple[str, str]]
               ) -> Iterator[tuple[EventRow, str | None]]:
    """Each source row with the state's delivery state for its key (None: never sent).

    Both streams go through the one merge primitive, which refuses out-of-order input: an
    unordered stream would take a row already sent for a new one and send it twice."""
    source = ordered(rows, _event_key, what="event rows")
    state = ordered(known, _known_key, what="event rows", state=True)
    for row, k in merge_join(source, state, _event_key, _known_key):
        if row is not None:
            yield row, None if k is None else k[1]


def _event_key(row: EventRow) -> str:
    return row.key


def _known_key(item: tuple[str, str]) -> str:
    return item[0]


def diff_events(plan: DestinationPlan, spec: EventSpec, rows: Iterable[EventRow],
                known: Iterable[tuple[str, str]], *, update_existing_only: bool,
                resend_unknown: bool, spool: IO[str] | None, stream: str | None = None,
                assume_unknown: bool = False) -> None:
    """Count (and spool, for apply) the rows of one event stream that must be sent.

    ``stream`` is the stream's identity in the state (default: its name). A row with no key
    cannot be remembered, so it is reported and never sent (sending it would either repeat
    it on every run or hide every other key-less row).

    ``assume_unknown`` (starting over from an empty state while the lockfile says events were
    sent): a row the state does not know may have reached Braze, so it is counted as delivery
    unknown and recorded as such on apply, never sent on its own."""
    stream = stream or spec.name
    previous: str | None = None

    def keyed() -> Iterator[EventRow]:
        for row in rows:
            if row.key == "":
                _issue(plan, Issue("", spec.name, f"an event row has an empty key ({spec.key}); "
                                   "it is not sent"))
                continue
            yield row

    for row, state in merge_keys(keyed(), known):
        if row.key == previous:
            _issue(plan, Issue(row.key, spec.name, "duplicate event key; only the first row is used"))
            continue
        previous = row.key
        if state == "sent":
            continue
        if state is None and assume_unknown:
            plan.events_unknown[spec.name] += 1
            if spool is not None:
                spool.write(json.dumps({"stream": stream, "key": row.key, "mark": "unknown"},
                                       separators=(",", ":"), ensure_ascii=False,
                                       sort_keys=True) + "\n")
            plan.add_to_digest(f"{stream}\x00{row.key}\x00unknown")
            continue
        if state in UNSURE:
            plan.events_unknown[spec.name] += 1
            if not resend_unknown:
                continue
        try:
            obj = build_object(spec, row, update_existing_only)
        except ValueProblem as problem:
            _issue(plan, Issue(row.key, spec.name, str(problem)))
            continue
        plan.events_to_send[spec.name] += 1
        plan.data_points += 1 + len(obj.get("properties", {}))  # the event and each property
        if spool is not None:
            spool.write(json.dumps({"stream": stream, "key": row.key, "type": spec.type,
                                    "obj": obj}, separators=(",", ":"), ensure_ascii=False,
                                   sort_keys=True) + "\n")
        plan.add_to_digest(f"{stream}\x00{row.key}")


def _issue(plan: DestinationPlan, issue: Issue) -> None:
    plan.issue_count += 1
    if len(plan.issues) < ISSUE_SAMPLE_SIZE:
        plan.issues.append(issue)
