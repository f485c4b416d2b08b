"""Event streams: each row once; uncertain deliveries are reported, not resent."""

from __future__ import annotations

import io
import json

from brazecfg.model.resources import EventSpec
from brazecfg.plan.definition import DestinationPlan
from brazecfg.plan.events import diff_events
from brazecfg.warehouse.base import EventRow

SPEC = EventSpec(name="purchase", source="purchases", type="purchase", key="id", time="at",
                 product_id="product", price="amount", currency_code="usd",
                 properties={"status": "status"})


def rows(*keys: str) -> list[EventRow]:
    return [EventRow(k, "u" + k, {"at": "2026-01-01 10:00:00", "product": "p", "amount": 2,
                                  "status": "paid"}) for k in keys]


def run(source: list[EventRow], known: list[tuple[str, str]], resend: bool = False
        ) -> tuple[DestinationPlan, list[dict[str, object]]]:
    plan = DestinationPlan("d", "sync", "users")
    out = io.StringIO()
    diff_events(plan, SPEC, source, iter(known), update_existing_only=False,
                resend_unknown=resend, spool=out)
    return plan, [json.loads(x) for x in out.getvalue().splitlines()]


def test_new_rows_are_sent_as_braze_purchases() -> None:
    plan, sent = run(rows("1", "2"), [])
    assert [s["key"] for s in sent] == ["1", "2"]
    assert sent[0]["obj"] == {"external_id": "u1", "time": "2026-01-01T10:00:00Z",
                              "product_id": "p", "currency": "USD", "price": 2,
                              "properties": {"status": "paid"}}
    assert plan.events_to_send["purchase"] == 2


def test_sent_rows_are_never_sent_again_and_failed_ones_are() -> None:
    plan, sent = run(rows("1", "2", "3", "4"), [("1", "sent"), ("2", "failed"), ("9", "sent")])
    assert [s["key"] for s in sent] == ["2", "3", "4"]


def test_unknown_and_sending_rows_are_reported_not_resent_unless_asked() -> None:
    plan, sent = run(rows("1", "2", "3"), [("1", "unknown"), ("2", "sending")])
    assert [s["key"] for s in sent] == ["3"]
    assert plan.events_unknown["purchase"] == 2
    plan, sent = run(rows("1", "2", "3"), [("1", "unknown"), ("2", "sending")], resend=True)
    assert [s["key"] for s in sent] == ["1", "2", "3"]


def test_bad_rows_are_reported_and_skipped() -> None:
    bad = EventRow("5", "u5", {"at": None, "product": "p", "amount": 1})
    plan, sent = run(rows("1") + [bad], [])
    assert [s["key"] for s in sent] == ["1"]
    assert plan.issue_count == 1 and plan.issues[0].external_id == "5"
