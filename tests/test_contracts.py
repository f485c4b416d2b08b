"""Braze contracts differ, and brazecfg follows the one declared per app: through the CLI, an
apply against the emulator configured with the same contract (issue 13, item 8).

Pace (hourly windows, the export rate, MAU Retry-After) is in tests/braze/test_contract_pace.py,
where one fake clock can cross an hour boundary.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from tests.delivery_project import EVENT, make_project
from tests.helpers import Run, cli


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRAZE_API_KEY", raising=False)
    monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)




def apply(root: Path) -> Run:
    return cli("apply", str(root), "--auto-approve")


def track_bodies(emu: Emulator, status: int | None = None) -> list[dict[str, Any]]:
    return [json.loads(e.body) for e in emu.store.requests("/users/track")
            if status is None or e.status == status]


def sizes(body: dict[str, Any]) -> tuple[int, int, int]:
    return (len(body.get("attributes", [])), len(body.get("events", [])),
            len(body.get("purchases", [])))


PURCHASES = {"name": "purchases", "type": "purchase", "source": "page_views", "key": "id",
             "time": "created_at", "product_id": "page", "price": "id",
             "currency_code": "USD"}


def test_50_objects_per_request_on_mau_plans(tmp_path: Path, start: Any) -> None:
    gen = make_project(tmp_path, 180, braze_options={"contract": {"track_objects": 50}})
    emu = start(EmulatorConfig(port=0, track_cap=50))
    out = apply(gen.root)
    assert out.exit_code == 0, out.output
    bodies = track_bodies(emu)
    assert bodies and all(sum(sizes(b)) <= 50 for b in bodies)
    assert max(sum(sizes(b)) for b in bodies) == 50  # full batches, not merely small ones
    assert len(emu.store.users()) == 180
    held = Counter(e["properties"]["row"] for u in emu.store.users() for e in u["events"])
    assert sorted(held) == sorted(e.id for e in gen.events) and set(held.values()) == {1}


def test_without_the_contract_a_50_object_plan_refuses_the_batches(
        tmp_path: Path, start: Any) -> None:
    """What the setting prevents: 75-object requests that such a workspace refuses whole."""
    gen = make_project(tmp_path, 180, events=False)
    emu = start(EmulatorConfig(port=0, track_cap=50))
    out = apply(gen.root)
    assert out.exit_code == 1
    refused = track_bodies(emu, 400)
    assert refused and all(sum(sizes(b)) == 75 for b in refused)


def test_per_array_contracts_fill_each_array(tmp_path: Path, start: Any) -> None:
    """Legacy contracts: 75 per array. Events and purchases share requests, 75 of each."""
    dest = {"events": [{"name": EVENT, "source": "page_views", "key": "id", "time": "created_at",
                        "properties": {"row": "id"}}, PURCHASES]}
    gen = make_project(tmp_path, 120, destination=dest,
                       braze_options={"contract": {"track_objects_per": "array"}})
    emu = start(EmulatorConfig(port=0, track_cap_mode="per_array"))
    out = apply(gen.root)
    assert out.exit_code == 0, out.output
    event_bodies = [b for b in track_bodies(emu) if "attributes" not in b]
    assert all(max(sizes(b)) <= 75 for b in event_bodies)
    assert any(sum(sizes(b)) > 75 for b in event_bodies)  # more than a total cap would allow
    stats = emu.store.stats()
    assert (stats["events"], stats["purchases"]) == (len(gen.events), len(gen.events))


def test_total_cap_contracts_keep_events_and_purchases_together_under_75(
        tmp_path: Path, start: Any) -> None:
    dest = {"events": [{"name": EVENT, "source": "page_views", "key": "id", "time": "created_at",
                        "properties": {"row": "id"}}, PURCHASES]}
    gen = make_project(tmp_path, 120, destination=dest)
    emu = start(EmulatorConfig(port=0))  # 75 in total, the default
    out = apply(gen.root)
    assert out.exit_code == 0, out.output
    assert all(sum(sizes(b)) <= 75 for b in track_bodies(emu))
    assert "400" not in emu.store.stats()["requests"]["/users/track"]


def test_an_unknown_contract_key_is_a_located_error(tmp_path: Path) -> None:
    gen = make_project(tmp_path, 1, braze_options={"contract": {"track_object": 50}})
    out = cli("validate", str(gen.root))
    assert out.exit_code == 1
    assert "apps/braze.yml" in out.output and "track_object" in out.output
    assert "Traceback" not in out.output


def test_requests_stay_under_braze_s_4_mb_body_limit(tmp_path: Path, start: Any) -> None:
    """75 users with a full array (500 values of 255 characters, ~128 KB each) would make a
    ~9.6 MB body, which Braze refuses: the batch is cut by size as well as by count."""
    gen = make_project(tmp_path, 80, events=False)
    tags = ",".join(f"{i:03d}" + "x" * 252 for i in range(500))
    gen.execute("UPDATE users SET tags = ?", (tags,))
    emu = start(EmulatorConfig(port=0))
    out = apply(gen.root)
    assert out.exit_code == 0, out.output
    sizes_ = [len(e.body) for e in emu.store.requests("/users/track")]
    assert len(sizes_) >= 3 and max(sizes_) < 4 * 1024 * 1024
    assert "413" not in emu.store.stats()["requests"]["/users/track"]
    held = emu.store.users()
    assert len(held) == 80 and all(len(u["attributes"]["tags"]) == 500 for u in held)


def test_enrich_lookups_under_export_lag(tmp_path: Path, start: Any) -> None:
    """Braze's export lags behind writes: an enrich plan right after another system created
    the users does not see them (skipped, never created), and sees them once the export has
    caught up. The emulator's export lag makes this testable."""
    import time

    import requests

    gen = make_project(tmp_path, 5, events=False, destination={"mode": "enrich",
                                                               "subscription_groups": {}})
    emu = start(EmulatorConfig(port=0, export_lag_seconds=3.0))
    body = {"attributes": [{"external_id": str(i)} for i in range(1, 4)]}
    r = requests.post(f"{emu.url}/users/track", json=body, timeout=10,
                      headers={"Authorization": "Bearer local-emulator-key"})
    assert r.status_code == 201
    sent = time.time()
    early = cli("plan", str(gen.root))
    assert time.time() - sent < 3.0  # the plan ran within the lag
    assert early.exit_code == 0, early.output
    assert "5 skipped" in early.output and "to enrich" not in early.output
    time.sleep(max(0.0, sent + 3.1 - time.time()))
    later = cli("plan", str(gen.root))
    assert "3 to enrich" in later.output and "2 skipped" in later.output, later.output
