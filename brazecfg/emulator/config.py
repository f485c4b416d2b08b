"""What an emulator run looks like: keys, limits, faults, persistence. Plain data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_PERMISSIONS: frozenset[str] = frozenset(
    {"users.track", "users.track.bulk", "users.delete", "users.export.ids",
     "subscription.status.set", "subscription.status.get"}
)

DEFAULT_API_KEY = "local-emulator-key"

# Braze's published limits (braze-api-facts.md). The two subscription endpoints share one
# bucket, so they share one entry here; see SUBSCRIPTION_BUCKET in ratelimit.py.
DEFAULT_RATE_LIMITS: dict[str, tuple[int, float]] = {
    "/users/track": (3000, 3.0),
    "/users/track/bulk": (50, 1.0),  # "50 requests/second for most customers"
    "/users/delete": (20000, 60.0),
    "/users/export/ids": (250, 60.0),
    "/subscription/status/set": (5000, 60.0),
}

TRACK_CAP_MODES = ("total", "per_array")
DOB_FORMATS = ("date", "datetime")
RATE_LIMIT_HEADER_MODES = ("standard", "mau")


def _default_keys() -> dict[str, frozenset[str]]:
    return {DEFAULT_API_KEY: ALL_PERMISSIONS}


def _default_limits() -> dict[str, tuple[int, float]]:
    return dict(DEFAULT_RATE_LIMITS)


@dataclass
class EmulatorConfig:
    """Everything a run of the emulator can vary.

    Where Braze's own pages disagree (the /users/track cap, the array length) both values
    are reachable from here, so a test can pin the one its customer's contract has.
    """

    host: str = "127.0.0.1"
    port: int = 4567  # 0 picks a free port
    api_keys: dict[str, frozenset[str]] = field(default_factory=_default_keys)
    track_cap_mode: str = "total"  # "total": 75 objects in all; "per_array": 75 per array
    track_cap: int = 75
    # /users/track/bulk (post_user_track_bulk.md): up to 1,000 objects in all "depending on
    # your account's bulk rate-limit policy", at most 100 per profile, a body of 2 MB.
    bulk_track_cap: int = 1000
    bulk_objects_per_profile: int = 100
    bulk_max_body_bytes: int = 2 * 1024 * 1024
    max_string_length: int = 255
    max_array_length: int = 500
    rate_limits: dict[str, tuple[int, float]] = field(default_factory=_default_limits)
    # An extra fixed window per bucket that resets on the clock hour (MAU plans: an hourly
    # limit beside the burst in rate_limits), e.g. {"/users/track": 250_000}.
    hourly_limits: dict[str, int] = field(default_factory=dict)
    # "standard": X-RateLimit-Limit/-Remaining/-Reset (epoch seconds) on every answer.
    # "mau": Reset is the seconds left in the hourly window, and a 429 carries only
    # X-Ratelimit-Retry-After (post_user_track.md, MAU plans).
    rate_limit_headers: str = "standard"
    # The export's dob: "date" as documented (1980-12-21), "datetime" as recorded from real
    # Braze in 2021 (1980-12-21T00:00:00.000Z).
    dob_export_format: str = "date"
    # Braze's export shows the old profile for a while after a write or a delete; this many
    # seconds of lag for /users/export/ids by external_id (0: consistent at once).
    export_lag_seconds: float = 0.0
    max_body_bytes: int = 4 * 1024 * 1024  # "at most 4 MB" (api_limits.md): 413 beyond
    latency_ms: float = 0.0
    # Retry-After of injected 429s; None: the seconds left in the rate window, like a real one.
    fault_429_retry_after: int | None = None
    fault_429_every: int = 0  # every Nth API request answers 429 (0 = off)
    fault_500_every: int = 0
    fault_drop_every: int = 0  # every Nth API request: close the socket, answer nothing
    state_file: str | None = None
    # The log keeps raw request bodies; both caps bound memory in long benchmarks.
    request_log_limit: int = 100_000
    request_log_max_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.track_cap_mode not in TRACK_CAP_MODES:
            raise ValueError(f"track_cap_mode must be one of {TRACK_CAP_MODES}")
        if self.dob_export_format not in DOB_FORMATS:
            raise ValueError(f"dob_export_format must be one of {DOB_FORMATS}")
        if self.rate_limit_headers not in RATE_LIMIT_HEADER_MODES:
            raise ValueError(f"rate_limit_headers must be one of {RATE_LIMIT_HEADER_MODES}")
        if self.export_lag_seconds < 0:
            raise ValueError("export_lag_seconds must not be negative")
        for name in ("fault_429_every", "fault_500_every", "fault_drop_every", "port"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
