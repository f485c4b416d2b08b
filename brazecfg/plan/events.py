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
from brazecfg.plan.values import MAX_STRING, ValueProblem, normalise
from brazecfg.warehouse.base import EventRow

UNSURE = ("sending", "unknown")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
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


def merge_keys(rows: Iterator[EventRow], known: Iterator[tuple[str, str]]
               ) -> Iterator[tuple[EventRow, str | None]]:
    """Each source row with the ledger's state for its key (None: never sent)."""
    k = next(known, None)
    for row in rows:
        while k is not None and k[0] < row.key:
            k = next(known, None)  # rows gone from the source: nothing to do
        if k is not None and k[0] == row.key:
            yield row, k[1]
            k = next(known, None)
        else:
            yield row, None


def diff_events(plan: DestinationPlan, spec: EventSpec, rows: Iterable[EventRow],
                known: Iterator[tuple[str, str]], *, update_existing_only: bool,
                resend_unknown: bool, spool: IO[str] | None) -> None:
    """Count (and spool, for apply) the rows of one event stream that must be sent."""
    previous: str | None = None
    for row, state in merge_keys(iter(rows), known):
        if row.key == previous:
            _issue(plan, Issue(row.key, spec.name, "duplicate event key; only the first row is used"))
            continue
        previous = row.key
        if state == "sent":
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
        if spool is not None:
            spool.write(json.dumps({"stream": spec.name, "key": row.key, "type": spec.type,
                                    "obj": obj}, separators=(",", ":"), ensure_ascii=False,
                                   sort_keys=True) + "\n")
        plan.add_to_digest(f"{spec.name}\x00{row.key}")


def _issue(plan: DestinationPlan, issue: Issue) -> None:
    plan.issue_count += 1
    if len(plan.issues) < ISSUE_SAMPLE_SIZE:
        plan.issues.append(issue)
