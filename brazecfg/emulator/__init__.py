"""A local Braze REST API emulator: /users/track, /users/delete, /users/export/ids and the
subscription endpoints, with Braze's caps, errors, rate limits and injectable faults."""

from __future__ import annotations

from brazecfg.emulator.config import ALL_PERMISSIONS, DEFAULT_API_KEY, EmulatorConfig
from brazecfg.emulator.server import Emulator, serve
from brazecfg.emulator.store import StateFileError, Store

__all__ = [
    "ALL_PERMISSIONS",
    "DEFAULT_API_KEY",
    "Emulator",
    "EmulatorConfig",
    "StateFileError",
    "Store",
    "serve",
]
