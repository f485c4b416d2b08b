"""The pure parts, without a server: object validation and profile updates."""

from __future__ import annotations

import pytest

from brazecfg.emulator import EmulatorConfig
from brazecfg.emulator.fields import Invalid
from brazecfg.emulator.profile import Profile
from brazecfg.emulator.validation import (
    AttributeOp,
    Identifier,
    validate_attributes,
    validate_event,
)

CONFIG = EmulatorConfig()


def test_attributes_become_typed_ops() -> None:
    update = validate_attributes(
        {"external_id": "a", "first_name": None, "n": {"inc": 1}, "t": {"add": ["x", "x"]}}, CONFIG
    )
    assert update.who == Identifier("external_id", "a")
    assert update.update_existing_only is False
    assert update.ops == (
        AttributeOp("first_name", "unset"),
        AttributeOp("n", "inc", 1),
        AttributeOp("t", "add_remove", (["x"], [])),
    )


def test_update_existing_only_must_be_boolean() -> None:
    with pytest.raises(Invalid, match="true or false"):
        validate_attributes({"external_id": "a", "_update_existing_only": "yes"}, CONFIG)


def test_dollar_attribute_names_are_rejected() -> None:
    with pytest.raises(Invalid, match="not allowed"):
        validate_attributes({"external_id": "a", "$x": 1}, CONFIG)


@pytest.mark.parametrize(
    "time", ["2024-05-01", "2024-05-01T10:00:00.123+02:00", "2024-05-01T10:00:00z"]
)
def test_event_times_accept_iso_8601(time: str) -> None:
    assert (
        validate_event({"external_id": "a", "name": "e", "time": time}, CONFIG).record["time"]
        == time
    )


def test_inc_on_a_string_starts_from_zero_and_arrays_drop_oldest() -> None:
    profile = Profile(braze_id="1", created_at="now", attributes={"n": "text", "t": ["a", "b"]})
    profile.apply(AttributeOp("n", "inc", 2), max_array_length=3)
    profile.apply(AttributeOp("t", "add_remove", (["c", "d", "a"], ["b"])), max_array_length=3)
    # "a" was present: add moves it to the end; past the cap the oldest ("b" removed) go.
    assert profile.attributes == {"n": 2, "t": ["c", "d", "a"]}


def test_export_splits_standard_and_custom_attributes() -> None:
    profile = Profile(
        braze_id="1",
        created_at="now",
        external_id="a",
        attributes={
            "email": "a@x.io",
            "current_location": {"longitude": 1, "latitude": 2},
            "vip": True,
        },
    )
    exported = profile.export(None)
    assert exported["email"] == "a@x.io"
    assert exported["last_coordinates"] == [1, 2]
    assert exported["custom_attributes"] == {"vip": True}
