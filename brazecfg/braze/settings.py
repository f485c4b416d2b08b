"""A Braze app's options (already rendered from templates) -> client settings."""

from __future__ import annotations

from typing import Any

from brazecfg.braze.client import BrazeSettings
from brazecfg.braze.limits import DEFAULT_LIMITS
from brazecfg.errors import BrazecfgError
from brazecfg.model.resources import App


def braze_settings(app: App) -> BrazeSettings:
    opts: dict[str, Any] = dict(app.options)
    key = str(opts.get("api_key") or "")
    endpoint = str(opts.get("rest_endpoint") or "")
    if not key:
        raise BrazecfgError(f"app/{app.name}: api_key is empty; set BRAZE_API_KEY "
                            "(or the variable its template names)")
    if not endpoint.startswith(("http://", "https://")):
        raise BrazecfgError(f"app/{app.name}: rest_endpoint must be an http(s) URL such as "
                            "https://rest.iad-01.braze.com")
    limits = dict(DEFAULT_LIMITS)
    for bucket, spec in (opts.get("rate_limits") or {}).items():
        limits[bucket] = (int(spec["requests"]), float(spec["seconds"]))
    return BrazeSettings(
        app=app.name, rest_endpoint=endpoint, api_key=key,
        timeout=float(opts.get("timeout_seconds", 30)),
        concurrency=int(opts.get("concurrency", 16)),
        max_retries=int(opts.get("max_retries", 8)),
        settle_after=float(opts.get("settle_after_seconds", 300)),
        rate_limits=limits,
    )
