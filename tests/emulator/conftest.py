"""A real emulator on 127.0.0.1, port 0, and a requests session that closes its sockets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from brazecfg.emulator import DEFAULT_API_KEY, Emulator, EmulatorConfig

MakeEmulator = Callable[..., Emulator]


@pytest.fixture
def make_emulator() -> Iterator[MakeEmulator]:
    started: list[Emulator] = []

    def make(**options: Any) -> Emulator:
        emulator = Emulator(EmulatorConfig(port=0, **options)).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emu(make_emulator: MakeEmulator) -> Emulator:
    return make_emulator()


@pytest.fixture
def client() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {DEFAULT_API_KEY}"
        session.headers["Content-Type"] = "application/json"  # Braze answers 415 without
        yield session


def user(external_id: str, **attributes: Any) -> dict[str, Any]:
    return {"external_id": external_id, **attributes}


def event(external_id: str, name: str = "opened", **extra: Any) -> dict[str, Any]:
    return {"external_id": external_id, "name": name, "time": "2024-05-01T10:00:00Z", **extra}


def purchase(external_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "product_id": "sku-1",
        "currency": "USD",
        "price": 9.5,
        "time": "2024-05-01T10:00:00Z",
        **extra,
    }
