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


def test_state_settings_are_read_and_the_url_is_never_in_a_repr(tmp_path: object) -> None:
    from pathlib import Path

    from brazecfg.state.backends import backend_of
    from tests.state.backends import state_project

    root = Path(str(tmp_path))
    url = "postgresql://u:pw-canary-77@db.internal:6543/app"
    project = state_project(root, None, {"backend": "postgres", "url": url, "schema": "st",
                                         "lock_ttl": 5})
    s = project.settings
    assert (s.state_backend, s.state_url, s.state_schema, s.state_lock_ttl) == (
        "postgres", url, "st", 5.0)
    assert "pw-canary-77" not in repr(s)
    b = backend_of(project)
    assert b.where == "postgres db.internal:6543/app schema st" and b.lock_ttl == 5.0
    assert "pw-canary-77" not in repr(b)
    project = state_project(root, None, {"backend": "warehouse", "app": "nope"})
    with pytest.raises(StateError, match="not a warehouse app of this project.*duck, lite"):
        backend_of(project)
