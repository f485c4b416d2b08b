"""Scratch directories (brazecfg/scratch.py): the sweep removes those of processes that are
gone, and nothing else. The CLI side (kill -9, a second Ctrl-C) is in test_delivery_crash."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from brazecfg.scratch import LOCK, Scratch, sweep
from tests.helpers import ROOT


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import brazecfg.scratch as scratch

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(scratch, "_swept", True)  # each test sweeps when it says so
    return tmp_path


def dead_scratch(tmp: Path) -> Path:
    """A scratch directory whose process died without cleaning up."""
    code = ("import os, sys; from brazecfg.scratch import Scratch; s = Scratch('spool'); "
            "(s.path / 'braze_users.jsonl').write_text('{}'); print(s.path); "
            "sys.stdout.flush(); os._exit(9)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)},
                         check=False)
    assert out.returncode == 9, out.stderr
    return Path(out.stdout.strip())


def test_the_sweep_removes_only_the_directories_of_processes_that_are_gone(tmp: Path) -> None:
    dead = dead_scratch(tmp)
    assert (dead / "braze_users.jsonl").exists() and (dead / LOCK).exists()
    live = Scratch("spool")
    making = tmp / "brazecfg-spool-making"  # created, its lock not there yet
    making.mkdir()
    other = tmp / "not-brazecfg"
    other.mkdir()
    (other / LOCK).touch()
    target = tmp / "elsewhere"
    target.mkdir()
    (target / LOCK).touch()
    (tmp / "brazecfg-spool-link").symlink_to(target)
    try:
        assert sweep(tmp) == [dead]
        assert not dead.exists()
        assert live.path.is_dir() and making.is_dir() and other.is_dir() and target.is_dir()
        assert sweep(tmp) == []
    finally:
        live.cleanup()
    assert not live.path.exists()
    live.cleanup()  # again: nothing


def test_a_new_scratch_sweeps_once_per_process(tmp: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import brazecfg.scratch as scratch

    dead = dead_scratch(tmp)
    monkeypatch.setattr(scratch, "_swept", False)
    with Scratch("plan") as path:
        assert path.is_dir() and path.name.startswith("brazecfg-plan-")
        assert oct(path.stat().st_mode & 0o777) == "0o700"
        assert not dead.exists()
        again = dead_scratch(tmp)
        with Scratch("plan"):
            assert again.exists()  # swept once, when this process made its first
    assert not path.exists()


def test_remove_all_removes_this_process_s_directories(tmp: Path) -> None:
    from brazecfg.scratch import remove_all

    a, b = Scratch("spool"), Scratch("duckdb")
    remove_all()
    assert not a.path.exists() and not b.path.exists()
    assert list(tmp.iterdir()) == []
