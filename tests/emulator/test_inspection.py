"""The /_emulator/ endpoints and the request log."""

from __future__ import annotations

import requests

from brazecfg.emulator import DEFAULT_API_KEY, Emulator
from brazecfg.emulator.requestlog import RequestLog
from tests.emulator.conftest import event, user


def test_request_log_never_holds_the_authorization_header(
    emu: Emulator, client: requests.Session
) -> None:
    client.post(f"{emu.url}/users/track", json={"attributes": [user("a", first_name="A")]})
    with requests.Session() as s:
        s.post(
            f"{emu.url}/users/track", json={}, headers={"Authorization": "Bearer secret-typo-key"}
        )
    r = client.get(f"{emu.url}/_emulator/requests")
    assert DEFAULT_API_KEY not in r.text
    assert "secret-typo-key" not in r.text
    log = r.json()["requests"]
    assert [(e["method"], e["path"], e["status"]) for e in log] == [
        ("POST", "/users/track", 201),
        ("POST", "/users/track", 401),
    ]
    assert log[0]["body"] == {"attributes": [{"external_id": "a", "first_name": "A"}]}
    assert set(log[0]) == {"seq", "time", "method", "path", "status", "dropped", "body"}


def test_request_log_filters_and_is_capped() -> None:
    log = RequestLog(limit=3, max_bytes=1000)
    for i in range(5):
        log.add("POST", "/users/track" if i % 2 else "/users/delete", 201, b"{}")
    assert [e.seq for e in log.entries()] == [3, 4, 5]
    assert [e.seq for e in log.entries(path="/users/track")] == [4]
    assert sum(log.counts.values()) == 5  # stats keep counting past the cap
    big = RequestLog(limit=100, max_bytes=10)
    big.add("POST", "/x", 201, b"123456")
    big.add("POST", "/x", 201, b"123456")
    assert [e.seq for e in big.entries()] == [2]


def test_inspection_is_not_logged_and_stats_count_by_path_and_status(
    emu: Emulator, client: requests.Session
) -> None:
    client.post(f"{emu.url}/users/track", json={"events": [event("a"), event("b")]})
    client.post(f"{emu.url}/users/track", json={"events": [{"external_id": "a"}]})
    client.get(f"{emu.url}/_emulator/users")
    stats = client.get(f"{emu.url}/_emulator/stats").json()
    assert stats == {
        "users": 2,
        "events": 2,
        "purchases": 0,
        "requests_total": 2,
        "requests": {"/users/track": {"201": 1, "400": 1}},
    }


def test_users_are_sorted_and_fetchable_one_by_one(emu: Emulator, client: requests.Session) -> None:
    client.post(f"{emu.url}/users/track", json={"attributes": [user("b/2"), user("a"), user("c")]})
    listing = client.get(f"{emu.url}/_emulator/users").json()
    assert [u["external_id"] for u in listing["users"]] == ["a", "b/2", "c"]
    page = client.get(f"{emu.url}/_emulator/users", params={"offset": 1, "limit": 1}).json()
    assert [u["external_id"] for u in page["users"]] == ["b/2"] and page["total"] == 3
    one = client.get(f"{emu.url}/_emulator/users/b%2F2")
    assert one.status_code == 200 and one.json()["external_id"] == "b/2"
    assert client.get(f"{emu.url}/_emulator/users/nobody").status_code == 404


def test_reset_forgets_everything(emu: Emulator, client: requests.Session) -> None:
    client.post(f"{emu.url}/users/track", json={"attributes": [user("a")]})
    assert client.post(f"{emu.url}/_emulator/reset").status_code == 200
    assert client.get(f"{emu.url}/_emulator/users").json() == {"total": 0, "users": []}
    assert client.get(f"{emu.url}/_emulator/requests").json() == {"requests": []}


def test_health_and_unknown_inspection_path(emu: Emulator, client: requests.Session) -> None:
    assert client.get(f"{emu.url}/_emulator/health").json() == {"status": "ok"}
    assert client.get(f"{emu.url}/_emulator/nope").status_code == 404
    assert client.post(f"{emu.url}/_emulator/save").status_code == 400  # no state_file configured
