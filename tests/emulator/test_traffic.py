"""Rate limits, injected faults and latency."""

from __future__ import annotations

import time

import pytest
import requests

from brazecfg.emulator import Emulator
from brazecfg.emulator.traffic import RateLimiter
from tests.emulator.conftest import MakeEmulator, event, user


def send(client: requests.Session, emu: Emulator, external_id: str) -> requests.Response:
    return client.post(f"{emu.url}/users/track", json={"events": [event(external_id)]})


def test_every_api_response_carries_rate_limit_headers(
    emu: Emulator, client: requests.Session
) -> None:
    r = send(client, emu, "a")
    assert r.headers["X-RateLimit-Limit"] == "3000"
    assert r.headers["X-RateLimit-Remaining"] == "2999"
    reset = int(r.headers["X-RateLimit-Reset"])
    assert time.time() <= reset <= time.time() + 3 + 1
    bad = client.post(f"{emu.url}/users/delete", json={})
    assert bad.status_code == 400 and bad.headers["X-RateLimit-Limit"] == "20000"


def test_over_the_limit_is_429_and_applies_nothing(
    make_emulator: MakeEmulator, client: requests.Session
) -> None:
    emu = make_emulator(rate_limits={"/users/track": (2, 60.0)})
    assert [send(client, emu, f"u{i}").status_code for i in range(2)] == [201, 201]
    r = send(client, emu, "late")
    assert r.status_code == 429
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert r.headers["X-RateLimit-Limit"] == "2"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert int(r.headers["X-RateLimit-Reset"]) >= time.time()
    assert emu.store.user("late") is None
    # Inspection endpoints are never limited.
    assert client.get(f"{emu.url}/_emulator/stats").status_code == 200


def test_subscription_endpoints_share_one_bucket(
    make_emulator: MakeEmulator, client: requests.Session
) -> None:
    emu = make_emulator(rate_limits={"/subscription/status/set": (1, 60.0)})
    v1 = client.post(
        f"{emu.url}/subscription/status/set",
        json={
            "subscription_group_id": "1a4f7a5e-0000-4000-8000-0000000000bb",
            "subscription_state": "subscribed",
            "external_id": ["a"],
        },
    )
    v2 = client.post(
        f"{emu.url}/v2/subscription/status/set",
        json={
            "subscription_groups": [
                {
                    "subscription_group_id": "1a4f7a5e-0000-4000-8000-0000000000bb",
                    "subscription_state": "subscribed",
                    "external_ids": ["a"],
                }
            ]
        },
    )
    assert (v1.status_code, v2.status_code) == (201, 429)


def test_fixed_window_resets() -> None:
    now = [1000.0]
    limiter = RateLimiter({"/users/track": (1, 3.0)}, clock=lambda: now[0])
    first = limiter.take("/users/track")
    second = limiter.take("/users/track")
    assert first is not None and first.allowed and first.reset == 1002
    assert second is not None and not second.allowed and second.retry_after() == 2
    now[0] = 1002.0
    third = limiter.take("/users/track")
    assert third is not None and third.allowed and third.remaining == 0
    assert limiter.take("/unlimited") is None


def test_injected_429_every_third_request(
    make_emulator: MakeEmulator, client: requests.Session
) -> None:
    emu = make_emulator(fault_429_every=3)
    statuses = [send(client, emu, f"u{i}") for i in range(7)]
    assert [r.status_code for r in statuses] == [201, 201, 429, 201, 201, 429, 201]
    throttled = statuses[2]
    assert {
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "Retry-After",
    } <= set(throttled.headers)
    assert emu.store.user("u2") is None and emu.store.user("u5") is None
    assert emu.store.stats()["users"] == 5


def test_injected_500_applies_nothing(
    make_emulator: MakeEmulator, client: requests.Session
) -> None:
    emu = make_emulator(fault_500_every=2)
    first, second = send(client, emu, "a"), send(client, emu, "b")
    assert (first.status_code, second.status_code) == (201, 500)
    assert second.json() == {"message": "Internal Server Error"}
    assert emu.store.user("b") is None


def test_dropped_connection_answers_nothing_and_applies_nothing(
    make_emulator: MakeEmulator, client: requests.Session
) -> None:
    emu = make_emulator(fault_drop_every=2)
    assert send(client, emu, "a").status_code == 201
    with pytest.raises(requests.ConnectionError):
        send(client, emu, "dropped")
    assert send(client, emu, "c").status_code == 201  # the client reconnects
    assert emu.store.user("dropped") is None
    log = client.get(f"{emu.url}/_emulator/requests").json()["requests"]
    assert [(e["status"], e["dropped"]) for e in log] == [(201, False), (0, True), (201, False)]


def test_faults_count_only_authenticated_api_requests(
    make_emulator: MakeEmulator, client: requests.Session
) -> None:
    emu = make_emulator(fault_500_every=2)
    client.get(f"{emu.url}/_emulator/health")
    with requests.Session() as anonymous:
        assert anonymous.post(f"{emu.url}/users/track", json={}).status_code == 401
    assert send(client, emu, "a").status_code == 201
    assert send(client, emu, "b").status_code == 500


def test_latency_is_added(make_emulator: MakeEmulator, client: requests.Session) -> None:
    emu = make_emulator(latency_ms=150)
    started = time.perf_counter()
    assert (
        client.post(f"{emu.url}/users/track", json={"attributes": [user("a")]}).status_code == 201
    )
    assert time.perf_counter() - started >= 0.15
    started = time.perf_counter()
    client.get(f"{emu.url}/_emulator/health")
    assert time.perf_counter() - started < 0.15  # inspection is never slowed
