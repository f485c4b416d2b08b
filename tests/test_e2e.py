"""The example project end to end, through the CLI, against the emulator on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from tests.helpers import NOW, cli, copy_example, emulator_get, sql


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


def users(emulator: Emulator) -> dict[str, dict[str, object]]:
    return {u["external_id"]: u for u in emulator_get(emulator.url, "users")["users"]}


def track_requests(emulator: Emulator) -> list[dict[str, object]]:
    return [r for r in emulator_get(emulator.url, "requests")["requests"]
            if r["path"] == "/users/track"]


def tree(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*"))}


def test_validate_plan_apply_then_nothing_to_do(project: Path, emulator: Emulator) -> None:
    assert cli("validate", str(project)).exit_code == 0
    plan = cli("plan", str(project), "--now", NOW)
    assert plan.exit_code == 0, plan.output
    assert "+ 12 to create" in plan.output
    assert "not a valid email address" in plan.output
    applied = cli("apply", str(project), "--auto-approve", "--now", NOW)
    assert applied.exit_code == 0, applied.output
    assert "12 created" in applied.output
    got = users(emulator)
    assert sorted(got, key=int) == [str(i) for i in range(1, 13)]
    ada = got["1"]["attributes"]
    assert ada["last_name"] == "Lovelace" and ada["lifetime_value"] == 135.5
    assert "email" not in got["11"]["attributes"]  # the invalid value was not sent
    again = cli("plan", str(project), "--now", NOW, "--detailed-exitcode")
    assert again.exit_code == 0, again.output
    assert "No changes." in again.output


def test_one_update_and_one_delete_are_exactly_what_is_sent(project: Path, emulator: Emulator
                                                           ) -> None:
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    before = len(track_requests(emulator))
    sql(project, "UPDATE users SET last_name = 'Byron' WHERE id = 1")
    sql(project, "DELETE FROM users WHERE id = 4")
    plan = cli("plan", str(project), "--now", NOW, "--format", "json", "--detailed-exitcode")
    assert plan.exit_code == 2
    summary = json.loads(plan.stdout)["destinations"][0]
    assert summary["counts"]["update"] == 1 and summary["counts"]["delete"] == 1
    assert summary["counts"]["create"] == 0
    assert summary["fields_set"] == {"last_name": 1} and summary["fields_removed"] == {}
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    sent = track_requests(emulator)[before:]
    assert [r["body"] for r in sent] == [{"attributes": [{"external_id": "1", "last_name": "Byron"}]}]
    deletes = [r["body"] for r in emulator_get(emulator.url, "requests")["requests"]
               if r["path"] == "/users/delete"]
    assert deletes == [{"external_ids": ["4"]}]
    assert "4" not in users(emulator)
    assert users(emulator)["1"]["attributes"]["last_name"] == "Byron"
    assert "No changes." in cli("plan", str(project), "--now", NOW).output


def set_mode(project: Path, mode: str) -> None:
    f = project / "destinations" / "braze_users.yml"
    f.write_text(f.read_text().replace("mode: sync", f"mode: {mode}"))


def test_additive_never_deletes(project: Path, emulator: Emulator) -> None:
    set_mode(project, "additive")
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    sql(project, "DELETE FROM users WHERE id IN (2, 3)")
    out = cli("apply", str(project), "--auto-approve", "--now", NOW)
    assert out.exit_code == 0, out.output
    assert "2 gone from the warehouse, kept in Braze" in out.output
    assert {"2", "3"} <= set(users(emulator))
    assert not [r for r in emulator_get(emulator.url, "requests")["requests"]
                if r["path"] == "/users/delete"]


def test_enrich_never_creates(project: Path, emulator: Emulator) -> None:
    set_mode(project, "enrich")
    # Braze already knows users 1 and 2 (say, from the SDK); nobody else.
    from brazecfg.braze.client import BrazeClient, BrazeSettings

    client = BrazeClient(BrazeSettings("t", emulator.url, "local-emulator-key"))
    client.track(attributes=[{"external_id": "1", "first_name": "A"},
                             {"external_id": "2", "first_name": "B"}])
    client.close()
    out = cli("apply", str(project), "--auto-approve", "--now", NOW)
    assert out.exit_code == 0, out.output
    assert sorted(users(emulator)) == ["1", "2"]
    assert users(emulator)["1"]["attributes"]["last_name"] == "Lovelace"
    bodies = [r["body"] for r in track_requests(emulator)][1:]
    objs = [o for b in bodies for o in b["attributes"]]
    assert {o["external_id"] for o in objs} == {"1", "2"}
    assert all(o["_update_existing_only"] is True for o in objs)
    sql(project, "DELETE FROM users WHERE id = 1")
    out = cli("apply", str(project), "--auto-approve", "--now", NOW)
    assert "1" in users(emulator)  # enrich never deletes either


def test_plan_writes_nothing(project: Path, emulator: Emulator) -> None:
    sql(project, "SELECT 1")  # build the warehouse file first: seeding is not planning
    before = tree(project)
    assert cli("plan", str(project), "--now", NOW).exit_code == 0
    assert tree(project) == before
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    before = tree(project)
    assert cli("plan", str(project), "--now", NOW).exit_code == 0
    assert tree(project) == before


def test_lockfile_is_deterministic_and_holds_no_personal_data(project: Path) -> None:
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    lock = (project / "brazecfg.lock.json").read_text()
    assert "@example.com" not in lock and "Lovelace" not in lock and "local-emulator-key" not in lock
    doc = json.loads(lock)
    assert doc["destinations"] == {"braze_users": {"events": 0, "records": 12}}
    assert "destination/braze_users" in doc["resources"]
    (project / "brazecfg.lock.json").unlink()
    cli("apply", str(project), "--auto-approve", "--now", NOW)
    assert (project / "brazecfg.lock.json").read_text() == lock


def test_config_change_is_planned(project: Path) -> None:
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    f = project / "destinations" / "braze_users.yml"
    f.write_text(f.read_text().replace("  last_product: last_product\n", ""))
    out = cli("plan", str(project), "--now", NOW)
    assert "~ destination/braze_users (custom_attributes)" in out.output
    assert "removed for 9 users" in out.output  # sync mode: remove what brazecfg put there


def test_markdown_and_json_plans_show_no_values(project: Path) -> None:
    for fmt in ("markdown", "json"):
        out = cli("plan", str(project), "--now", NOW, "--format", fmt)
        assert out.exit_code == 0
        assert "Lovelace" not in out.stdout and "@example.com" not in out.stdout
    assert "| create |" in cli("plan", str(project), "--format", "markdown").stdout


def test_apply_without_a_tty_needs_auto_approve(project: Path) -> None:
    out = cli("apply", str(project), "--now", NOW)
    assert out.exit_code == 1 and "--auto-approve" in out.output


def test_saved_plan_is_refused_when_stale(project: Path, tmp_path: Path) -> None:
    saved = tmp_path / "plan.json"
    assert cli("plan", str(project), "--now", NOW, "--out", str(saved)).exit_code == 0
    sql(project, "UPDATE users SET first_name = 'Augusta' WHERE id = 1")
    out = cli("apply", str(project), "--auto-approve", "--now", NOW, "--plan", str(saved))
    assert out.exit_code == 1 and "1 record changed since the plan was reviewed" in out.output
    assert cli("plan", str(project), "--now", NOW, "--out", str(saved)).exit_code == 0
    out = cli("apply", str(project), "--auto-approve", "--now", NOW, "--plan", str(saved))
    assert out.exit_code == 0, out.output


def test_wrong_key_is_one_line_and_never_printed(project: Path, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    canary = "canary-key-5f1e9a8b7c6d"
    monkeypatch.setenv("BRAZE_API_KEY", canary)
    out = cli("apply", str(project), "--auto-approve", "--now", NOW)
    assert out.exit_code == 1
    assert "app/braze" in out.output and "401" in out.output
    assert canary not in out.output
    assert len([ln for ln in out.stderr.splitlines() if ln.strip()]) == 1
    from brazecfg.state.ledger import Ledger

    with Ledger(project / ".brazecfg" / "ledger.sqlite", writable=False) as led:
        assert led.count("braze_users") == 0  # nothing was confirmed, nothing recorded
    out = cli("--debug", "apply", str(project), "--auto-approve", "--now", NOW)
    assert canary not in out.output


def test_console_script_and_module_entry_points(project: Path) -> None:
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-m", "brazecfg", "validate", str(project)],
                         capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr
    exe = Path(sys.executable).with_name("brazecfg")
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "brazecfg" in out.stdout


def test_an_unreadable_saved_plan_is_a_clear_error(project: Path, tmp_path: Path) -> None:
    bad = tmp_path / "plan.json"
    bad.write_text("{not json")
    out = cli("apply", str(project), "--auto-approve", "--plan", str(bad))
    assert out.exit_code == 1 and "cannot read the saved plan" in out.output
    assert "unexpected error" not in out.output
