"""/users/delete, /users/export/ids and both subscription endpoints."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests

from brazecfg.emulator import DEFAULT_API_KEY, Emulator
from tests.emulator.conftest import event, purchase, user


@pytest.fixture
def seeded(emu: Emulator, client: requests.Session) -> Emulator:
    r = client.post(
        f"{emu.url}/users/track",
        json={
            "attributes": [
                user("a", first_name="Ann", plan="gold"),
                user("b", email="b@example.com"),
                user("c"),
            ],
            "events": [event("a"), event("a")],
            "purchases": [purchase("a", quantity=2)],
        },
    )
    assert r.status_code == 201
    return emu


def post(client: requests.Session, emu: Emulator, path: str, body: Any) -> requests.Response:
    return client.post(f"{emu.url}{path}", json=body)


def test_delete_counts_ids_queued_known_or_not(
    seeded: Emulator, client: requests.Session
) -> None:
    """Recorded: Braze answered "deleted": 4 for 4 ids when only 2 or 3 existed."""
    r = post(client, seeded, "/users/delete", {"external_ids": ["a", "nobody", "a"]})
    assert r.status_code == 201
    assert r.json() == {"deleted": 3, "message": "success"}
    assert seeded.store.user("a") is None
    stats = seeded.store.stats()
    assert (stats["users"], stats["events"], stats["purchases"]) == (2, 0, 0)


def test_delete_by_braze_id(seeded: Emulator, client: requests.Session) -> None:
    braze_id = seeded.store.user("b")["braze_id"]
    r = post(client, seeded, "/users/delete", {"braze_ids": [braze_id]})
    assert r.json()["deleted"] == 1
    assert seeded.store.user("b") is None


def test_delete_more_than_50_ids_is_400(seeded: Emulator, client: requests.Session) -> None:
    r = post(
        client, seeded, "/users/delete", {"external_ids": ["a"] + [f"x{i}" for i in range(50)]}
    )
    assert r.status_code == 400
    assert r.json()["message"] == "The max number of ids per request was exceeded"
    assert seeded.store.user("a") is not None
    assert (
        post(
            client, seeded, "/users/delete", {"external_ids": [f"x{i}" for i in range(50)]}
        ).status_code
        == 201
    )


def test_export_ids_lists_unknown_ids(seeded: Emulator, client: requests.Session) -> None:
    r = post(client, seeded, "/users/export/ids", {"external_ids": ["a", "ghost"]})
    assert r.status_code == 201
    body = r.json()
    assert body["invalid_user_ids"] == ["ghost"]
    assert body["message"] == "success"
    [a] = body["users"]
    assert a["external_id"] == "a"
    assert a["first_name"] == "Ann"
    assert a["custom_attributes"] == {"plan": "gold"}
    assert a["custom_events"][0]["name"] == "opened" and a["custom_events"][0]["count"] == 2
    assert a["purchases"][0]["count"] == 1
    assert a["total_revenue"] == 19.0


def test_export_ids_fields_to_export_and_no_invalid_key_when_all_found(
    seeded: Emulator, client: requests.Session
) -> None:
    r = post(
        client,
        seeded,
        "/users/export/ids",
        {"external_ids": ["a", "b"], "fields_to_export": ["email", "custom_attributes"]},
    )
    body = r.json()
    assert "invalid_user_ids" not in body
    assert body["users"] == [
        {"external_id": "a", "custom_attributes": {"plan": "gold"}},
        {"external_id": "b", "email": "b@example.com"},  # none: no custom_attributes key
    ]


def test_export_ids_cap_is_50(seeded: Emulator, client: requests.Session) -> None:
    assert (
        post(
            client, seeded, "/users/export/ids", {"external_ids": [str(i) for i in range(51)]}
        ).status_code
        == 400
    )


def test_subscription_set_v1(seeded: Emulator, client: requests.Session) -> None:
    r = post(
        client,
        seeded,
        "/subscription/status/set",
        {
            "subscription_group_id": "1a4f7a5e-0000-4000-8000-0000000000aa",
            "subscription_state": "subscribed",
            "external_id": ["a", "b", "ghost"],
        },
    )
    assert r.status_code == 201
    assert r.json() == {"message": "success"}
    assert seeded.store.user("a")["subscription_groups"] == {"1a4f7a5e-0000-4000-8000-0000000000aa": "subscribed"}
    assert seeded.store.user("b")["subscription_groups"] == {"1a4f7a5e-0000-4000-8000-0000000000aa": "subscribed"}
    assert seeded.store.user("ghost") is None  # unknown ids are ignored, not created
    post(
        client,
        seeded,
        "/subscription/status/set",
        {
            "subscription_group_id": "1a4f7a5e-0000-4000-8000-0000000000aa",
            "subscription_state": "unsubscribed",
            "email": "b@example.com",
        },
    )
    assert seeded.store.user("b")["subscription_groups"] == {"1a4f7a5e-0000-4000-8000-0000000000aa": "unsubscribed"}


@pytest.mark.parametrize(
    "body",
    [
        {"subscription_group_id": "g", "subscription_state": "maybe", "external_id": ["a"]},
        {"subscription_state": "subscribed", "external_id": ["a"]},
        {"subscription_group_id": "g", "subscription_state": "subscribed"},
        {
            "subscription_group_id": "g",
            "subscription_state": "subscribed",
            "external_id": [str(i) for i in range(51)],
        },
        {
            "subscription_group_id": "g",
            "subscription_state": "subscribed",
            "email": ["a@x.io"],
            "phone": ["+1"],
        },
    ],
)
def test_subscription_set_v1_rejects(
    seeded: Emulator, client: requests.Session, body: dict[str, Any]
) -> None:
    r = post(client, seeded, "/subscription/status/set", body)
    assert r.status_code == 400
    assert r.json()["message"]
    assert seeded.store.user("a")["subscription_groups"] == {}


def test_subscription_set_v2(seeded: Emulator, client: requests.Session) -> None:
    r = post(
        client,
        seeded,
        "/v2/subscription/status/set",
        {
            "subscription_groups": [
                {
                    "subscription_group_id": "1a4f7a5e-0000-4000-8000-000000000001",
                    "subscription_state": "subscribed",
                    "external_ids": ["a", "c"],
                },
                {
                    "subscription_group_id": "1a4f7a5e-0000-4000-8000-000000000002",
                    "subscription_state": "unsubscribed",
                    "external_ids": ["a"],
                },
            ]
        },
    )
    assert r.status_code == 201
    assert seeded.store.user("a")["subscription_groups"] == {
        "1a4f7a5e-0000-4000-8000-000000000001": "subscribed",
        "1a4f7a5e-0000-4000-8000-000000000002": "unsubscribed",
    }
    assert seeded.store.user("c")["subscription_groups"] == {"1a4f7a5e-0000-4000-8000-000000000001": "subscribed"}


def test_subscription_set_v2_checks_every_group_before_applying(
    seeded: Emulator, client: requests.Session
) -> None:
    r = post(
        client,
        seeded,
        "/v2/subscription/status/set",
        {
            "subscription_groups": [
                {
                    "subscription_group_id": "1a4f7a5e-0000-4000-8000-000000000001",
                    "subscription_state": "subscribed",
                    "external_ids": ["a"],
                },
                {
                    "subscription_group_id": "1a4f7a5e-0000-4000-8000-000000000002",
                    "subscription_state": "subscribed",
                    "external_ids": [str(i) for i in range(51)],
                },
            ]
        },
    )
    assert r.status_code == 400
    assert seeded.store.user("a")["subscription_groups"] == {}


def test_concurrent_clients_lose_nothing(emu: Emulator) -> None:
    def worker(n: int) -> None:
        with requests.Session() as s:
            s.headers["Authorization"] = f"Bearer {DEFAULT_API_KEY}"
            for i in range(10):
                body = {
                    "attributes": [user("shared", hits={"inc": 1})],
                    "events": [event(f"w{n}-{i}")],
                }
                assert s.post(f"{emu.url}/users/track", json=body).status_code == 201

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert emu.store.user("shared")["attributes"]["hits"] == 80
    assert emu.store.stats()["events"] == 80
    assert emu.store.stats()["requests"]["/users/track"] == {"201": 80}
