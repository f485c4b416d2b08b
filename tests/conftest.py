"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a throwaway PostgreSQL server (tests/pg.py) for the session; skips without one.

    Superuser ``brazecfg`` with a password over TCP on 127.0.0.1; create your own database or
    schema in it rather than sharing tables with other tests.
    """
    from tests.pg import Unavailable, start_postgres

    try:
        server = start_postgres()
    except Unavailable as exc:
        if os.environ.get("CI"):  # CI must prove PostgreSQL works, not skip it silently
            pytest.fail(f"PostgreSQL unavailable in CI: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def start(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """start(config) -> a running emulator the project's braze app points at (through
    BRAZE_REST_ENDPOINT); every one started is stopped after the test."""
    from brazecfg.emulator import Emulator, EmulatorConfig

    running: list[Emulator] = []

    def _start(config: EmulatorConfig) -> Emulator:
        emu = Emulator(config).start()
        running.append(emu)
        monkeypatch.setenv("BRAZE_REST_ENDPOINT", emu.url)
        return emu

    yield _start
    for emu in running:
        emu.stop()
