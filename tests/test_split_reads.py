"""SQLite's full read of a model split into ranges of key text, each computed ahead on a thread
of its own (engine.SQLITE_SPLIT_ROWS), through the CLI: the plan is the plan of one statement,
digest included, and what its apply records (the record hashes computed from the rows) is
what the next plans compare, split or not, in full or incrementally."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from brazecfg.warehouse import engine as engine_mod
from tests.helpers import (
    NOW,
    cli,
    copy_example,
    count_split_reads,
    emulated_example,
    settle_stamps,
    sql,
    unhashed,
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from emulated_example(tmp_path, monkeypatch)


@pytest.fixture
def split(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of ranges of each read that was split (SQLITE_SPLIT_ROWS is set per plan,
    ``_plan``)."""
    return count_split_reads(monkeypatch)


def _plan(monkeypatch: pytest.MonkeyPatch, project: Path, *extra: str, split: bool
          ) -> dict[str, Any]:
    monkeypatch.setattr(engine_mod, "SQLITE_SPLIT_ROWS", 2 if split else 10**12)
    run = cli("plan", str(project), "--now", NOW, "--format", "json", *extra)
    assert run.exit_code == 0, run.output
    out: dict[str, Any] = json.loads(run.stdout)
    return out


def _row_hashes(project: Path) -> dict[str, bytes]:
    con = sqlite3.connect(project / ".brazecfg" / "ledger.sqlite")
    try:
        return {r[0]: r[1] for r in con.execute(
            "SELECT external_id, row_hash FROM records WHERE row_hash IS NOT NULL")}
    finally:
        con.close()


def _changes(plan: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in plan["destinations"][0]["counts"].items() if v}


def _same(monkeypatch: pytest.MonkeyPatch, project: Path, seen: list[int], *extra: str
          ) -> dict[str, Any]:
    before = len(seen)
    whole = _plan(monkeypatch, project, *extra, split=False)
    assert len(seen) == before, "a read was split"
    parts = _plan(monkeypatch, project, *extra, split=True)
    assert len(seen) == before + 1 and seen[-1] >= 2, seen
    for key in ("destinations", "digest"):
        assert parts.get(key) == whole.get(key), key
    return parts


def _unstamp(project: Path) -> None:
    """No source declares updated_at: the destination is never read incrementally, and its
    record hashes cover every value (SQLite's registered function; HASH_VALUES) instead
    of the related-row counts (printf in SQL; HASH_COUNTS)."""
    users = project / "sources" / "users.yml"
    text = users.read_text()
    assert "updated_at: updated_at\n" in text
    users.write_text(text.replace("updated_at: updated_at\n", ""))


@pytest.mark.parametrize("stamped", [True, False], ids=["counts-hash", "values-hash"])
def test_a_split_read_plans_and_records_what_one_statement_does(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        split: list[int], stamped: bool) -> None:
    settle_stamps(project)
    if not stamped:
        _unstamp(project)
    first = _same(monkeypatch, project, split)  # a first run: every user a create
    created = first["destinations"][0]["counts"]["create"]
    assert created > 10, first["destinations"][0]
    saved = tmp_path / "plan.json"
    monkeypatch.setattr(engine_mod, "SQLITE_SPLIT_ROWS", 2)
    made = cli("plan", str(project), "--now", NOW, "--out", str(saved))
    assert made.exit_code in (0, 2), made.output
    applied = cli("apply", str(project), "--now", NOW, "--plan", str(saved), "--auto-approve")
    assert applied.exit_code == 0, applied.output
    # the hashes recorded from the split read's rows: every record but user 11's (a value
    # that is not sent), as with one statement (test_plan_record_hash)
    assert unhashed(project) == {"11"}, unhashed(project)
    # and they are the bytes an apply of one statement records
    other = copy_example(tmp_path / "one-statement")
    settle_stamps(other)
    if not stamped:
        _unstamp(other)
    monkeypatch.setattr(engine_mod, "SQLITE_SPLIT_ROWS", 10**12)
    before = len(split)
    once = cli("apply", str(other), "--now", NOW, "--auto-approve")
    assert once.exit_code == 0, once.output
    assert len(split) == before, "the one-statement apply was split"
    hashes = _row_hashes(project)
    assert len(hashes) == created - 1
    assert hashes == _row_hashes(other)
    # compared by a full read, split or not, and by the next plan as it reads
    refresh = _same(monkeypatch, project, split, "--full-refresh")
    assert _changes(refresh) == {"unchanged": created}, _changes(refresh)
    assert _changes(_plan(monkeypatch, project, split=False)) == {"unchanged": created}
    sql(project, "UPDATE users SET last_name = 'Changed', updated_at = '2026-01-07 00:00:00' "
                 "WHERE id = 3")
    changed = _same(monkeypatch, project, split, "--full-refresh")
    assert _changes(changed) == {"update": 1, "unchanged": created - 1}, _changes(changed)
    read_since = _plan(monkeypatch, project, split=False)  # incremental when stamped
    assert _changes(read_since) == _changes(changed)
