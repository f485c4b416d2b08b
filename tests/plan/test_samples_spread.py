"""Samples that inform (issue 11, item 7), through the CLI: a plan's samples come from across
the key space, the same on every run, not the lowest ids in byte order (1, 10, 100, ...)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from brazecfg.plan.definition import SAMPLE_SIZE
from tests.helpers import NOW, cli, copy_example, sql

USERS = 100_000  # ids 100000 .. 199999 besides the example's few


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(port=0)) as emu:
        yield emu


@pytest.fixture
def project(tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", emulator.url)
    monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
    project = copy_example(tmp_path)
    sql(project, "INSERT INTO users (id, email, first_name, last_name, country, updated_at) "
                 "WITH RECURSIVE n(i) AS (SELECT 100000 UNION ALL SELECT i + 1 FROM n "
                 f"WHERE i < {100000 + USERS - 1}) "
                 "SELECT i, 'u' || i || '@example.com', 'F' || i, 'L' || i, 'US', "
                 "'2026-01-05 09:00:00' FROM n")
    return project


def sampled_ids(output: str) -> list[int]:
    lines = output.split("Samples", 1)[1].splitlines()[1:]
    ids = []
    for line in lines:
        m = re.match(r"^\s+[+~-] (\d+)\b", line)
        if not m:
            break
        ids.append(int(m.group(1)))
    return ids


def test_samples_come_from_across_the_key_space(project: Path) -> None:
    first = cli("plan", str(project), "--now", NOW)
    assert first.exit_code == 0, first.stdout + first.stderr
    ids = sampled_ids(first.stdout)
    assert len(ids) == SAMPLE_SIZE, first.stdout
    # in byte order the lowest ids are 1, 10, 100000, 100001, ...: all at the bottom
    big = sorted(i for i in ids if i >= 100000)
    assert len(big) >= SAMPLE_SIZE - 1, ids
    span = big[-1] - big[0]
    assert span > USERS // 4, f"samples bunched together: {ids}"
    assert not all(str(i).startswith("1000") for i in big), ids
    # deterministic: the same plan shows the same samples
    again = cli("plan", str(project), "--now", NOW)
    assert sampled_ids(again.stdout) == ids
