"""One contract for every state backend: local SQLite, PostgreSQL, and tables in a warehouse
(SQLite, DuckDB, PostgreSQL), all real databases. What plan reads and apply writes must mean
the same on each, including byte order, transactions, the lease and its fencing."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from brazecfg.errors import StateError
from brazecfg.state.backends import Backend
from brazecfg.state.base import SCHEMA_VERSION, StateReader, StateWriter
from brazecfg.state.ledger import Failure, LeaseLost, Ledger, LedgerRecord
from brazecfg.state.lock import lease
from tests.state.backends import KINDS, backend

KEYS = ["b", "a", "é", "B", "10", "9", "z", "É", "😀", "a b", "ab", "~"]


@pytest.fixture(params=KINDS)
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """make(ttl=60) -> a fresh Backend of the parametrized kind (own PostgreSQL schema)."""
    kind = request.param
    pg = request.getfixturevalue("postgres_url") if "postgres" in kind else None
    schema = f"s_{uuid.uuid4().hex[:10]}"

    def _make(ttl: float = 60.0) -> Backend:
        return backend(kind, tmp_path, pg, schema=schema, ttl=ttl)

    yield _make


def test_protocols_are_met(make: object, tmp_path: Path) -> None:
    with Ledger(backend=make(), writable=True) as led:  # type: ignore[operator]
        assert isinstance(led, StateReader) and isinstance(led, StateWriter)
        assert led.schema_version == SCHEMA_VERSION


def test_records_and_events_stream_in_byte_order(make: object) -> None:
    with Ledger(backend=make(), writable=True) as led:  # type: ignore[operator]
        led.commit("d", upserts=[LedgerRecord(k, {"f": "h"}, frozenset({"g"})) for k in KEYS])
        assert [r.external_id for r in led.stream("d", batch_size=3)] == sorted(KEYS)
        assert next(iter(led.stream("d"))).groups == frozenset({"g"})
        led.mark_events("d", "s", [(k, "sent", None) for k in KEYS])
        assert [k for k, _ in led.stream_events("d", "s", batch_size=5)] == sorted(KEYS)
        assert led.count("d") == len(KEYS) and led.count("other") == 0
        assert led.destinations() == ["d"]
        assert led.event_states("d") == {"sent": len(KEYS)}


def test_failures_generation_and_intents(make: object) -> None:
    with Ledger(backend=make(), writable=True) as led:  # type: ignore[operator]
        led.add_intents("d", ["3", "1", "2"])
        assert list(led.stream_intents("d")) == ["1", "2", "3"]
        g = led.generation
        led.commit("d", upserts=[LedgerRecord("1")], failures=[Failure("2", "bad email")])
        assert led.generation == g + 1
        assert led.failures("d") == (1, [Failure("2", "bad email")])
        assert list(led.stream_intents("d")) == ["3"]  # confirmed or refused: no longer pending
        led.clear_intents("d", ["3"])
        assert list(led.stream_intents("d")) == []
        led.commit("d", upserts=[LedgerRecord("2", {"email": "x"})])
        assert led.failures("d") == (0, [])
        led.update_groups("d", ["2", "missing"], "vip", member=True)
        assert led.record("d", "2") == LedgerRecord("2", {"email": "x"}, frozenset({"vip"}))
        led.commit("d", deletes=["1"])
        assert [r.external_id for r in led.stream("d")] == ["2"]
        led.commit("e", failures=[Failure(k, "r") for k in KEYS])
        assert led.failures("e", limit=2) == (len(KEYS), [Failure(k, "r") for k in sorted(KEYS)[:2]])
        assert led.failures("e", limit=0) == (len(KEYS), [])


def test_meta_identity_and_reopen(make: object) -> None:
    b = make()  # type: ignore[operator]
    with Ledger(backend=b, writable=True) as led:
        g = led.generation
        led.set_key_check("abc")
        led.set_watermark("d", {"since": "x", "fingerprint": "f"})
        led.set_meta("binding:d", "w1")
        assert led.generation == g  # metadata never makes a saved plan stale
        first = led.identity
        assert first.state_id and first.backend == b.name
    with Ledger(backend=b, writable=False) as led:
        assert led.identity.state_id == first.state_id
        assert (led.key_check, led.meta("binding:d")) == ("abc", "w1")
        assert led.watermark("d") == {"since": "x", "fingerprint": "f"}
        with pytest.raises(RuntimeError):
            led.commit("d", upserts=[LedgerRecord("1")])


def test_a_missing_state_reads_as_empty_and_is_not_created(make: object) -> None:
    b = make()  # type: ignore[operator]
    with Ledger(backend=b, writable=False) as led:
        assert list(led.stream("d")) == [] and led.generation == 0
        assert led.identity.state_id is None and led.lock_info() is None
    with Ledger(backend=b, writable=False) as led:  # still nothing: plan created nothing
        assert led.schema_version == 0


def test_a_failed_transaction_keeps_the_state(make: object) -> None:
    with Ledger(backend=make(), writable=True) as led:  # type: ignore[operator]
        led.commit("d", upserts=[LedgerRecord("1", {"a": "1"})])
        g = led.generation

        def records() -> Iterator[LedgerRecord]:
            yield LedgerRecord("2")
            raise RuntimeError("crash mid-commit")

        with pytest.raises(RuntimeError):
            led.commit("d", upserts=records())
        assert [r.external_id for r in led.stream("d")] == ["1"] and led.generation == g


def test_the_same_id_twice_in_one_batch_keeps_the_last(make: object) -> None:
    with Ledger(backend=make(), writable=True) as led:  # type: ignore[operator]
        led.commit("d", upserts=[LedgerRecord("1", {"a": "x"}), LedgerRecord("1", {"a": "y"})],
                   failures=[Failure("2", "first"), Failure("2", "second")], deletes=["3", "3"])
        assert list(led.stream("d")) == [LedgerRecord("1", {"a": "y"})]
        assert led.failures("d") == (1, [Failure("2", "second")])
        led.mark_events("d", "s", [("k", "sending", None), ("k", "sent", None)])
        assert list(led.stream_events("d", "s")) == [("k", "sent")]


def test_batches_larger_than_one_statement_replace_delete_and_clear_every_id(
        make: object) -> None:
    """commit, add_intents and the deletes go 500 ids a statement in the driver's own SQL:
    every id of a batch of 1,201 (three statements, the last short) is written, replaced,
    cleared or deleted, a quote or a percent sign in an id included."""
    ids = [f"u{i:04d}" for i in range(1198)] + ["o'brien", "100%", "%s"]
    with Ledger(backend=make(), writable=True) as led:  # type: ignore[operator]
        assert led.add_intents("d", ids[:600]) == ids[:600]
        assert led.add_intents("d", ids) == ids[600:]  # the first 600 were intents already
        led.commit("d", upserts=[LedgerRecord(i, {"f": "0123456789abcdef"}, frozenset({"g"}),
                                              b"\x00\x01") for i in ids])
        assert list(led.stream_intents("d")) == []  # cleared by the confirmation
        led.commit("d", upserts=[LedgerRecord(i, {"f": "fedcba9876543210"}) for i in ids[1:]],
                   failures=[Failure(ids[0], "bad email")])
        got = {r.external_id: r for r in led.stream("d")}
        assert sorted(got) == sorted(ids)
        # the rejected record keeps what Braze confirmed before; the others were replaced
        assert got.pop(ids[0]) == LedgerRecord(ids[0], {"f": "0123456789abcdef"},
                                               frozenset({"g"}), b"\x00\x01")
        assert {r.fields["f"] for r in got.values()} == {"fedcba9876543210"}
        assert {(r.groups, r.row_hash) for r in got.values()} == {(frozenset(), None)}
        assert led.failures("d")[0] == 1
        led.commit("d", deletes=ids[1:1101])
        assert sorted(r.external_id for r in led.stream("d")) == sorted([ids[0], *ids[1101:]])
        assert led.count("d") == len(ids) - 1100


def test_renames_and_forget(make: object) -> None:
    with Ledger(backend=make(), writable=True) as led:  # type: ignore[operator]
        led.commit("old", upserts=[LedgerRecord("1")], failures=[Failure("2", "x")])
        led.mark_events("old", "s1", [("r1", "sent", None)])
        led.set_watermark("old", {"since": "t"})
        led.rename_destination("old", "new")
        assert led.count("new") == 1 and led.count("old") == 0
        assert led.watermark("new") == {"since": "t"} and led.watermark("old") is None
        led.rename_stream("new", "s1", "s2")
        assert list(led.stream_events("new", "s2")) == [("r1", "sent")]
        led.commit("other", upserts=[LedgerRecord("9")])
        with pytest.raises(StateError, match="already holds"):
            led.rename_destination("other", "new")
        led.forget_destination("new")
        assert led.known_destinations() == ["other"]


def test_mark_events_from_many_threads(make: object) -> None:
    with Ledger(backend=make(), writable=True) as led:  # type: ignore[operator]
        def work(n: int) -> None:
            for i in range(5):
                led.mark_events("d", "s", [(f"{n}-{i}-{j}", "sending", None) for j in range(10)])

        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert led.event_states("d") == {"sending": 300}


def test_the_lease_excludes_fences_and_expires(make: object) -> None:
    b = make(ttl=1.5)  # type: ignore[operator]
    with Ledger(backend=b, writable=True) as a, Ledger(backend=b, writable=True) as other:
        with lease(a, "brazecfg apply"):
            held = other.try_acquire({"user": "u", "host": "h", "pid": 1, "command": "c"}, 1.5)
            assert held is not None and held.command == "brazecfg apply"
            with pytest.raises(StateError, match="locked by .*pid"):
                with lease(other, "brazecfg apply"):
                    pass
            time.sleep(2.0)  # the heartbeat keeps the lease alive past its TTL
            a.commit("d", upserts=[LedgerRecord("1")])
        # released: the other one takes it at once
        assert other.try_acquire({"user": "u", "host": "h", "pid": 1, "command": "c"}, 1.0) is None
        other.commit("d", upserts=[LedgerRecord("2")])
        # without a heartbeat the lease expires, and the expired holder cannot write
        time.sleep(1.3)
        with pytest.raises(LeaseLost, match="lock was lost.*confirmed before is kept"):
            other.commit("d", upserts=[LedgerRecord("3")])
        assert [r.external_id for r in a.stream("d")] == ["1", "2"]


def test_force_unlock_fences_the_holder(make: object) -> None:
    b = make()  # type: ignore[operator]
    with Ledger(backend=b, writable=True) as a, Ledger(backend=b, writable=True) as admin:
        with lease(a, "brazecfg apply"):
            info = admin.lock_info()
            assert info is not None and info.lock_id == a.lease_id
            with pytest.raises(StateError, match="no lock"):
                admin.force_unlock("not-the-id")
            admin.force_unlock(info.lock_id)
            assert admin.lock_info() is None
            with pytest.raises(LeaseLost):
                a.mark_events("d", "s", [("r", "sending", None)])
        assert a.event_states("d") == {}


def test_export_and_replace_round_trip(make: object, tmp_path: Path) -> None:
    with Ledger(backend=make(), writable=True) as led:  # type: ignore[operator]
        led.commit("d", upserts=[LedgerRecord(k, {"f": k}) for k in KEYS],
                   failures=[Failure("x", "bad")])
        led.mark_events("d", "s", [("1", "sent", None), ("2", "unknown", "timeout")])
        led.add_intents("d", ["new"])
        rows = list(led.export_rows())
        counts, ident = led.counts(), led.identity
    with Ledger(tmp_path / "copy.sqlite", writable=True) as copy:
        copy.replace_all(iter(rows), generation=ident.generation)
        assert copy.counts() == counts and copy.identity.state_id == ident.state_id
        assert [r.fields["f"] for r in copy.stream("d")] == sorted(KEYS)
        assert list(copy.stream_events("d", "s")) == [("1", "sent"), ("2", "unknown")]


def test_a_state_from_a_newer_brazecfg_is_refused(make: object) -> None:
    b = make()  # type: ignore[operator]
    with Ledger(backend=b, writable=True) as led:
        led.set_meta("version", str(SCHEMA_VERSION + 1))
    for writable in (False, True):
        with pytest.raises(StateError, match="newer brazecfg"):
            Ledger(backend=b, writable=writable)


def test_the_generation_under_a_lease_is_what_every_reader_sees(make: object) -> None:
    b = make()  # type: ignore[operator]
    # (writable: DuckDB opens a file one way per process; the reader only reads)
    with Ledger(backend=b, writable=True) as a, Ledger(backend=b, writable=True) as reader:
        a.commit("d", upserts=[LedgerRecord("0")])
        start = a.generation
        with lease(a, "brazecfg apply"):
            for i in range(3):
                a.commit("d", upserts=[LedgerRecord(str(i))])
                a.mark_events("d", "s", [(str(i), "sent", None)])
                assert reader.generation == start + 2 * (i + 1)
            with pytest.raises(RuntimeError):
                a.commit("d", upserts=iter([LedgerRecord("x"), *[]]), deletes=_boom())
            assert reader.generation == start + 6  # a failed write moved nothing
            a.commit("d", upserts=[LedgerRecord("y")])
            assert reader.generation == start + 7


def _boom() -> Iterator[str]:
    raise RuntimeError("crash")
    yield ""


def test_records_keep_every_hash_group_and_row_hash_through_renames_and_a_copy(
        make: object, tmp_path: Path) -> None:
    """Two destinations with their own fields, group sets, values that are not lowercase
    hex hashes, records missing a field: read back byte for byte, after a rename, from a
    reader that opened before the writer numbered new names, and in a copy (export)."""
    full = {f"f{i}": f"{i:016x}" for i in range(8)}
    recs = {
        "a": [LedgerRecord("1", full, frozenset({"g1"}), b"\x01" * 8),
              LedgerRecord("2", {**full, "f3": "drifted"}, frozenset(), None),
              LedgerRecord("3", {k: v for k, v in full.items() if k != "f0"},
                           frozenset({"g1", "g2"}), b"\x02" * 16),
              LedgerRecord("4", {**full, "f5": "ABCDEF0123456789"}, frozenset({"g2"})),
              LedgerRecord("5", {}, frozenset())],
        "b": [LedgerRecord("1", {"zz": "00ff00ff00ff00ff", "aa": "é"}, frozenset({"g3"}))],
    }
    b = make()  # type: ignore[operator]
    with Ledger(backend=b, writable=True) as led:
        led.commit("a", upserts=recs["a"][:1])
        reader = Ledger(backend=b, writable=True)  # (DuckDB: one way of opening a file)
        try:
            assert [r.fields for r in reader.stream("a")] == [full]
            led.commit("a", upserts=recs["a"][1:])
            led.commit("b", upserts=recs["b"])
            led.update_groups("a", ["5"], "g9", member=True)
            want = {d: {r.external_id: r for r in rs} for d, rs in recs.items()}
            want["a"]["5"] = LedgerRecord("5", {}, frozenset({"g9"}))

            def same(state: Ledger, names: dict[str, str]) -> None:
                for d, rs in want.items():
                    got = {r.external_id: r for r in state.stream(names[d])}
                    assert got == rs
                    assert state.records(names[d], list(rs)) == rs

            same(reader, {"a": "a", "b": "b"})  # numbers added since it read them
            led.rename_destination("a", "c")
            assert led.destinations() == ["b", "c"] and led.count("a") == 0
            same(led, {"a": "c", "b": "b"})
            same(reader, {"a": "c", "b": "b"})
            rows = list(led.export_rows())
            assert {r["destination"] for r in rows if r["t"] == "record"} == {"b", "c"}
        finally:
            reader.close()
    with Ledger(tmp_path / "copy.sqlite", writable=True) as copy:
        copy.replace_all(iter(rows))
        same(copy, {"a": "c", "b": "b"})
        # (a text-layout backend also exports confirmed_at; the compact one keeps none)
        assert list(copy.export_rows()) == [{k: v for k, v in r.items() if k != "confirmed_at"}
                                            for r in rows]
        copy.forget_destination("c")
        copy.commit("c", upserts=[LedgerRecord("7", {"new": "1111111111111111"})])
        assert [r.fields for r in copy.stream("c")] == [{"new": "1111111111111111"}]
        assert [r.external_id for r in copy.stream("b")] == ["1"]
