"""Small pure parts of the state commands: addresses and durations."""

from __future__ import annotations

import pytest

from brazecfg.errors import StateError
from brazecfg.state.commands import Address, parse_address
from brazecfg.state.lock import parse_duration


def test_addresses() -> None:
    assert parse_address("destination/users") == Address("users")
    assert parse_address("destination/users/events/pages") == Address("users", "pages")
    assert str(Address("users", "pages")) == "destination/users/events/pages"
    for bad in ("users", "destination/", "destination/u/events/", "group/x", "destination/u/x/y"):
        with pytest.raises(StateError, match="not a state address"):
            parse_address(bad)


def test_durations() -> None:
    assert [parse_duration(t) for t in ("0", "30s", "5m", "1h", "1.5", "250ms")] == [
        0.0, 30.0, 300.0, 3600.0, 1.5, 0.25]
    for bad in ("", "5 minutes", "-1s", "m"):
        with pytest.raises(StateError, match="--lock-timeout takes a duration"):
            parse_duration(bad)
