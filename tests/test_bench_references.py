"""The benchmark's references and stand-in tell the truth (bench/): the floor's bodies, sent
by the plain loop (bench/loop.py) to the sink (bench/sink.py), leave the sink holding exactly
the profiles `brazecfg apply` leaves, on a first sync and after a mutation with deletes. So
"the loop sends the same payloads" is checked, not assumed, and the sink's store, snapshot
and counters are exercised through real HTTP. No timing is asserted."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PY = sys.executable
BRAZECFG = str(Path(sys.executable).parent / "brazecfg")
N = 2000  # 0.1% of it is deleted by --mutate


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SinkClient:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, route: str) -> Any:
        with urllib.request.urlopen(f"{self.url}/_emulator/{route}", timeout=30) as r:
            return json.load(r)

    def post(self, route: str) -> Any:
        req = urllib.request.Request(f"{self.url}/_emulator/{route}", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)

    def users(self) -> dict[str, Any]:
        return {u["external_id"]: u for u in self.get("users")["users"]}


@pytest.fixture
def sink() -> Iterator[SinkClient]:
    port = _free_port()
    proc = subprocess.Popen([PY, str(BENCH / "sink.py"), "--port", str(port)],
                            stdout=subprocess.DEVNULL)
    client = SinkClient(f"http://127.0.0.1:{port}")
    try:
        for _ in range(100):
            try:
                client.get("health")
                break
            except OSError:
                time.sleep(0.1)
        yield client
    finally:
        proc.terminate()
        proc.wait(10)


def _ids(db: Path) -> set[str]:
    con = sqlite3.connect(db)
    try:
        return {str(i) for (i,) in con.execute("SELECT id FROM users")}
    finally:
        con.close()


def test_the_loop_leaves_the_sink_as_brazecfg_apply_does(tmp_path: Path,
                                                         sink: SinkClient) -> None:
    project = tmp_path / "p"
    subprocess.run([PY, str(BENCH / "generate.py"), str(project), "--users", str(N)],
                   check=True)
    env = {"BRAZE_REST_ENDPOINT": sink.url, "PATH": str(Path(PY).parent), "NO_COLOR": "1"}

    def brazecfg_apply() -> None:
        r = subprocess.run([BRAZECFG, "apply", str(project), "--auto-approve"], env=env,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr

    def loop(*extra: str) -> None:
        r = subprocess.run([PY, str(BENCH / "loop.py"), str(project), *extra], env=env,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr

    brazecfg_apply()
    after_brazecfg = sink.users()
    assert len(after_brazecfg) == N
    assert sum(1 for u in after_brazecfg.values() if u["subscription_groups"]) > 0
    sink.post("snapshot")
    sink.post("reset")
    loop()
    stats = sink.get("stats")
    assert stats["attribute_objects"] == N
    assert stats["objects_per_request"] == {"50": 1, "75": 26}
    assert sink.users() == after_brazecfg

    before = _ids(project / "warehouse.db")
    subprocess.run([PY, str(BENCH / "generate.py"), str(project), "--mutate"], check=True,
                   stdout=subprocess.DEVNULL)
    deleted = sorted(before - _ids(project / "warehouse.db"))
    assert deleted
    sink.post("restore")
    brazecfg_apply()
    second = sink.users()
    assert not set(deleted) & set(second)
    sink.post("restore")
    (tmp_path / "deleted.txt").write_text("\n".join(deleted))
    loop("--deletes", str(tmp_path / "deleted.txt"))
    assert sink.users() == second


def test_pairs_runs_a_command_on_two_commits_in_turn(tmp_path: Path) -> None:
    """bench/pairs.py (how bench/README's before/after figures are taken): one plan on HEAD
    and one on this checkout, in turn; the same inputs print the same plan, and its
    temporary worktree is gone afterwards."""
    project = tmp_path / "p"
    subprocess.run([PY, str(BENCH / "generate.py"), str(project), "--users", "200"],
                   check=True, capture_output=True)
    before = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], check=True,
                            capture_output=True, text=True).stdout
    r = subprocess.run([PY, str(BENCH / "pairs.py"), str(project), "--base", "HEAD",
                        "--runs", "1", "--", "plan", "--format", "json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "base 1: exit 0" in r.stdout and "new 1: exit 0" in r.stdout
    assert "| 1 | " in r.stdout and "| the same |" in r.stdout
    after = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], check=True,
                           capture_output=True, text=True).stdout
    assert after == before
