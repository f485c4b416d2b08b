"""The ledger's delivery writes: rows marked in flight and put back exactly as they were,
create intents, and writes from several threads at once."""

from __future__ import annotations

import threading
from pathlib import Path

from brazecfg.state.ledger import EventMark, Ledger, LedgerRecord


def mark(key: str) -> EventMark:
    return EventMark("s", key, "u1", "viewed", 1, "2026-11-01T00:00:00Z")


def states(led: Ledger) -> dict[str, str]:
    return dict(led.stream_events("d", "s"))


def test_restore_puts_rows_back_as_they_were(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite", writable=True) as led:
        led.mark_events("d", "s", [("a", "unknown", "500"), ("b", "unsent", "settled")])
        previous = led.mark_sending("d", [mark("a"), mark("b"), mark("c")])
        assert states(led) == {"a": "sending", "b": "sending", "c": "sending"}
        assert previous == {("s", "a"): ("unknown", "500"), ("s", "b"): ("unsent", "settled"),
                            ("s", "c"): None}
        led.restore_events("d", previous)
        # Unknown stays unknown (an earlier attempt may have arrived); a new row is new again.
        assert states(led) == {"a": "unknown", "b": "unsent"}
        led.mark_sending("d", [mark("a")])
        led.mark_events("d", "s", [("a", "sent", None)])
        rows = list(led.stream_unsure_users(["d"]))
        assert rows == []  # nothing in flight or unknown: nothing to settle
        led.mark_sending("d", [mark("b")])
        (sent, sending) = sorted(led.stream_unsure_users(["d"]), key=lambda r: r.row_key)
        assert (sent.state, sent.user, sent.name) == ("sent", "u1", "viewed")  # kept by upsert
        assert (sending.row_key, sending.state) == ("b", "sending")


def test_intents_added_cleared_and_streamed_in_order(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite", writable=True) as led:
        assert led.add_intents("d", ["b", "a"]) == ["b", "a"]
        assert led.add_intents("d", ["a", "c"]) == ["c"]  # only the new ones
        led.commit("d", upserts=[LedgerRecord("a")])
        led.clear_intents("d")  # those the ledger now records
        assert list(led.stream_intents("d")) == ["b", "c"]
        led.clear_intents("d", ["c"])
        assert list(led.stream_intents("d")) == ["b"]


def test_writes_from_many_threads_all_land(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite", writable=True) as led:
        def work(n: int) -> None:
            for i in range(20):
                led.mark_sending("d", [mark(f"{n}-{i}")])
                led.commit("d", upserts=[LedgerRecord(f"{n}-{i}")])

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(states(led)) == 160 and led.count("d") == 160
