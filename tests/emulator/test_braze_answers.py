"""Where the emulator used to differ from Braze (issue 13): each difference, over HTTP.

Sources: Grouparoo's recorded traffic (2021) and Braze's documentation, summarised in
shared/braze-api-facts.md.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from brazecfg.emulator import DEFAULT_API_KEY, Emulator
from tests.emulator.conftest import MakeEmulator, event, purchase, user

GROUP = "6f0b5c0e-7d4c-4a57-9a64-3c1f4c0a0001"


def post(client: requests.Session, emu: Emulator, path: str, body: Any) -> requests.Response:
    return client.post(f"{emu.url}{path}", json=body)


def export(client: requests.Session, emu: Emulator, *ids: str) -> dict[str, Any]:
    r = post(client, emu, "/users/export/ids", {"external_ids": list(ids)})
    assert r.status_code == 201
    body: dict[str, Any] = r.json()
    return body


def one(client: requests.Session, emu: Emulator, external_id: str) -> dict[str, Any]:
    users = export(client, emu, external_id)["users"]
    assert len(users) == 1, users
    found: dict[str, Any] = users[0]
    return found


# -- 1. the export user shape -----------------------------------------------------------------


def test_export_shape_is_the_recorded_one(emu: Emulator, client: requests.Session) -> None:
    assert post(client, emu, "/users/track", {"attributes": [user("a", first_name="Ann")]}
                ).status_code == 201
    got = one(client, emu, "a")
    assert set(got) == {"created_at", "external_id", "user_aliases", "appboy_id", "braze_id",
                        "first_name", "random_bucket", "total_revenue", "push_subscribe",
                        "email_subscribe"}  # no custom_attributes, custom_events, purchases
    assert got["appboy_id"] == got["braze_id"]
    assert isinstance(got["random_bucket"], int) and 0 <= got["random_bucket"] <= 9999
    assert (got["push_subscribe"], got["email_subscribe"]) == ("subscribed", "subscribed")
    assert one(client, emu, "a")["random_bucket"] == got["random_bucket"]  # fixed per profile


def test_export_keeps_real_counts_when_there_are_events(
    emu: Emulator, client: requests.Session
) -> None:
    post(client, emu, "/users/track", {"attributes": [user("a", plan="gold",
                                                           email_subscribe="opted_in")],
                                       "events": [event("a"), event("a")],
                                       "purchases": [purchase("a", quantity=2)]})
    got = one(client, emu, "a")
    assert got["custom_attributes"] == {"plan": "gold"}
    assert [(e["name"], e["count"]) for e in got["custom_events"]] == [("opened", 2)]
    assert [(p["name"], p["count"]) for p in got["purchases"]] == [("sku-1", 1)]
    assert got["total_revenue"] == 19.0
    assert got["email_subscribe"] == "opted_in"  # a set value wins over the default


# -- 3. values Braze maps or drops ---------------------------------------------------------------


@pytest.mark.parametrize("sent,stored", [("Australia", "AU"), ("au", "AU"),
                                         ("United States", "US"), ("  new   zealand ", "NZ")])
def test_country_names_are_mapped_best_effort(
    emu: Emulator, client: requests.Session, sent: str, stored: str
) -> None:
    r = post(client, emu, "/users/track", {"attributes": [user("a", country=sent)]})
    assert r.json() == {"message": "success", "attributes_processed": 1}
    assert one(client, emu, "a")["country"] == stored


def test_a_country_that_matches_nothing_is_set_to_null(
    emu: Emulator, client: requests.Session
) -> None:
    post(client, emu, "/users/track", {"attributes": [user("a", country="FR")]})
    r = post(client, emu, "/users/track", {"attributes": [user("a", country="Atlantis")]})
    assert r.status_code == 201 and "errors" not in r.json()
    assert "country" not in one(client, emu, "a")


def test_rails_time_zones_are_accepted_and_invalid_ones_ignored(
    emu: Emulator, client: requests.Session
) -> None:
    r = post(client, emu, "/users/track",
             {"attributes": [user("a", time_zone="Eastern Time (US & Canada)")]})
    assert r.status_code == 201 and "errors" not in r.json()
    assert one(client, emu, "a")["time_zone"] == "Eastern Time (US & Canada)"
    r = post(client, emu, "/users/track",
             {"attributes": [user("a", time_zone="Mars/Olympus", first_name="Ann")]})
    assert r.json() == {"message": "success", "attributes_processed": 1}  # not an error
    got = one(client, emu, "a")
    assert (got["time_zone"], got["first_name"]) == ("Eastern Time (US & Canada)", "Ann")


def test_dob_as_a_full_date_time_is_accepted(make_emulator: MakeEmulator,
                                             client: requests.Session) -> None:
    """Recorded 2021-11-22 #16: Braze took 1980-12-21T00:00:00.000Z and exported that form."""
    documented, recorded = make_emulator(), make_emulator(dob_export_format="datetime")
    for emu in (documented, recorded):
        r = post(client, emu, "/users/track",
                 {"attributes": [user("a", dob="1980-12-21T00:00:00.000Z")]})
        assert r.json() == {"message": "success", "attributes_processed": 1}
    assert one(client, documented, "a")["dob"] == "1980-12-21"
    assert one(client, recorded, "a")["dob"] == "1980-12-21T00:00:00.000Z"
    bad = post(client, documented, "/users/track", {"attributes": [user("b", dob="1980-13-01")]})
    assert bad.status_code == 400


# -- 4. rules Braze enforces --------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_missing_or_wrong_content_type_is_415(
    emu: Emulator, content_type: str | None
) -> None:
    headers = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
    if content_type:
        headers["Content-Type"] = content_type
    r = requests.post(f"{emu.url}/users/track", data=b'{"attributes": [{"external_id": "a"}]}',
                      headers=headers, timeout=10)
    assert r.status_code == 415
    assert emu.store.user("a") is None


def test_content_type_with_a_charset_is_json(emu: Emulator) -> None:
    r = requests.post(f"{emu.url}/users/track", data=b'{"attributes": [{"external_id": "a"}]}',
                      headers={"Authorization": f"Bearer {DEFAULT_API_KEY}",
                               "Content-Type": "application/json; charset=utf-8"}, timeout=10)
    assert r.status_code == 201


def test_subscription_group_ids_must_be_uuids(emu: Emulator, client: requests.Session) -> None:
    r = post(client, emu, "/users/track", {"attributes": [
        user("a", subscription_groups=[{"subscription_group_id": "newsletter",
                                        "subscription_state": "subscribed"}]),
        user("b", subscription_groups=[{"subscription_group_id": GROUP,
                                        "subscription_state": "subscribed"}])]})
    assert r.status_code == 201
    assert r.json()["errors"] == [{"index": 0, "input_array": "attributes", "type":
                                   "BAD_SUBSCRIPTION_GROUP_ID: 'subscription_group_id' must be "
                                   "a UUID"}]
    for path, body in (("/subscription/status/set", {"external_id": ["b"]}),
                       ("/v2/subscription/status/set", None)):
        payload: dict[str, Any] = body or {"subscription_groups": [{
            "subscription_group_id": "newsletter", "subscription_state": "subscribed",
            "external_ids": ["b"]}]}
        if body:
            payload.update(subscription_group_id="newsletter", subscription_state="subscribed")
        r = post(client, emu, path, payload)
        assert (r.status_code, r.json()["message"]) == (400, "'subscription_group_id' must be a UUID")


@pytest.mark.parametrize("key", ["time", "event_name", "$price"])
def test_reserved_event_property_names_are_rejected(
    emu: Emulator, client: requests.Session, key: str
) -> None:
    r = post(client, emu, "/users/track", {"events": [event("a", properties={key: 1}),
                                                      event("a", properties={"ok": 1})]})
    assert r.status_code == 201
    assert r.json()["events_processed"] == 1
    assert r.json()["errors"][0]["index"] == 0
    assert emu.store.stats()["events"] == 1


def test_v2_subscriptions_take_emails_or_phones_never_both(
    emu: Emulator, client: requests.Session
) -> None:
    post(client, emu, "/users/track", {"attributes": [user("a", email="a@example.com")]})
    groups = [{"subscription_group_id": GROUP, "subscription_state": "subscribed",
               "emails": ["a@example.com"]},
              {"subscription_group_id": GROUP, "subscription_state": "subscribed",
               "phones": ["+14155550100"]}]
    r = post(client, emu, "/v2/subscription/status/set", {"subscription_groups": groups})
    assert (r.status_code, r.json()["message"]) == (
        400, "Either an email address or a phone number should be provided, but not both.")
    assert emu.store.user("a")["subscription_groups"] == {}  # nothing applied
    r = post(client, emu, "/v2/subscription/status/set", {"subscription_groups": groups[:1]})
    assert r.status_code == 201
    assert emu.store.user("a")["subscription_groups"] == {GROUP: "subscribed"}


def test_v2_subscription_phones_must_be_e164(emu: Emulator, client: requests.Session) -> None:
    r = post(client, emu, "/v2/subscription/status/set", {"subscription_groups": [{
        "subscription_group_id": GROUP, "subscription_state": "subscribed",
        "phones": ["(415) 555-0100"]}]})
    assert r.status_code == 400 and "E.164" in r.json()["message"]


def test_one_identifier_kind_per_delete(emu: Emulator, client: requests.Session) -> None:
    post(client, emu, "/users/track", {"attributes": [user("a"), user("b")]})
    braze_id = emu.store.user("b")["braze_id"]
    r = post(client, emu, "/users/delete", {"external_ids": ["a"], "braze_ids": [braze_id]})
    assert r.status_code == 400
    assert "only one of" in r.json()["message"]
    assert emu.store.user("a") is not None and emu.store.user("b") is not None


def test_array_add_moves_an_existing_element_to_the_end(
    emu: Emulator, client: requests.Session
) -> None:
    post(client, emu, "/users/track", {"attributes": [user("a", tags=["x", "y", "z"])]})
    post(client, emu, "/users/track", {"attributes": [user("a", tags={"add": ["x", "w"]})]})
    assert one(client, emu, "a")["custom_attributes"]["tags"] == ["y", "z", "x", "w"]


def test_a_body_over_4_mb_is_413(emu: Emulator, client: requests.Session) -> None:
    padding = "x" * 200
    objects = [user(f"u{i}", **{f"f{j}": padding for j in range(300)}) for i in range(75)]
    r = post(client, emu, "/users/track", {"attributes": objects})  # about 5 MB
    assert r.status_code == 413
    assert emu.store.stats()["users"] == 0


# -- 5. error texts ----------------------------------------------------------------------------


def test_error_texts_are_braze_error_table_names(emu: Emulator,
                                                 client: requests.Session) -> None:
    too_many = post(client, emu, "/users/export/ids",
                    {"external_ids": [str(i) for i in range(51)]})
    assert too_many.json()["message"] == (
        "The max number of external_ids and aliases per request was exceeded")
    syntax = client.post(f"{emu.url}/users/track", data=b'{"attributes": [')
    assert syntax.status_code == 400 and syntax.json()["message"].startswith("Bad syntax")


# -- 6. eventual consistency ----------------------------------------------------------------------


def test_export_lag_shows_the_old_profile_for_a_while(make_emulator: MakeEmulator,
                                                      client: requests.Session) -> None:
    lag = 0.4
    emu = make_emulator(export_lag_seconds=lag)
    post(client, emu, "/users/track", {"attributes": [user("a", first_name="Ann")]})
    assert export(client, emu, "a")["invalid_user_ids"] == ["a"]  # not there yet
    time.sleep(lag + 0.1)
    assert one(client, emu, "a")["first_name"] == "Ann"
    post(client, emu, "/users/track", {"attributes": [user("a", first_name="Bea")]})
    assert one(client, emu, "a")["first_name"] == "Ann"  # the old profile
    time.sleep(lag + 0.1)
    assert one(client, emu, "a")["first_name"] == "Bea"
    post(client, emu, "/users/delete", {"external_ids": ["a"]})
    assert one(client, emu, "a")["first_name"] == "Bea"  # deleted, still exported
    time.sleep(lag + 0.1)
    assert export(client, emu, "a")["invalid_user_ids"] == ["a"]


def test_without_lag_the_export_is_consistent_at_once(emu: Emulator,
                                                      client: requests.Session) -> None:
    post(client, emu, "/users/track", {"attributes": [user("a", first_name="Ann")]})
    assert one(client, emu, "a")["first_name"] == "Ann"
