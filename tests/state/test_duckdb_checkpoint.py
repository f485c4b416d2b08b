"""A DuckDB state checkpoints once the primary-key indexes its writes loaded fill a share of
DuckDB's memory_limit (Ledger._checkpoint_loaded_indexes). DuckDB keeps the index nodes a
write loads and changes in memory until a checkpoint, and checkpoints on its own only when
its log reaches 16MB: with the state of 10M records, apply 2 of bench/warehouse_state.py
failed after 250 commits of 75 ids ("Out of Memory Error: could not allocate block"), with
53,100 profiles sent and the batch Braze had confirmed not recorded. Reproducing that needs
millions of records; here the share is set so that any loaded index passes it, and what
is checked is that the write checkpointed (DuckDB's log emptied)."""

from __future__ import annotations

from pathlib import Path

import pytest

from brazecfg.state import ledger as ledger_module
from brazecfg.state.base import LedgerRecord
from brazecfg.state.ledger import Ledger
from tests.state.backends import backend


def logged(wal: Path) -> int:
    return wal.stat().st_size if wal.exists() else 0


def batch(start: int, value: str) -> list[LedgerRecord]:
    return [LedgerRecord(str(k), {"a": value}, frozenset(), b"12345678")
            for k in range(start, start + 75)]


def test_a_duckdb_state_checkpoints_once_its_loaded_index_passes_its_share(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    b = backend("warehouse-duckdb", tmp_path, None)
    wal = tmp_path / "wh.duckdb.wal"
    with Ledger(backend=b, writable=True) as led:
        for start in range(0, 3000, 75):
            led.commit("d", upserts=batch(start, "x"))
    # the default share, with an index of 3,000 keys: no checkpoint, the log keeps the writes
    with Ledger(backend=b, writable=True) as led:
        led.commit("d", upserts=batch(0, "y"))
        assert logged(wal) > 0
    # any loaded index passes this share: every write checkpoints, the log is emptied
    monkeypatch.setattr(ledger_module, "DUCKDB_INDEX_SHARE", 10 ** 12)
    with Ledger(backend=b, writable=True) as led:
        for start in (75, 150, 225):
            led.commit("d", upserts=batch(start, "z"))
            assert logged(wal) == 0
        assert led.count("d") == 3000
        assert led.records("d", ["100"])["100"].fields == {"a": "z"}
