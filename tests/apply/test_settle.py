"""The settling rules on their own (apply/settle.py:decide): when Braze's per-user count
decides an unknown row, and every case where it must not."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from brazecfg.apply.settle import decide
from brazecfg.braze.client import ExportedUser
from brazecfg.state.ledger import EventState

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
AN_HOUR_AGO = (NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
CREATED = (NOW - timedelta(days=2)).isoformat()


def row(state: str, *, weight: int = 1, at: str = AN_HOUR_AGO,
        time: str = "2026-11-30T00:00:00Z", name: str = "sku-1") -> EventState:
    return EventState("d", "s", f"k{id(object())}", state, "u1", name, weight, time, at)


def user(count: int, created: str = CREATED) -> ExportedUser:
    return ExportedUser(created, {("purchase", "sku-1"): count})


def verdict(rows: list[EventState], who: ExportedUser | None, lag: float = 300) -> str:
    return decide(rows, who, kind="purchase", now=NOW, settle_after=lag)[0]


def test_equal_to_confirmed_means_missing_and_to_all_means_arrived() -> None:
    rows = [row("sent"), row("sent"), row("unknown"), row("sending")]
    assert verdict(rows, user(2)) == "missing"
    assert verdict(rows, user(4)) == "arrived"
    assert verdict(rows, user(3)) == "undecided"  # one of two arrived: cannot say which
    assert verdict(rows, user(5)) == "undecided"  # another sender
    assert verdict(rows, user(1)) == "undecided"  # fewer than confirmed


def test_quantities_decide_only_when_both_readings_of_the_count_agree() -> None:
    rows = [row("sent", weight=3), row("unknown", weight=2)]
    # Braze may count a purchase of quantity 3 as one or as three.
    assert verdict(rows, user(1)) == "undecided"  # "missing" by objects, nothing by quantity
    assert verdict(rows, user(5)) == "undecided"  # "arrived" by quantity only
    assert verdict([row("unknown", weight=2)], user(0)) == "missing"  # 0 either way


def test_recent_old_recreated_and_absent_users_are_never_decided() -> None:
    rows = [row("sent"), row("unknown")]
    assert verdict(rows, None) == "undecided"
    just_now = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert verdict([row("sent"), row("unknown", at=just_now)], user(1)) == "undecided"
    assert verdict([row("sent"), row("unknown", at=just_now)], user(1), lag=0) == "missing"
    old = [row("sent", time="2026-06-01T00:00:00Z"), row("unknown")]
    assert verdict(old, user(1)) == "undecided"  # outside Braze's 90-day export window
    recreated = user(1, created=NOW.isoformat())
    assert verdict(rows, recreated) == "undecided"  # profile newer than the confirmed row
    reason = decide(rows, recreated, kind="purchase", now=NOW, settle_after=300)[1]
    assert "re-created" in reason
