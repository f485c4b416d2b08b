"""A record hash, and a new record's field hashes, are computed only where something stores
them. The apply of a plan stores each record's hash so the next plan can skip unchanged
records, and each field's hash so it can tell which changed; ``brazecfg plan`` without
--out spools nothing, so its model query carries no record hash (the warehouse's work for
every row, about 2 s of SQLite's 20 s at 1M users) and its creates no field hashes (about
5 s of a 1M first plan). What this must never change is the plan: a plain plan and a saved
one agree, digest included, on a first run, after an apply (the incremental read with its
related-row counts), on a full read and after a change; and an apply (which plans again,
with its spool) stores the hashes that make a full read of the same data find nothing to
send."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.helpers import NOW, cli, emulated_example, settle_stamps, sql, unhashed


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from emulated_example(tmp_path, monkeypatch)


def _planned(project: Path, *extra: str) -> tuple[dict[str, Any], list[str]]:
    """The plan JSON and the SQL statements the warehouse was sent."""
    sent: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        run = cli("plan", str(project), "--now", NOW, "--format", "json", *extra)
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert run.exit_code == 0, run.output
    return json.loads(run.stdout), sent


def _hashing(sent: list[str]) -> list[str]:
    """The model queries (they select property values, v0...) that compute a record hash:
    of the values (SQLite's registered function) or of the related-row counts (printf of
    them), labelled h. A keys-and-hashes read (what a plan compares) selects no value."""
    return [s for s in sent if re.search(r"\bAS v0\b", s) and re.search(r"\bAS h\b", s)]


def _same_plans(project: Path, tmp_path: Path, *extra: str) -> None:
    plain, plain_sql = _planned(project, *extra)
    saved, saved_sql = _planned(project, *extra, "--out", str(tmp_path / "plan.json"))
    assert _hashing(saved_sql), "the saved plan's model query computes no record hash"
    assert [s for s in plain_sql if re.search(r"\bAS v0\b", s)], "the plain plan read no model"
    assert not _hashing(plain_sql), _hashing(plain_sql)[0]
    for key in ("destinations", "digest"):
        assert plain.get(key) == saved.get(key), key


def test_a_plain_plan_reads_no_record_hash_and_plans_what_a_saved_one_plans(
        project: Path, tmp_path: Path) -> None:
    settle_stamps(project)
    _same_plans(project, tmp_path)  # a first run: every user a create
    applied = cli("apply", str(project), "--now", NOW, "--plan", str(tmp_path / "plan.json"),
                  "--auto-approve")
    assert applied.exit_code == 0, applied.output
    # every record but the one with a value that is not sent (user 11) keeps its hash
    assert unhashed(project) == {"11"}, unhashed(project)
    _same_plans(project, tmp_path)  # nothing changed, read incrementally
    _same_plans(project, tmp_path, "--full-refresh")  # every record read and compared
    full, _ = _planned(project, "--full-refresh")  # the applied field hashes match the data
    assert {k: n for k, n in full["destinations"][0]["counts"].items()
            if k in ("create", "update", "delete") and n} == {}, full["destinations"][0]
    sql(project, "UPDATE users SET last_name = 'Changed', updated_at = '2026-01-07 00:00:00' "
                 "WHERE id = 3")
    _same_plans(project, tmp_path)
    _same_plans(project, tmp_path, "--full-refresh")
    plain, _ = _planned(project, "--full-refresh")
    assert plain["destinations"][0]["counts"]["update"] == 1, plain["destinations"][0]["counts"]
