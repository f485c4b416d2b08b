"""/users/track/bulk, opted into per Braze app (`track_endpoint: bulk`): profile writes and
their subscription group changes go there, up to 1,000 objects a request; events stay on
/users/track; a key without users.track.bulk fails in one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from brazecfg.emulator import ALL_PERMISSIONS, DEFAULT_API_KEY, EmulatorConfig
from tests.delivery_project import GROUP_ID, make_project
from tests.test_delivery import apply, assert_braze_holds_the_warehouse, plan, profiles


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRAZE_API_KEY", raising=False)
    monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)


def test_an_app_that_opts_into_bulk_writes_profiles_there(tmp_path: Path, start: Any) -> None:
    gen = make_project(tmp_path, 2500, braze_options={"track_endpoint": "bulk"})
    emu = start(EmulatorConfig(port=0))
    text = plan(gen, "--format", "json").stdout
    events = sum(json.loads(text)["destinations"][0]["events_to_send"].values())
    out = apply(gen)
    assert out.exit_code == 0, out.output
    bulk = emu.store.requests("/users/track/bulk")
    sizes = [len(json.loads(e.body)["attributes"]) for e in bulk if e.status == 201]
    assert sizes and sorted(sizes) == [500, 1000, 1000]  # 2,500 users, 1,000 a request
    track = [json.loads(e.body) for e in emu.store.requests("/users/track")]
    assert not any(b.get("attributes") for b in track)  # no profile write went there
    assert sum(len(b.get("events") or []) for b in track) == events > 0
    held = profiles(emu)
    assert_braze_holds_the_warehouse(gen, held)  # memberships included
    assert any(u["subscription_groups"].get(GROUP_ID) == "subscribed" for u in held.values())
    assert "No changes." in plan(gen).output


def test_a_key_without_the_bulk_permission_fails_in_one_line(tmp_path: Path,
                                                              start: Any) -> None:
    gen = make_project(tmp_path, 20, events=False, braze_options={"track_endpoint": "bulk"},
                       destination={"respect_opt_outs": False})
    keys = {DEFAULT_API_KEY: ALL_PERMISSIONS - {"users.track.bulk"}}
    emu = start(EmulatorConfig(port=0, api_keys=keys))
    out = apply(gen)
    assert out.exit_code == 1
    assert "lacks the permission for /users/track/bulk (403)" in out.output
    assert "Traceback" not in out.output and DEFAULT_API_KEY not in out.output
    assert not emu.store.users()


def test_the_emulator_holds_bulk_to_its_caps(start: Any) -> None:
    import urllib.error
    import urllib.request

    emu = start(EmulatorConfig(port=0, bulk_track_cap=3))

    def post(objects: list[dict[str, Any]]) -> int:
        req = urllib.request.Request(f"{emu.url}/users/track/bulk",
                                     data=json.dumps({"attributes": objects}).encode(),
                                     headers={"Authorization": f"Bearer {DEFAULT_API_KEY}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    assert post([{"external_id": str(i), "a": i} for i in range(4)]) == 400
    assert post([{"external_id": str(i), "a": i, "subscription_groups": [
        {"subscription_group_id": GROUP_ID, "subscription_state": "subscribed"}]}
        for i in range(3)]) == 201
    assert {u["external_id"] for u in emu.store.users()} == {"0", "1", "2"}
    assert emu.store.user("1")["subscription_groups"] == {GROUP_ID: "subscribed"}  # type: ignore[index]
