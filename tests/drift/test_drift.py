"""`brazecfg drift` through the CLI against the emulator: a profile edited in Braze (here:
another client writing to the emulator, as the dashboard would) is found with the right count,
values never reach JSON or Markdown, --repair makes the next plan write the field again, and
an unsubscribe made in Braze is reported."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from tests.helpers import NOW, cli, copy_example, emulator_get

GROUP = "6f0b5c0e-7d4c-4a57-9a64-3c1f4c0a0001"


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(port=0)) as emu:
        yield emu


@pytest.fixture
def project(tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", emulator.url)
    monkeypatch.delenv("BRAZE_API_KEY", raising=False)
    monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
    root = copy_example(tmp_path)
    assert cli("apply", str(root), "--auto-approve", "--now", NOW).exit_code == 0
    return root


def braze_call(emulator: Emulator, path: str, body: dict[str, object]) -> None:
    """Someone else changing Braze: a direct API call, not brazecfg."""
    req = urllib.request.Request(f"{emulator.url}{path}", data=json.dumps(body).encode(),
                                 headers={"Authorization": "Bearer local-emulator-key",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 201


def edit_in_braze(emulator: Emulator) -> None:
    braze_call(emulator, "/users/track", {"attributes": [
        {"external_id": "1", "last_name": "Byron"},
        {"external_id": "2", "last_name": "Secret-Value"},
        {"external_id": "3", "lifetime_value": 1},
    ]})


def test_an_edit_in_braze_is_reported_with_its_count(project: Path, emulator: Emulator) -> None:
    clean = cli("drift", str(project), "--sample", "50", "--detailed-exitcode")
    assert clean.exit_code == 0, clean.output
    assert "12 synced users compared" in clean.output and "no drift" in clean.output
    edit_in_braze(emulator)
    text = cli("drift", str(project), "--sample", "50", "--detailed-exitcode")
    assert text.exit_code == 2, text.output
    assert "last_name  differs for 2 users" in text.output
    assert "lifetime_value  differs for 1 user" in text.output
    doc = json.loads(cli("drift", str(project), "--sample", "50", "--format", "json").stdout)
    (d,) = doc["destinations"]
    assert d["fields"] == {"last_name": 2, "lifetime_value": 1} and d["sampled"] == 12
    md = cli("drift", str(project), "--format", "markdown").stdout
    assert "| field `last_name` differs | 2 |" in md
    for out in (json.dumps(doc), md):
        assert "Secret-Value" not in out and "Byron" not in out
    # The read is /users/export/ids, at most 50 ids a call; a plan alone still sees nothing.
    calls = [r for r in emulator_get(emulator.url, "requests")["requests"]
             if r["path"] == "/users/export/ids"]
    assert calls
    plan = cli("plan", str(project), "--now", NOW)
    assert "No changes." in plan.output


def test_ids_file_limits_the_comparison(project: Path, emulator: Emulator,
                                        tmp_path: Path) -> None:
    edit_in_braze(emulator)
    ids = tmp_path / "ids.txt"
    ids.write_text("2\n3\nnobody\n")
    doc = json.loads(cli("drift", str(project), "--ids", str(ids), "--format", "json").stdout)
    (d,) = doc["destinations"]
    assert d["sampled"] == 2 and d["not_in_state"] == 1
    assert d["fields"] == {"last_name": 1, "lifetime_value": 1}


def test_repair_plans_the_drifted_fields_to_be_written_again(project: Path,
                                                            emulator: Emulator) -> None:
    edit_in_braze(emulator)
    fixed = cli("drift", str(project), "--repair")
    assert fixed.exit_code == 0, fixed.output
    assert "marked 3 fields to be written again" in fixed.output
    plan = json.loads(cli("plan", str(project), "--now", NOW, "--format", "json").stdout)
    d = plan["destinations"][0]
    assert d["counts"]["update"] == 3
    assert d["fields_set"] == {"last_name": 2, "lifetime_value": 1}
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    users = {u["external_id"]: u for u in emulator_get(emulator.url, "users")["users"]}
    assert users["1"]["attributes"]["last_name"] == "Lovelace"
    assert users["3"]["attributes"]["lifetime_value"] == 250
    assert "no drift" in cli("drift", str(project)).output


def test_an_unsubscribe_in_braze_is_reported_never_repaired(project: Path,
                                                            emulator: Emulator) -> None:
    braze_call(emulator, "/v2/subscription/status/set", {"subscription_groups": [
        {"subscription_group_id": GROUP, "subscription_state": "unsubscribed",
         "external_ids": ["3"]}]})
    doc = json.loads(cli("drift", str(project), "--format", "json", "--repair").stdout)
    assert doc["destinations"][0]["unsubscribed_in_braze"] == {"high_value": 1}
    assert "No changes." in cli("plan", str(project), "--now", NOW).output


def test_drift_before_any_apply_says_what_to_do(tmp_path: Path, emulator: Emulator,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", emulator.url)
    root = copy_example(tmp_path)
    out = cli("drift", str(root))
    assert out.exit_code == 1 and "run `brazecfg apply` first" in out.output
