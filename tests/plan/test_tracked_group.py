"""A destination with ``group:`` (Grouparoo's tracked group) syncs only the group's members,
through the CLI against the emulator: a member who leaves is deleted in sync mode and kept in
additive mode, and the plan says it reads in full for that reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from tests.helpers import NOW, cli, copy_example, emulator_get, sql


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(port=0)) as emu:
        yield emu


def _project(tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch,
             mode: str) -> Path:
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", emulator.url)
    monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
    root = copy_example(tmp_path)
    dest = root / "destinations" / "braze_users.yml"
    dest.write_text(dest.read_text().replace("mode: sync ", f"group: high_value\nmode: {mode} "))
    return root


def _ids(emulator: Emulator) -> list[str]:
    return sorted((u["external_id"] for u in emulator_get(emulator.url, "users")["users"]), key=int)


@pytest.mark.parametrize("mode, after", [("sync", ["3", "5", "6", "7"]),
                                         ("additive", ["1", "3", "5", "6", "7"])])
def test_only_members_are_synced_and_leavers_follow_the_mode(
        tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch, mode: str,
        after: list[str]) -> None:
    project = _project(tmp_path, emulator, monkeypatch, mode)
    plan = cli("plan", str(project), "--now", NOW)
    assert plan.exit_code == 0, plan.output
    assert "5 to create" in plan.output  # ltv >= 100: users 1, 3, 5, 6, 7
    assert "members of group high_value only" in plan.output
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    assert _ids(emulator) == ["1", "3", "5", "6", "7"]
    sql(project, "UPDATE purchases SET status = 'refunded' WHERE id = 1")  # user 1 drops to 15.5
    again = json.loads(cli("plan", str(project), "--now", NOW, "--format", "json").stdout)
    counts = again["destinations"][0]["counts"]
    if mode == "sync":
        assert counts["delete"] == 1
    else:
        assert counts.get("delete", 0) == 0 and counts["kept"] == 1
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    assert _ids(emulator) == after


def test_additive_unsubscribe_leavers_takes_a_leaver_out_of_its_groups(
        tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", emulator.url)
    monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
    project = copy_example(tmp_path)
    dest = project / "destinations" / "braze_users.yml"
    dest.write_text(dest.read_text().replace(
        "mode: sync ", "unsubscribe_leavers: true\ngroups_attribute: segments\nmode: additive "))
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    group = "6f0b5c0e-7d4c-4a57-9a64-3c1f4c0a0001"

    def user(uid: str) -> dict[str, object]:
        return next(u for u in emulator_get(emulator.url, "users")["users"]
                    if u["external_id"] == uid)

    assert user("3")["subscription_groups"] == {group: "subscribed"}  # user 3: ltv 250
    sql(project, "DELETE FROM users WHERE id = 3")
    plan = cli("plan", str(project), "--now", NOW)
    assert plan.exit_code == 0, plan.output
    assert "1 to update" in plan.output and "-high_value" in plan.output
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    left = user("3")  # the profile is kept ...
    assert left["attributes"].get("last_name") == "Hopper"  # type: ignore[attr-defined]
    assert "segments" not in left["attributes"]  # type: ignore[operator]
    assert left["subscription_groups"] == {group: "unsubscribed"}  # ... out of its group
    again = cli("plan", str(project), "--now", NOW, "--detailed-exitcode")
    assert again.exit_code == 0, again.output  # done once; then only counted as kept


def test_unsubscribe_leavers_in_sync_mode_is_a_validate_error(tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    dest = project / "destinations" / "braze_users.yml"
    dest.write_text(dest.read_text().replace("mode: sync ", "unsubscribe_leavers: true\nmode: sync "))
    run = cli("validate", str(project))
    assert run.exit_code == 1 and "unsubscribe_leavers applies to additive" in run.output


def test_a_tracked_group_with_events_is_a_validate_error(tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    dest = project / "destinations" / "braze_users.yml"
    dest.write_text(dest.read_text().replace("mode: sync ", "group: high_value\nmode: sync ") +
                    "events:\n  - {name: bought, source: purchases, key: id, time: created_at}\n")
    run = cli("validate", str(project))
    assert run.exit_code == 1 and "cannot send events yet" in run.output
    line = dest.read_text().splitlines().index("group: high_value") + 1
    assert f"braze_users.yml:{line}:" in run.output  # at group:
