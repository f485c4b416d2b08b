"""The pull-request and CI contract (issue 10), through the CLI: guardrails that stop a true
but unwanted plan, a data-point figure that matches what Braze is sent, exit codes that never
collide, and partial plans that say so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from tests.helpers import NOW, ROOT, cli, copy_example, emulator_get, sql


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(port=0)) as emu:
        yield emu


@pytest.fixture
def project(tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", emulator.url)
    monkeypatch.delenv("BRAZE_API_KEY", raising=False)
    monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
    return copy_example(tmp_path)


def requests(emulator: Emulator) -> list[dict[str, Any]]:
    return list(emulator_get(emulator.url, "requests")["requests"])


def test_an_emptied_source_is_refused_and_sends_nothing(project: Path,
                                                         emulator: Emulator) -> None:
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    before = len(requests(emulator))
    sql(project, "DELETE FROM users")  # a failed upstream load
    text = cli("plan", str(project), "--now", NOW)
    assert text.exit_code == 0
    assert "guardrail empty_source" in text.output and "Apply refuses it" in text.output
    out = cli("apply", str(project), "--auto-approve", "--now", NOW)
    assert out.exit_code == 1
    assert "empty_source" in out.stderr and "nothing was sent" in out.stderr
    assert len(requests(emulator)) == before
    assert len(emulator_get(emulator.url, "users")["users"]) == 12
    forced = cli("apply", str(project), "--auto-approve", "--now", NOW, "--allow", "empty_source")
    assert forced.exit_code == 0, forced.output
    assert emulator_get(emulator.url, "users")["users"] == []


def test_a_mass_delete_trips_the_delete_share(project: Path, emulator: Emulator) -> None:
    for i in range(13, 53):
        sql(project, "INSERT INTO users VALUES (?, ?, 'X', 'Y', 'US', '2026-01-05 09:00:00')",
            (i, f"u{i}@example.com"))
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    sql(project, "DELETE FROM users WHERE id > 30")  # 22 of 52
    d = json.loads(cli("plan", str(project), "--now", NOW, "--format", "json").stdout)
    tripped = d["destinations"][0]["guardrails"]["tripped"]
    assert [t["name"] for t in tripped] == ["max_delete_share"]
    assert d["blocked"][0]["guardrail"] == "max_delete_share"
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 1
    # A reviewed config change raises the limit for good.
    settings = project / "brazecfg.yml"
    settings.write_text(settings.read_text() + "guardrails:\n  max_delete_share: 0.5\n")
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    assert len(emulator_get(emulator.url, "users")["users"]) == 30


def _billed(body: dict[str, Any]) -> int:
    """Data points of one /users/track body, counted from what Braze received (subscription
    group changes are free, braze-api-facts.md "Data points")."""
    n = 0
    for obj in body.get("attributes", []):
        n += sum(len(v) if isinstance(v, dict) and v else 1 for k, v in obj.items()
                 if k not in ("external_id", "_update_existing_only", "subscription_groups"))
    for obj in body.get("events", []) + body.get("purchases", []):
        n += 1 + len(obj.get("properties", {}))
    return n


EVENTS = """events:
  - name: purchase_made
    source: purchases
    key: id
    time: created_at
    properties: {product: product, amount: amount}
"""


def test_the_data_point_figure_matches_what_braze_received(project: Path,
                                                            emulator: Emulator) -> None:
    dest = project / "destinations" / "braze_users.yml"
    dest.write_text(dest.read_text() + EVENTS)
    changes = ["UPDATE users SET last_name = 'Byron', country = NULL WHERE id = 1",
               "UPDATE users SET first_name = 'Augusta' WHERE id = 1"]
    for change in changes:  # the first sync, then a change that sets one field and nulls one
        d = json.loads(cli("plan", str(project), "--now", NOW, "--format", "json").stdout)
        before = len(requests(emulator))
        assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
        sent = [r for r in requests(emulator)[before:] if r["path"] == "/users/track"]
        assert d["data_points"] == sum(_billed(r["body"]) for r in sent) > 0
        sql(project, change)
    md = cli("plan", str(project), "--now", NOW, "--format", "markdown").stdout
    assert "About **1 Braze data point** in all" in md


def test_usage_errors_exit_1_not_2(tmp_path: Path) -> None:
    env = {**os.environ, "NO_COLOR": "1"}
    for args in (["plan", str(tmp_path), "--format", "yaml"], ["plan", "--no-such-flag"]):
        out = subprocess.run([sys.executable, "-m", "brazecfg", *args], capture_output=True,
                             text=True, cwd=ROOT, env=env, timeout=60)
        assert out.returncode == 1, out.stderr
        assert "Traceback" not in out.stderr and "Error" in out.stderr
    helped = subprocess.run([sys.executable, "-m", "brazecfg", "--help"], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=60)
    assert helped.returncode == 0 and "Exit codes" in helped.stdout and "70 a bug" in helped.stdout


def test_a_target_plans_one_destination_and_says_it_is_partial(project: Path) -> None:
    out = cli("plan", str(project), "--now", NOW, "--target", "destination/braze_users")
    assert out.exit_code == 0 and "Partial plan" in out.output
    bad = cli("plan", str(project), "--now", NOW, "--target", "destination/nope")
    assert bad.exit_code == 1 and "no such destination" in bad.stderr


def test_a_workspace_billed_by_mau_sees_requests_not_data_points(
        project: Path, emulator: Emulator) -> None:
    braze = project / "apps" / "braze.yml"
    braze.write_text(braze.read_text() + "  billing: mau\n")
    text = cli("plan", str(project), "--now", NOW)
    assert text.exit_code == 0, text.output
    assert "billed by monthly active users" in text.output
    assert "Braze data point" not in text.output.split("Plan:")[0]
    d = json.loads(cli("plan", str(project), "--now", NOW, "--format", "json").stdout)
    dest = d["destinations"][0]
    assert dest["billing"] == "mau"
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    writes = [r for r in requests(emulator) if r["path"] in (
        "/users/track", "/users/delete", "/v2/subscription/status/set")]
    assert dest["requests"] == len(writes) > 0  # what apply then made, read-only calls aside
