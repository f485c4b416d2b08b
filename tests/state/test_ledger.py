from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from brazecfg.errors import StateError
from brazecfg.state.hashing import Hasher, load_key
from brazecfg.state.ledger import Failure, Ledger, LedgerRecord


def test_commit_stream_in_byte_order(tmp_path: Path) -> None:
    keys = ["b", "a", "é", "B", "10", "9"]
    with Ledger(tmp_path / "l.sqlite", writable=True) as led:
        led.commit("d", upserts=[LedgerRecord(k, {"f": "h"}) for k in keys])
        assert [r.external_id for r in led.stream("d", batch_size=2)] == sorted(keys)
        assert led.count("d") == 6 and led.count("other") == 0


def test_failures_are_kept_apart_and_cleared_by_success(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite", writable=True) as led:
        led.commit("d", upserts=[LedgerRecord("1")], failures=[Failure("2", "bad email")])
        assert led.failures("d") == (1, [Failure("2", "bad email")])
        assert [r.external_id for r in led.stream("d")] == ["1"]
        led.commit("d", upserts=[LedgerRecord("2", {"email": "x"})])
        assert led.failures("d") == (0, [])
        g = led.generation
        led.commit("d", deletes=["1"])
        assert led.generation == g + 1
        assert [r.external_id for r in led.stream("d")] == ["2"]


def test_read_only_ledger_of_missing_file_is_empty_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state" / "l.sqlite"
    with Ledger(path, writable=False) as led:
        assert list(led.stream("d")) == [] and led.generation == 0
    assert not (tmp_path / "state").exists()


def test_read_only_open_leaves_no_files_behind(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    Ledger(path, writable=True).close()
    before = sorted(os.listdir(tmp_path))
    with Ledger(path, writable=False) as led:
        list(led.stream("d"))
    assert sorted(os.listdir(tmp_path)) == before


def test_a_failed_transaction_leaves_the_ledger_as_it_was(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite", writable=True) as led:
        led.commit("d", upserts=[LedgerRecord("1", {"a": "1"})])

        def records() -> Iterator[LedgerRecord]:
            yield LedgerRecord("2")
            raise RuntimeError("crash mid-commit")

        with pytest.raises(RuntimeError):
            led.commit("d", upserts=records())
        assert [r.external_id for r in led.stream("d")] == ["1"]


def test_corrupt_ledger_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match="unreadable"):
        Ledger(path, writable=False).stream("d").__next__()


def test_hashes_are_keyed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = Hasher(b"a" * 32), Hasher(b"b" * 32)
    assert a.field("country", "FR") == a.field("country", "FR")
    assert a.field("country", "FR") != b.field("country", "FR")
    assert a.field("country", "FR") != a.field("language", "FR")
    monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
    assert load_key(tmp_path, create=False) is None
    key = load_key(tmp_path, create=True)
    assert key and load_key(tmp_path, create=False) == key
    assert (tmp_path / "hash.key").stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("BRAZECFG_HASH_KEY", "from-the-environment-0123456789")
    assert load_key(tmp_path, create=False) == b"from-the-environment-0123456789"


def test_lockfile_is_world_readable_like_any_committed_file(tmp_path: Path) -> None:
    from brazecfg.state.lockfile import Lockfile, read_lockfile, write_lockfile

    path = tmp_path / "brazecfg.lock.json"
    write_lockfile(path, Lockfile(resources={"app/a": "f1"}, destinations={"d": {"records": 3}}))
    assert path.stat().st_mode & 0o644 == 0o644
    assert read_lockfile(path).resources == {"app/a": "f1"}


def test_a_state_of_an_unreleased_v4_layout_is_refused_not_misread(tmp_path: Path) -> None:
    """A ledger of the first v4 layout (destination names, one list of field names) would
    read as empty under the final one, and plan would resend everything: it is refused."""
    path = tmp_path / "ledger.sqlite"
    with Ledger(path, writable=True) as led:
        led.commit("d", upserts=[LedgerRecord("1", {"f": "0" * 16})])
        led.set_meta("field_names", '["f"]')
    for writable in (False, True):
        with pytest.raises(StateError, match="development build"):
            Ledger(path, writable=writable)
