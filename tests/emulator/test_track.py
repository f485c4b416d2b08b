from __future__ import annotations

from typing import Any

import pytest
import requests

from brazecfg.emulator import Emulator
from tests.emulator.conftest import MakeEmulator, event, purchase, user


def track(client: requests.Session, emu: Emulator, **body: Any) -> requests.Response:
    return client.post(f"{emu.url}/users/track", json=body)


def attrs(emu: Emulator, external_id: str) -> dict[str, Any]:
    found = emu.store.user(external_id)
    assert found is not None, f"{external_id} was not created"
    return found["attributes"]


def test_success_reports_processed_only_for_arrays_sent(
    emu: Emulator, client: requests.Session
) -> None:
    r = track(client, emu, attributes=[user("a", first_name="Ann")], events=[event("a")])
    assert r.status_code == 201
    assert r.json() == {"message": "success", "attributes_processed": 1, "events_processed": 1}


def test_76_objects_in_total_is_400_and_applies_nothing(
    emu: Emulator, client: requests.Session
) -> None:
    r = track(
        client,
        emu,
        attributes=[user(f"u{i}") for i in range(40)],
        events=[event(f"u{i}") for i in range(36)],
    )
    assert r.status_code == 400
    assert r.json()["message"] == "Max Input Length Exceeded"  # errors.md's name
    assert emu.store.stats()["users"] == 0
    ok = track(
        client,
        emu,
        attributes=[user(f"u{i}") for i in range(40)],
        events=[event(f"u{i}") for i in range(35)],
    )
    assert ok.status_code == 201
    assert emu.store.stats()["users"] == 40


def test_per_array_mode_allows_75_in_each_array(
    make_emulator: MakeEmulator, client: requests.Session
) -> None:
    emu = make_emulator(track_cap_mode="per_array")
    r = track(
        client,
        emu,
        attributes=[user(f"u{i}") for i in range(75)],
        events=[event(f"u{i}") for i in range(75)],
        purchases=[purchase(f"u{i}") for i in range(75)],
    )
    assert r.status_code == 201
    assert r.json()["purchases_processed"] == 75
    over = track(client, emu, attributes=[user(f"x{i}") for i in range(76)])
    assert over.status_code == 400
    assert emu.store.user("x0") is None


def test_rejected_objects_are_listed_and_the_rest_applied(
    emu: Emulator, client: requests.Session
) -> None:
    r = track(
        client,
        emu,
        attributes=[
            user("a", email_subscribe="yes"),
            user("b", first_name="Bo"),
            user("c", dob="1990-13-01"),
        ],
        events=[event("a"), {"external_id": "a", "name": "no-time"}],
        purchases=[purchase("b", currency="DOLLARS")],
    )
    assert r.status_code == 201
    body = r.json()
    assert body["attributes_processed"] == 1
    assert body["events_processed"] == 1
    assert body["purchases_processed"] == 0
    assert body["errors"] == [
        {
            "index": 0,
            "input_array": "attributes",
            "type": "'email_subscribe' must be 'subscribed', 'unsubscribed', or 'opted_in'",
        },
        {
            "index": 2,
            "input_array": "attributes",
            "type": "'dob' must be a date in the format 'YYYY-MM-DD'",
        },
        {"index": 1, "input_array": "events", "type": "'time' is required"},
        {
            "index": 0,
            "input_array": "purchases",
            "type": "'currency' must be a three-letter ISO 4217 currency code",
        },
    ]
    assert attrs(emu, "b") == {"first_name": "Bo"}
    # The valid event still created "a", but none of a's rejected attributes landed.
    assert attrs(emu, "a") == {}
    assert len(emu.store.user("a")["events"]) == 1
    assert emu.store.user("c") is None


def test_nothing_valid_is_400_with_errors(emu: Emulator, client: requests.Session) -> None:
    r = track(client, emu, attributes=[user("a", gender="male"), {"first_name": "nobody"}])
    assert r.status_code == 400
    errors = r.json()["errors"]
    assert [(e["index"], e["input_array"]) for e in errors] == [
        (0, "attributes"),
        (1, "attributes"),
    ]
    assert "'gender'" in errors[0]["type"]
    assert emu.store.stats()["users"] == 0


def test_empty_request_is_400(emu: Emulator, client: requests.Session) -> None:
    assert track(client, emu).status_code == 400
    assert track(client, emu, attributes="nope").status_code == 400


def test_more_than_one_identifier_rejects_that_object(
    emu: Emulator, client: requests.Session
) -> None:
    r = track(client, emu, attributes=[{"external_id": "a", "braze_id": "b", "x": 1}, user("ok")])
    assert r.status_code == 201
    assert r.json()["errors"][0]["index"] == 0
    assert r.json()["errors"][0]["type"] == (
        "You must specify only one of 'external_id', 'user_alias' or 'braze_id'"
    )
    assert emu.store.user("a") is None


def test_external_id_is_limited_to_987_bytes(emu: Emulator, client: requests.Session) -> None:
    r = track(client, emu, attributes=[user("é" * 494), user("e" * 987)])  # 988 bytes, 987 bytes
    assert r.json()["attributes_processed"] == 1
    assert r.json()["errors"][0]["index"] == 0


def test_update_existing_only_does_not_create(emu: Emulator, client: requests.Session) -> None:
    track(client, emu, attributes=[user("known", first_name="K")])
    r = track(
        client,
        emu,
        attributes=[
            user("ghost", first_name="G", _update_existing_only=True),
            user("known", last_name="L", _update_existing_only=True),
        ],
        events=[event("ghost2", _update_existing_only=True)],
    )
    assert r.status_code == 201
    # Braze accepts such objects (it cannot know yet whether the profile exists).
    assert r.json()["attributes_processed"] == 2
    assert emu.store.user("ghost") is None
    assert emu.store.user("ghost2") is None
    assert attrs(emu, "known") == {"first_name": "K", "last_name": "L"}


def test_user_alias_defaults_to_update_only(emu: Emulator, client: requests.Session) -> None:
    alias = {"alias_name": "a@x.io", "alias_label": "email"}
    track(client, emu, attributes=[{"user_alias": alias, "first_name": "skipped"}])
    assert emu.store.stats()["users"] == 0
    track(
        client,
        emu,
        attributes=[{"user_alias": alias, "first_name": "made", "_update_existing_only": False}],
    )
    users = emu.store.users()
    assert [(u["external_id"], u["attributes"]) for u in users] == [(None, {"first_name": "made"})]
    assert users[0]["user_aliases"] == [{"alias_label": "email", "alias_name": "a@x.io"}]


def test_null_removes_an_attribute(emu: Emulator, client: requests.Session) -> None:
    track(client, emu, attributes=[user("a", first_name="A", plan="gold", home_city="Oslo")])
    track(client, emu, attributes=[user("a", plan=None, home_city=None)])
    assert attrs(emu, "a") == {"first_name": "A"}


@pytest.mark.parametrize(
    ("field", "value", "sentence"),
    [
        ("language", "english", "'language' must be an ISO-639-1 language code"),
        ("gender", "X", "'gender' must be 'M', 'F', 'O', 'N', 'P', or null"),
        (
            "push_subscribe",
            "maybe",
            "'push_subscribe' must be 'subscribed', 'unsubscribed', or 'opted_in'",
        ),
        (
            "email_open_tracking_disabled",
            "yes",
            "'email_open_tracking_disabled' must be true or false",
        ),
        ("email", "not-an-email", "'email' must be a valid email address"),
        ("first_name", "x" * 256, "'first_name' must be at most 255 characters"),
        ("nickname", "x" * 256, "'nickname' must be at most 255 characters"),
        (
            "current_location",
            {"longitude": 200, "latitude": 0},
            "'current_location' must have a longitude in [-180, 180] and a latitude in [-90, 90]",
        ),
    ],
)
def test_standard_field_errors(
    emu: Emulator, client: requests.Session, field: str, value: Any, sentence: str
) -> None:
    r = track(client, emu, attributes=[user("a", **{field: value})])
    assert r.status_code == 400
    assert r.json()["errors"] == [{"index": 0, "input_array": "attributes", "type": sentence}]


def test_valid_standard_fields_are_stored(emu: Emulator, client: requests.Session) -> None:
    fields = {
        "first_name": "A",
        "email": "a@example.com",
        "phone": "+4712345678",
        "country": "NO",
        "dob": "1990-02-28",
        "gender": "F",
        "language": "nb",
        "time_zone": "Europe/Oslo",
        "email_subscribe": "opted_in",
        "email_click_tracking_disabled": False,
        "current_location": {"longitude": 10.7, "latitude": 59.9},
    }
    r = track(client, emu, attributes=[user("a", **fields)])
    assert r.status_code == 201
    assert attrs(emu, "a") == fields


def test_custom_arrays_inc_and_nested_objects(
    make_emulator: MakeEmulator, client: requests.Session
) -> None:
    emu = make_emulator(max_array_length=3)
    track(
        client,
        emu,
        attributes=[
            user(
                "a",
                tags=["x", "y", "x"],
                visits={"inc": 2},
                prefs={"color": "red", "size": {"w": 1}},
            )
        ],
    )
    assert attrs(emu, "a")["tags"] == ["x", "y"]
    track(
        client,
        emu,
        attributes=[
            user(
                "a",
                tags={"add": ["z", "w"], "remove": ["x"]},
                visits={"inc": 3},
                prefs={"size": {"h": 2}},
                _merge_objects=True,
            )
        ],
    )
    a = attrs(emu, "a")
    assert a["tags"] == ["y", "z", "w"]
    assert a["visits"] == 5
    assert a["prefs"] == {"color": "red", "size": {"w": 1, "h": 2}}
    track(client, emu, attributes=[user("a", tags={"add": ["v"]})])
    assert attrs(emu, "a")["tags"] == ["z", "w", "v"]  # over the cap the oldest value goes
    r = track(client, emu, attributes=[user("a", tags=["1", "2", "3", "4"])])
    assert r.status_code == 400 and "at most 3 values" in r.json()["errors"][0]["type"]


def test_subscription_groups_inside_attributes(emu: Emulator, client: requests.Session) -> None:
    groups = [
        {"subscription_group_id": "1a4f7a5e-0000-4000-8000-000000000001", "subscription_state": "subscribed"},
        {"subscription_group_id": "1a4f7a5e-0000-4000-8000-000000000002", "subscription_state": "unsubscribed"},
    ]
    assert track(client, emu, attributes=[user("a", subscription_groups=groups)]).status_code == 201
    assert emu.store.user("a")["subscription_groups"] == {
        "1a4f7a5e-0000-4000-8000-000000000001": "subscribed",
        "1a4f7a5e-0000-4000-8000-000000000002": "unsubscribed",
    }
    bad = track(
        client, emu, attributes=[user("b", subscription_groups=[{"subscription_group_id": "g"}])]
    )
    assert bad.status_code == 400


def test_events_and_purchases_are_never_deduplicated(
    emu: Emulator, client: requests.Session
) -> None:
    body = {"events": [event("a", properties={"k": 1})], "purchases": [purchase("a", quantity=2)]}
    track(client, emu, **body)
    track(client, emu, **body)
    stored = emu.store.user("a")
    assert len(stored["events"]) == 2
    assert stored["events"][0] == {
        "name": "opened",
        "time": "2024-05-01T10:00:00Z",
        "properties": {"k": 1},
    }
    assert len(stored["purchases"]) == 2
    assert emu.store.stats()["events"] == 2
    assert emu.store.stats()["purchases"] == 2


@pytest.mark.parametrize(
    ("bad", "sentence"),
    [
        ({"quantity": 101}, "'quantity' must be an integer from 1 to 100"),
        ({"price": "9.50"}, "'price' must be a number"),
        ({"time": "yesterday"}, "'time' must be an ISO-8601 datetime string"),
        ({"product_id": None}, "'product_id' is required"),
    ],
)
def test_purchase_errors(
    emu: Emulator, client: requests.Session, bad: dict[str, Any], sentence: str
) -> None:
    r = track(client, emu, purchases=[purchase("a", **bad)])
    assert r.status_code == 400
    assert r.json()["errors"][0]["type"] == sentence


def test_email_identifies_when_no_primary_identifier(
    emu: Emulator, client: requests.Session
) -> None:
    track(client, emu, attributes=[user("a", email="a@example.com")])
    track(client, emu, attributes=[{"email": "a@example.com", "last_name": "Viaemail"}])
    assert emu.store.stats()["users"] == 1
    assert attrs(emu, "a")["last_name"] == "Viaemail"
