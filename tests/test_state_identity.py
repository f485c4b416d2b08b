"""What the state describes, through the CLI (issue 7): a lost state is never taken for an
empty Braze, renames are declared and resend nothing, and a changed workspace, subscription
group id or var is planned and said, never "No changes"."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from tests.helpers import NOW, cli, copy_example, emulator_get, sql

EVENTS = """events:
  - name: purchase_made
    source: purchases
    key: id
    time: created_at
    properties: {product: product}
"""


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
    dest = root / "destinations" / "braze_users.yml"
    dest.write_text(dest.read_text() + EVENTS)
    return root


def apply(project: Path, *extra: str) -> str:
    out = cli("apply", str(project), "--auto-approve", "--now", NOW, *extra)
    assert out.exit_code == 0, out.output
    return out.output


def plan_json(project: Path, *extra: str) -> dict[str, object]:
    out = cli("plan", str(project), "--now", NOW, "--format", "json", *extra)
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def requests(emulator: Emulator, path: str = "/users/track") -> list[dict[str, object]]:
    return [r for r in emulator_get(emulator.url, "requests")["requests"] if r["path"] == path]


def event_count(emulator: Emulator) -> int:
    return sum(len(u.get("events", [])) for u in emulator_get(emulator.url, "users")["users"])


def test_a_fresh_clone_without_the_state_refuses_to_plan(project: Path,
                                                          emulator: Emulator) -> None:
    # Recent events: Braze's export counts only the last 90 days, which settling relies on.
    sql(project, "UPDATE purchases SET created_at = datetime('now', '-1 day')")
    apply(project)
    sent = event_count(emulator)
    assert sent > 0
    shutil.rmtree(project / ".brazecfg")  # a fresh CI runner: the lockfile, no state
    out = cli("plan", str(project), "--now", NOW)
    assert out.exit_code == 1
    assert "12 records" in out.stderr and "--start-over" in out.stderr
    assert "Traceback" not in out.output
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 1
    assert event_count(emulator) == sent  # nothing was sent

    # Starting over on purpose: profiles are resent, events never (delivery unknown).
    d = plan_json(project, "--start-over")["destinations"][0]  # type: ignore[index]
    assert d["counts"]["create"] == 12
    assert sum(d["events_to_send"].values()) == 0
    assert sum(d["events_delivery_unknown"].values()) == sent
    out = cli("apply", str(project), "--auto-approve", "--now", NOW, "--start-over")
    assert out.exit_code == 1, out.output  # events of unknown delivery remain: a person looks
    assert event_count(emulator) == sent
    again = plan_json(project)["destinations"][0]  # type: ignore[index]
    assert sum(again["events_delivery_unknown"].values()) == sent  # remembered as unknown
    # Settling asks Braze: it has every one of them, so they are marked sent, none resent.
    braze = project / "apps" / "braze.yml"
    braze.write_text(braze.read_text() + "  settle_after_seconds: 0\n")
    apply(project, "--settle-unknown")
    assert event_count(emulator) == sent
    assert sum(plan_json(project)["destinations"][0][  # type: ignore[index]
        "events_delivery_unknown"].values()) == 0


def test_renaming_a_destination_with_moved_resends_nothing(project: Path,
                                                            emulator: Emulator) -> None:
    apply(project)
    before = len(requests(emulator))
    dest = project / "destinations" / "braze_users.yml"
    dest.write_text(dest.read_text().replace("name: braze_users", "name: braze_people"))
    # Without a declaration the state is refused, never guessed.
    out = cli("plan", str(project), "--now", NOW)
    assert out.exit_code == 1 and "braze_users" in out.output
    settings = project / "brazecfg.yml"
    settings.write_text(settings.read_text() + "moved:\n  - from: destination/braze_users\n"
                        "    to: destination/braze_people\n")
    text = cli("plan", str(project), "--now", NOW)
    assert text.exit_code == 0, text.output
    assert "moved from destination/braze_users" in text.output
    d = plan_json(project)["destinations"][0]  # type: ignore[index]
    assert d["counts"]["create"] == 0 and d["counts"]["delete"] == 0
    assert d["counts"]["unchanged"] == 12 and sum(d["events_to_send"].values()) == 0
    apply(project)
    assert len(requests(emulator)) == before  # not one request
    assert "No changes." in cli("plan", str(project), "--now", NOW).output


def test_renaming_only_an_event_streams_name_resends_nothing(project: Path,
                                                              emulator: Emulator) -> None:
    apply(project)
    sent = event_count(emulator)
    dest = project / "destinations" / "braze_users.yml"
    dest.write_text(dest.read_text().replace("name: purchase_made", "name: order_placed"))
    d = plan_json(project)["destinations"][0]  # type: ignore[index]
    assert sum(d["events_to_send"].values()) == 0
    apply(project)
    assert event_count(emulator) == sent


def test_a_state_from_before_stream_identities_is_adopted(project: Path,
                                                          emulator: Emulator) -> None:
    """Ledgers written before streams had identities kept event rows under the stream's name."""
    import sqlite3

    apply(project)
    sent = event_count(emulator)
    db = sqlite3.connect(project / ".brazecfg" / "ledger.sqlite")
    with db:
        db.execute("UPDATE events SET stream = 'purchase_made'")
    db.close()
    d = plan_json(project)["destinations"][0]  # type: ignore[index]
    assert sum(d["events_to_send"].values()) == 0
    assert d["stream_renames"] == {"purchase_made": "purchases:id:event"}
    apply(project)
    assert event_count(emulator) == sent
    assert plan_json(project)["destinations"][0]["stream_renames"] == {}  # type: ignore[index]


def test_another_workspace_gets_every_record(project: Path, emulator: Emulator,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    apply(project)
    with Emulator(EmulatorConfig(port=0)) as other:
        monkeypatch.setenv("BRAZE_REST_ENDPOINT", other.url)
        text = cli("plan", str(project), "--now", NOW)
        assert "No changes" not in text.output
        assert "workspace of app/braze changed" in text.output
        d = plan_json(project)["destinations"][0]  # type: ignore[index]
        assert d["counts"]["create"] == 12 and d["counts"]["delete"] == 0
        assert sum(d["events_to_send"].values()) == event_count(emulator)
        apply(project)
        assert len(emulator_get(other.url, "users")["users"]) == 12
        assert event_count(other) == event_count(emulator)
        assert "No changes." in cli("plan", str(project), "--now", NOW).output
        assert other.url not in (project / ".brazecfg" / "ledger.sqlite").read_bytes().decode(
            errors="replace")


def test_a_new_subscription_group_id_subscribes_every_member(project: Path,
                                                             emulator: Emulator) -> None:
    apply(project)
    members = plan_json(project, "--full-refresh")
    dest = project / "destinations" / "braze_users.yml"
    old = "6f0b5c0e-7d4c-4a57-9a64-3c1f4c0a0001"
    new = "6f0b5c0e-7d4c-4a57-9a64-3c1f4c0a0002"
    dest.write_text(dest.read_text().replace(old, new))
    text = cli("plan", str(project), "--now", NOW)
    assert "another subscription group id" in text.output
    d = plan_json(project)["destinations"][0]  # type: ignore[index]
    joins = d["group_joins"]["high_value"]
    assert joins > 0
    apply(project)
    assert not requests(emulator, "/v2/subscription/status/set")  # they ride in the objects
    objects = [o for r in requests(emulator, "/users/track")
               for o in r["body"].get("attributes") or []]  # type: ignore[union-attr]
    ids = {o["external_id"] for o in objects for g in o.get("subscription_groups") or []
           if g["subscription_group_id"] == new and g["subscription_state"] == "subscribed"}
    assert len(ids) == joins
    assert "No changes." in cli("plan", str(project), "--now", NOW).output
    assert members  # the first plan ran


def test_a_changed_var_is_a_config_change_with_a_full_read(project: Path) -> None:
    apply(project)
    settings = project / "brazecfg.yml"
    settings.write_text(settings.read_text().replace("paid_status: paid", "paid_status: refunded"))
    out = plan_json(project)
    d = out["destinations"][0]  # type: ignore[index]
    assert d["read_since"] is None
    assert "config changed" in d["full_read_reason"]
    assert d["fields_set"].get("lifetime_value", 0) + d["fields_removed"].get(
        "lifetime_value", 0) > 0
    assert d["group_leaves"].get("high_value", 0) > 0
    assert any(c["resource"] == "property/ltv" for c in out["config_changes"])  # type: ignore[union-attr]


def test_a_removed_destination_is_shown_and_its_state_kept(project: Path,
                                                           emulator: Emulator) -> None:
    apply(project)
    (project / "destinations" / "braze_users.yml").unlink()
    out = cli("plan", str(project), "--now", NOW)
    assert out.exit_code == 0, out.output
    assert "braze_users removed from the config" in out.output
    assert "state rm destination/braze_users" in out.output
    applied = cli("apply", str(project), "--auto-approve", "--now", NOW)
    assert applied.exit_code == 0, applied.output
    import sqlite3

    db = sqlite3.connect(project / ".brazecfg" / "ledger.sqlite")
    assert db.execute("SELECT count(*) FROM records").fetchone()[0] == 12
    assert db.execute("SELECT count(*) FROM events").fetchone()[0] > 0
    db.close()


def test_a_missing_hash_key_with_a_state_is_an_error_not_a_new_key(project: Path) -> None:
    apply(project)
    key = project / ".brazecfg" / "hash.key"
    key.unlink()
    for cmd in (["plan"], ["apply", "--auto-approve"]):
        out = cli(*cmd, str(project), "--now", NOW)
        assert out.exit_code == 1
        assert "hash key" in out.stderr and "BRAZECFG_HASH_KEY" in out.stderr
    assert not key.exists()


def test_a_saved_plan_of_a_fresh_project_applies(project: Path, emulator: Emulator) -> None:
    saved = project.parent / "plan.json"
    a = cli("plan", str(project), "--now", NOW, "--format", "json", "--out", str(saved))
    b = cli("plan", str(project), "--now", NOW, "--format", "json")
    assert a.stdout == b.stdout  # a plan is a pure function of its inputs
    out = cli("apply", str(project), "--auto-approve", "--now", NOW, "--plan", str(saved))
    assert out.exit_code == 0, out.output
    assert len(emulator_get(emulator.url, "users")["users"]) == 12
    sql(project, "UPDATE users SET last_name = 'Byron' WHERE id = 1")


def test_a_state_made_before_bindings_says_which_workspace_it_will_be_bound_to(
        project: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 8 leftover: a state from before bindings records no workspace. Its first plan
    against another workspace once said "No changes" (the state was taken for that
    workspace's, unasked), and apply bound it silently. Now the plan says so and what apply
    records; once recorded, a change of workspace is caught as for any state."""
    apply(project)
    ledger = project / ".brazecfg" / "ledger.sqlite"
    db = sqlite3.connect(ledger)
    with db:
        db.execute("DELETE FROM meta WHERE key LIKE 'binding:%'")  # as made before bindings
    db.close()
    with Emulator(EmulatorConfig(port=0)) as other:
        monkeypatch.setenv("BRAZE_REST_ENDPOINT", other.url)
        text = cli("plan", str(project), "--now", NOW).output
        assert "No changes" not in text
        assert "records no Braze workspace yet" in text
        d = plan_json(project)["destinations"][0]  # type: ignore[index]
        assert any("apply records workspace " in why for why in d["binding_changes"]), d
    # back on the workspace the state was made with: the binding is confirmed by apply
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", emulator.url)
    text = cli("plan", str(project), "--now", NOW).output
    assert "records no Braze workspace yet" in text
    apply(project)
    assert not requests(emulator, "/users/delete")
    assert "No changes." in cli("plan", str(project), "--now", NOW).output
    with Emulator(EmulatorConfig(port=0)) as other:
        monkeypatch.setenv("BRAZE_REST_ENDPOINT", other.url)
        assert "workspace of app/braze changed" in cli("plan", str(project), "--now",
                                                       NOW).output
