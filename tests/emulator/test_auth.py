from __future__ import annotations

import requests

from brazecfg.emulator import ALL_PERMISSIONS, Emulator
from tests.emulator.conftest import MakeEmulator, user

TRACK = {"attributes": [user("u1", first_name="Ann")]}


def test_missing_key_is_401(emu: Emulator) -> None:
    with requests.Session() as s:
        r = s.post(f"{emu.url}/users/track", json=TRACK)
    assert r.status_code == 401
    assert r.json()["message"].startswith("Invalid API key")
    assert emu.store.users() == []


def test_unknown_key_is_401_and_echoed_like_braze(emu: Emulator) -> None:
    with requests.Session() as s:
        r = s.post(
            f"{emu.url}/users/track", json=TRACK, headers={"Authorization": "Bearer wrong-key-123"}
        )
    assert r.status_code == 401
    assert r.json() == {"message": "Invalid API key: wrong-key-123"}


def test_scheme_is_case_insensitive(emu: Emulator) -> None:
    with requests.Session() as s:
        r = s.post(
            f"{emu.url}/users/track",
            json=TRACK,
            headers={"Authorization": "bEaReR local-emulator-key"},
        )
    assert r.status_code == 201
    assert [u["external_id"] for u in emu.store.users()] == ["u1"]


def test_key_without_permission_is_403(make_emulator: MakeEmulator) -> None:
    emu = make_emulator(
        api_keys={"export-only": frozenset({"users.export.ids"}), "all": ALL_PERMISSIONS}
    )
    with requests.Session() as s:
        s.headers["Authorization"] = "Bearer export-only"
        denied = s.post(f"{emu.url}/users/track", json=TRACK)
        allowed = s.post(f"{emu.url}/users/export/ids", json={"external_ids": ["u1"]})
    assert denied.status_code == 403
    assert denied.json() == {"message": "Access Denied"}
    assert allowed.status_code == 201
    assert emu.store.users() == []


def test_unknown_path_and_wrong_method_are_404(emu: Emulator, client: requests.Session) -> None:
    assert client.post(f"{emu.url}/users/nope", json={}).status_code == 404
    assert client.get(f"{emu.url}/users/track").status_code == 404


def test_malformed_json_is_400(emu: Emulator, client: requests.Session) -> None:
    r = client.post(
        f"{emu.url}/users/track",
        data=b'{"attributes": [',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400
    assert "JSON" in r.json()["message"]
    nan = client.post(
        f"{emu.url}/users/track", data=b'{"attributes": [{"external_id": "a", "x": NaN}]}'
    )
    assert nan.status_code == 400
    assert emu.store.users() == []


def test_chunked_body_is_read(emu: Emulator, client: requests.Session) -> None:
    def chunks():  # a generator body makes requests use Transfer-Encoding: chunked
        yield b'{"attributes": [{"external_id": '
        yield b'"chunky", "first_name": "C"}]}'

    r = client.post(f"{emu.url}/users/track", data=chunks())
    assert r.status_code == 201
    assert emu.store.user("chunky")["attributes"] == {"first_name": "C"}
