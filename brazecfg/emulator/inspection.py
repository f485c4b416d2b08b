"""The /_emulator/ endpoints tests and people use to look inside: no auth, never rate
limited, faulted or logged, so looking never changes what is being looked at."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

if TYPE_CHECKING:
    from brazecfg.emulator.server import Emulator

PREFIX = "/_emulator/"
Reply = tuple[int, dict[str, Any]]


def inspect(emulator: Emulator, method: str, path: str, query: str) -> Reply:
    route = path[len(PREFIX) :]
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    store = emulator.store
    if method == "GET":
        if route == "health":
            return 200, {"status": "ok"}
        if route == "users":
            users = store.users()
            offset = _int(params.get("offset"), 0)
            limit = _int(params.get("limit"), len(users))
            return 200, {"total": len(users), "users": users[offset : offset + limit]}
        if route.startswith("users/"):
            external_id = unquote(route[len("users/") :])
            user = store.user(external_id)
            if user is None:
                return 404, {"message": f"No user with external_id {external_id!r}"}
            return 200, user
        if route == "requests":
            entries = store.requests(params.get("path"), _int(params.get("limit"), 0) or None)
            return 200, {"requests": [e.to_json() for e in entries]}
        if route == "stats":
            return 200, store.stats()
    if method == "POST":
        if route == "reset":
            emulator.reset()
            return 200, {"message": "reset"}
        if route == "save":
            if not emulator.config.state_file:
                return 400, {"message": "No state_file is configured; start the emulator with one"}
            saved = emulator.save()
            return 200, {"message": "saved", "users": saved, "path": emulator.config.state_file}
    return 404, {"message": f"No emulator endpoint {method} {path}"}


def _int(text: str | None, default: int) -> int:
    try:
        return max(0, int(text)) if text is not None else default
    except ValueError:
        return default
