"""Saved state, and serve() as the CLI runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from brazecfg.emulator import Emulator, EmulatorConfig, StateFileError
from tests.emulator.conftest import MakeEmulator, event, user


def test_state_round_trips_through_save_and_restart(
    make_emulator: MakeEmulator, client: requests.Session, tmp_path: Path
) -> None:
    state = tmp_path / "emulator.json"
    emu = make_emulator(state_file=str(state))
    client.post(
        f"{emu.url}/users/track",
        json={
            "attributes": [
                user(
                    "a",
                    first_name="A",
                    tags=["x"],
                    subscription_groups=[
                        {"subscription_group_id": "g", "subscription_state": "subscribed"}
                    ],
                ),
                {
                    "user_alias": {"alias_name": "n", "alias_label": "l"},
                    "_update_existing_only": False,
                },
            ],
            "events": [event("a"), event("a")],
        },
    )
    saved = client.post(f"{emu.url}/_emulator/save")
    assert saved.json()["users"] == 2
    before = client.get(f"{emu.url}/_emulator/users").json()
    assert os.listdir(tmp_path) == ["emulator.json"]  # the temp file was renamed into place

    again = make_emulator(state_file=str(state))
    after = client.get(f"{again.url}/_emulator/users").json()
    assert after == before
    assert again.store.stats()["events"] == 2
    # New profiles do not reuse a braze_id from the saved ones.
    client.post(f"{again.url}/users/track", json={"attributes": [user("b")]})
    ids = [u["braze_id"] for u in again.store.users()]
    assert len(set(ids)) == 3


def test_stop_saves_state(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    with Emulator(EmulatorConfig(port=0, state_file=str(state))) as emu, requests.Session() as s:
        s.headers["Authorization"] = "Bearer local-emulator-key"
        s.post(f"{emu.url}/users/track", json={"attributes": [user("kept")]})
    data = json.loads(state.read_text())
    assert [u["external_id"] for u in data["users"]] == ["kept"]


def test_newer_state_file_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    state.write_text(json.dumps({"version": 99, "users": [], "next_id": 1}))
    with pytest.raises(StateFileError, match="newer brazecfg"):
        Emulator(EmulatorConfig(port=0, state_file=str(state))).start()


def test_unreadable_state_file_is_a_state_error(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    state.write_text("{not json")
    with pytest.raises(StateFileError, match="not a brazecfg emulator state file"):
        Emulator(EmulatorConfig(port=0, state_file=str(state))).start()


def test_serve_announces_once_and_saves_on_sigterm(tmp_path: Path) -> None:
    state = tmp_path / "served.json"
    code = (
        "import sys\n"
        "from brazecfg.emulator import EmulatorConfig, serve\n"
        f"serve(EmulatorConfig(port=0, state_file={str(state)!r}),"
        " announce=lambda line: (print(line), sys.stdout.flush()))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "local-emulator-key" not in line
        url = line.split()[4]
        with requests.Session() as s:
            r = s.post(
                f"{url}/users/track",
                json={"attributes": [user("served")]},
                headers={"Authorization": "Bearer local-emulator-key"},
            )
        assert r.status_code == 201
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert rest == ""  # announced once, nothing else printed
    assert [u["external_id"] for u in json.loads(state.read_text())["users"]] == ["served"]
