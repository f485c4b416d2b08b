"""A Braze app's options (already rendered from templates) -> client settings."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import orjson
import urllib3

from brazecfg.braze.client import BrazeSettings
from brazecfg.braze.limits import DEFAULT_LIMITS
from brazecfg.errors import BrazecfgError
from brazecfg.model.resources import App

T = TypeVar("T")


def _is_endpoint(url: str) -> bool:
    """An http(s) URL the client can send to: a host, and nothing that parse_url rejects
    (a space, an unclosed IPv6 bracket) or that a path cannot follow (a query, a fragment)."""
    if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
        return False
    try:
        parts = urllib3.util.parse_url(url)
    except (urllib3.exceptions.LocationParseError, ValueError):
        return False
    return bool(parts.host) and parts.query is None and parts.fragment is None


def braze_settings(app: App) -> BrazeSettings:
    opts: dict[str, Any] = dict(app.options)
    key = str(opts.get("api_key") or "")
    endpoint = str(opts.get("rest_endpoint") or "")
    if not key:
        raise BrazecfgError(f"app/{app.name}: api_key is empty; set BRAZE_API_KEY "
                            "(or the variable its template names)")
    if not _is_endpoint(endpoint):  # never quoted: rendered from the environment, maybe secret
        raise BrazecfgError(f"app/{app.name}: rest_endpoint must be an http(s) URL with a host "
                            "and no spaces, query or fragment, such as "
                            "https://rest.iad-01.braze.com")
    contract: dict[str, Any] = dict(opts.get("contract") or {})
    limits = dict(DEFAULT_LIMITS)
    if contract.get("export_per_minute") is not None:
        limits["/users/export/ids"] = (int(contract["export_per_minute"]), 60.0)
    for bucket, spec in (opts.get("rate_limits") or {}).items():  # explicit limits win
        limits[bucket] = (int(spec["requests"]), float(spec["seconds"]))
    track = contract_settings(contract)
    bulk = str(opts.get("track_endpoint") or "track") == "bulk"
    return BrazeSettings(
        app=app.name, rest_endpoint=endpoint, api_key=key,
        timeout=float(opts.get("timeout_seconds", 30)),
        concurrency=None if opts.get("concurrency") is None else int(opts["concurrency"]),
        max_retries=int(opts.get("max_retries", 8)),
        settle_after=float(opts.get("settle_after_seconds", 300)),
        rate_limits=limits,
        track_path="/users/track/bulk" if bulk else "/users/track",
        **track,
    )


def contract_settings(contract: dict[str, Any]) -> dict[str, Any]:
    """The app's ``contract`` block -> BrazeSettings fields. Braze's limits differ by
    contract (braze-api-facts.md), so none of them is fixed in code: objects per /users/track
    request (75 in total by default; 75 per array on legacy contracts; 50 on some MAU plans),
    hourly limits that reset on the clock hour (MAU plans, beside the burst limit)."""
    out: dict[str, Any] = {}
    if contract.get("track_objects") is not None:
        out["track_batch"] = int(contract["track_objects"])
    if contract.get("bulk_objects") is not None:
        out["bulk_batch"] = int(contract["bulk_objects"])
    if contract.get("track_objects_per") is not None:
        out["track_cap_per"] = str(contract["track_objects_per"])
    hourly = contract.get("hourly_limits") or {}
    if hourly:
        out["hourly_limits"] = {bucket: int(n) for bucket, n in hourly.items()}
    return out


# Braze refuses a body over 4 MB (api_limits.md: 413 or 400); requests are cut well below.
MAX_REQUEST_BYTES = 3 * 1024 * 1024
# /users/track/bulk takes 2 MB (over: 400) and up to 1,000 objects.
BULK_MAX_REQUEST_BYTES = 3 * 1024 * 1024 // 2


def json_bytes(value: Any) -> int:
    """A value's size in the request body: the client encodes bodies with orjson (UTF-8, no
    escapes), so this is exact, and cheaper than estimating it value by value."""
    try:
        return len(orjson.dumps(value))
    except orjson.JSONEncodeError:  # an integer past 64 bits: json writes it, as digits
        return len(json.dumps(value, ensure_ascii=False).encode())


def track_batches(changes: Iterable[T], settings: BrazeSettings,
                  attributes: Callable[[T], dict[str, Any]]) -> Iterator[list[T]]:
    """Record changes cut into /users/track requests (/users/track/bulk: ``bulk_batch``
    objects, 2 MB): at most ``track_batch`` objects, and a
    new request before the body would pass MAX_REQUEST_BYTES (long arrays: 500 values of 255
    characters are about 128 KB a user, so 75 such users would be refused)."""
    batch: list[T] = []
    size = 0
    most, cap = MAX_REQUEST_BYTES, settings.track_batch
    if settings.track_path == "/users/track/bulk":
        most, cap = BULK_MAX_REQUEST_BYTES, settings.bulk_batch
    for change in changes:
        n = json_bytes(attributes(change)) + 64
        if batch and (len(batch) >= cap or size + n > most):
            yield batch
            batch, size = [], 0
        batch.append(change)
        size += n
    if batch:
        yield batch


def event_batches(items: Iterable[dict[str, Any]], settings: BrazeSettings
                  ) -> Iterator[list[dict[str, Any]]]:
    """Events and purchases cut into /users/track requests the contract allows, in order:
    ``track_batch`` objects in all, or on per-array contracts ``track_batch`` of each type
    (so one request can carry a full array of events and one of purchases)."""
    cap, per_array = settings.track_batch, settings.track_cap_per == "array"
    batch: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    for item in items:
        kind = str(item.get("type", "event")) if per_array else "all"
        if counts.get(kind, 0) >= cap:
            yield batch
            batch, counts = [], {}
        batch.append(item)
        counts[kind] = counts.get(kind, 0) + 1
    if batch:
        yield batch
