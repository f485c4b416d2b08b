"""Braze's other standard fields are mappable with their checks, and values Braze would map
are sent the way Braze stores them, so they do not re-diff forever (issue 13, items 7 and 9).
Through the CLI, against the emulator."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from tests.helpers import cli

ROWS = [
    # id, country, tz, first_session, fb_id, fb_friends, handle, followers, avatar
    (1, "Australia", "Eastern Time (US & Canada)", "2024-03-01T10:00:00Z", 1001, 12, "ada", 5,
     "https://example.com/a.png"),
    (2, "fr", "Europe/Paris", "2024-03-02 11:30:00", None, None, None, None, None),
    (3, "Atlantis", "Mars/Olympus", "not a time", 1003, 7, "grace", 9, "ftp://nope"),
]
PROPS = [("user_id", "string", "id"), ("country", "string", "country"),
         ("tz", "string", "tz"), ("first_session", "datetime", "first_session"),
         ("first_session_text", "string", "first_session"),
         ("fb_id", "integer", "fb_id"), ("fb_friends", "integer", "fb_friends"),
         ("handle", "string", "handle"), ("followers", "integer", "followers"),
         ("avatar", "string", "avatar")]
MAPPING = {"external_id": "user_id", "country": "country", "time_zone": "tz",
           "date_of_first_session": "first_session_text", "facebook.id": "fb_id",
           "facebook.num_friends": "fb_friends", "twitter.screen_name": "handle",
           "twitter.followers_count": "followers", "image_url": "avatar"}


def _json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2) + "\n"


def make(tmp_path: Path, mapping: dict[str, str] | None = None) -> Path:
    root = tmp_path / "project"
    for sub in ("apps", "models", "sources", "properties", "destinations"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(root / "warehouse.db")
    with con:
        con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, country TEXT, tz TEXT, "
                    "first_session TEXT, fb_id INTEGER, fb_friends INTEGER, handle TEXT, "
                    "followers INTEGER, avatar TEXT)")
        con.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", ROWS)
    con.close()
    (root / "brazecfg.yml").write_text("name: fields\n")
    (root / "apps" / "braze.yml").write_text(_json({
        "kind": "app", "name": "braze", "type": "braze",
        "options": {"api_key": "local-emulator-key",
                    "rest_endpoint": "{{ env('BRAZE_REST_ENDPOINT') }}"}}))
    (root / "apps" / "warehouse.yml").write_text(_json({
        "kind": "app", "name": "warehouse", "type": "sqlite",
        "options": {"path": "warehouse.db"}}))
    (root / "models" / "users.yml").write_text(_json(
        {"kind": "model", "name": "users", "primary_key": "user_id"}))
    (root / "sources" / "users.yml").write_text(_json(
        {"kind": "source", "name": "users_table", "app": "warehouse", "model": "users",
         "table": "users", "key": "id"}))
    (root / "properties" / "users.yml").write_text("---\n".join(
        _json({"kind": "property", "name": n, "source": "users_table", "type": t, "column": c})
        for n, t, c in PROPS))
    (root / "destinations" / "braze.yml").write_text(_json({
        "kind": "destination", "name": "braze_users", "app": "braze", "model": "users",
        "mode": "sync", "mapping": mapping or MAPPING}))
    return root


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
    with Emulator(EmulatorConfig(port=0)) as running:
        monkeypatch.setenv("BRAZE_REST_ENDPOINT", running.url)
        yield running


def test_standard_fields_arrive_as_standard_fields_and_settle(tmp_path: Path,
                                                              emu: Emulator) -> None:
    root = make(tmp_path)
    out = cli("apply", str(root), "--auto-approve")
    assert out.exit_code == 0, out.output  # user 3's bad values are reported, not sent
    a = emu.store.user("1")
    assert a is not None
    assert a["attributes"] == {
        "country": "AU",  # mapped as Braze maps it
        "time_zone": "America/New_York",  # the Rails name, sent as its IANA name
        "date_of_first_session": "2024-03-01T10:00:00Z",
        "facebook": {"id": "1001", "num_friends": 12},  # one hash, not custom attributes
        "twitter": {"screen_name": "ada", "followers_count": 5},
        "image_url": "https://example.com/a.png",
    }
    b = emu.store.user("2")
    assert b is not None
    assert b["attributes"] == {"country": "FR", "time_zone": "Europe/Paris",
                               "date_of_first_session": "2024-03-02T11:30:00Z"}
    c = emu.store.user("3")
    assert c is not None
    assert set(c["attributes"]) == {"facebook", "twitter"}  # every other value was refused
    for reason in ("Braze would set this one to NULL", "Braze would ignore this one",
                   "image_url must be an http(s) URL", "not an ISO 8601 date-time"):
        assert reason in out.output, reason
    again = cli("plan", str(root))
    assert again.exit_code == 0, again.output
    assert "to update" not in again.output and "to create" not in again.output, again.output


def test_a_changed_hash_key_resends_the_whole_hash(tmp_path: Path, emu: Emulator) -> None:
    root = make(tmp_path)
    assert cli("apply", str(root), "--auto-approve").exit_code == 0
    con = sqlite3.connect(root / "warehouse.db")
    with con:
        con.execute("UPDATE users SET fb_friends = 13 WHERE id = 1")
    con.close()
    before = len(emu.store.requests("/users/track"))
    assert cli("apply", str(root), "--auto-approve").exit_code == 0
    sent = [json.loads(e.body) for e in emu.store.requests("/users/track")[before:]]
    objects = [o for b in sent for o in b.get("attributes", []) if o["external_id"] == "1"]
    assert objects == [{"external_id": "1", "facebook": {"id": "1001", "num_friends": 13}}]


def test_a_hash_key_of_the_wrong_type_is_a_located_error(tmp_path: Path) -> None:
    root = make(tmp_path, {**MAPPING, "twitter.followers_count": "handle"})
    out = cli("validate", str(root))
    assert out.exit_code == 1
    assert "destinations/braze.yml" in out.output and "twitter.followers_count" in out.output
