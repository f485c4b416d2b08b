"""Braze-side opt-outs, through the CLI against the emulator: a member who unsubscribed from
a subscription group in Braze is never subscribed again by a join (respect_opt_outs, the
default); the plan shows them; `respect_opt_outs: false` overturns it on purpose."""

from __future__ import annotations

import json
import sqlite3
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from tests.helpers import NOW, cli, copy_example, emulator_get, sql

GROUP = "6f0b5c0e-7d4c-4a57-9a64-3c1f4c0a0001"  # high_value in the example


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


def unsubscribe_in_braze(emulator: Emulator, external_id: str) -> None:
    """What a user clicking "unsubscribe" does: Braze's own state changes, not brazecfg's."""
    body = json.dumps({"subscription_groups": [{"subscription_group_id": GROUP,
                                                "subscription_state": "unsubscribed",
                                                "external_ids": [external_id]}]}).encode()
    req = urllib.request.Request(f"{emulator.url}/v2/subscription/status/set", data=body,
                                 headers={"Authorization": "Bearer local-emulator-key",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 201


def made_in_braze(emulator: Emulator, external_id: str) -> None:
    body = json.dumps({"attributes": [{"external_id": external_id}]}).encode()
    req = urllib.request.Request(f"{emulator.url}/users/track", data=body,
                                 headers={"Authorization": "Bearer local-emulator-key",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 201


def state_of(emulator: Emulator, external_id: str) -> str | None:
    user = next(u for u in emulator_get(emulator.url, "users")["users"]
                if u["external_id"] == external_id)
    return (user.get("subscription_groups") or {}).get(GROUP)


@pytest.mark.parametrize("respect", [True, False])
def test_a_join_never_overturns_an_unsubscribe_made_in_braze(
        project: Path, emulator: Emulator, respect: bool) -> None:
    if not respect:
        dest = project / "destinations" / "braze_users.yml"
        dest.write_text(dest.read_text() + "respect_opt_outs: false\n")
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    unsubscribe_in_braze(emulator, "2")  # user 2 (ltv 80) is not a member yet
    sql(project, "UPDATE purchases SET status = 'paid' WHERE id = 4")  # now 110: joins
    plan = cli("plan", str(project), "--now", NOW, "--format", "json")
    assert plan.exit_code == 0, plan.output
    d = json.loads(plan.stdout)["destinations"][0]
    text = cli("plan", str(project), "--now", NOW)
    if respect:
        assert d["group_joins"].get("high_value", 0) == 0
        assert d["group_opted_out"] == {"high_value": 1}
        assert "1 not subscribed: unsubscribed in Braze" in text.output
    else:
        assert d["group_joins"] == {"high_value": 1} and d["group_opted_out"] == {}
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    assert state_of(emulator, "2") == ("unsubscribed" if respect else "subscribed")
    assert state_of(emulator, "3") == "subscribed"  # the others are untouched
    again = cli("plan", str(project), "--now", NOW, "--detailed-exitcode")
    assert again.exit_code == 0, again.output  # not asked again: nothing left to do


def test_a_lost_state_does_not_resubscribe_those_who_left(project: Path,
                                                          emulator: Emulator) -> None:
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    unsubscribe_in_braze(emulator, "6")
    for f in (project / ".brazecfg").iterdir():
        if f.name.startswith("ledger"):
            f.unlink()
    plan = cli("plan", str(project), "--now", NOW, "--start-over", "--format", "json")
    assert plan.exit_code == 0, plan.output
    d = json.loads(plan.stdout)["destinations"][0]
    assert d["group_joins"] == {"high_value": 4} and d["group_opted_out"] == {"high_value": 1}
    assert cli("apply", str(project), "--auto-approve", "--now", NOW,
               "--start-over").exit_code == 0
    assert state_of(emulator, "6") == "unsubscribed"


def test_opt_outs_past_the_first_calls_are_held_back_too(
        project: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """A big plan hands its opt-out checks to a process of its own after the first
    REMOTE_AFTER calls (braze/remote.py, issue 9): those answers count as the first ones
    do. 3,000 new members (and the example's own), 61 calls of 50 at most; unsubscribed
    in Braze: one early (call 1), several past the first 40 calls, and the very last
    member."""
    from brazecfg.plan import planner
    from brazecfg.plan.planner import REMOTE_AFTER

    made: list[int] = []

    class Counted(planner.StatusProcess):  # type: ignore[misc]
        def start(self, group_id: str, external_ids: list[str]) -> object:
            made.append(len(external_ids))
            return super().start(group_id, external_ids)

    monkeypatch.setattr(planner, "StatusProcess", Counted)
    sql(project, "SELECT 1")  # builds warehouse.db
    con = sqlite3.connect(project / "warehouse.db")
    with con:
        con.executemany("INSERT INTO users VALUES (?, ?, 'New', 'Member', 'US', "
                        "'2026-01-05 09:00:00')",
                        [(1000 + i, f"m{i}@example.com") for i in range(3000)])
        con.executemany("INSERT INTO purchases (user_id, product, amount, status, created_at) "
                        "VALUES (?, 'book', 150, 'paid', '2026-01-06 09:00:00')",
                        [(1000 + i,) for i in range(3000)])
    con.close()
    members = sorted(str(1000 + i) for i in range(3000))  # as the merge meets them
    late = [members[i] for i in (5, REMOTE_AFTER * 50 + 10, 2600, 2999)]
    for external_id in late:
        made_in_braze(emulator, external_id)  # by the app's SDK, say: brazecfg never sent it
        unsubscribe_in_braze(emulator, external_id)
    plan = cli("plan", str(project), "--now", NOW, "--format", "json")
    assert plan.exit_code == 0, plan.output
    d = json.loads(plan.stdout)["destinations"][0]
    assert d["group_opted_out"] == {"high_value": len(late)}
    assert d["group_joins"]["high_value"] == d["counts"]["create"] - 7 - len(late)
    calls = [r for r in emulator_get(emulator.url, "requests")["requests"]
             if r["path"].startswith("/subscription/status/get")]
    assert len(calls) >= 60 and len(made) == len(calls) - REMOTE_AFTER  # the process made the rest
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    for external_id in late:
        assert state_of(emulator, external_id) == "unsubscribed"
    assert state_of(emulator, members[6]) == "subscribed"
