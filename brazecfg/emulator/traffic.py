"""What happens to a request before an endpoint sees it: rate limits and injected faults.

Rate limits are fixed windows aligned to the epoch, so X-RateLimit-Reset is the same for
every request in a window, as on Braze. Faults count authenticated API requests, one
shared counter, so "every 3rd request" means the same requests on every run.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from brazecfg.emulator.config import EmulatorConfig

# Both subscription endpoints draw from one bucket (braze-api-facts.md).
BUCKETS = {"/v2/subscription/status/set": "/subscription/status/set"}


@dataclass(frozen=True)
class Quota:
    limit: int
    remaining: int
    reset: int  # epoch seconds when the window ends
    allowed: bool
    now: float

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }

    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset - self.now))


class RateLimiter:
    def __init__(
        self, limits: dict[str, tuple[int, float]], clock: Callable[[], float] = time.time
    ) -> None:
        self._limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int]] = {}  # bucket -> (window start, used)

    def take(self, path: str) -> Quota | None:
        """Counts one request against the path's bucket; None when the path has no limit."""
        return self._quota(path, spend=True)

    def peek(self, path: str) -> Quota | None:
        """The quota as it stands, without spending any (for injected 429s)."""
        return self._quota(path, spend=False)

    def _quota(self, path: str, *, spend: bool) -> Quota | None:
        bucket = BUCKETS.get(path, path)
        if bucket not in self._limits:
            return None
        limit, window = self._limits[bucket]
        now = self._clock()
        start = math.floor(now / window) * window
        with self._lock:
            seen_start, used = self._windows.get(bucket, (start, 0))
            if seen_start != start:
                used = 0
            allowed = spend and used < limit
            if allowed:
                used += 1
            if spend:
                self._windows[bucket] = (start, used)
        return Quota(limit, limit - used, math.ceil(start + window), allowed, now)

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()


class FaultInjector:
    """Decides, by request number, whether to drop, fail or throttle a request."""

    def __init__(self, config: EmulatorConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._count = 0

    def next_fault(self) -> str | None:
        """The fault for the next request, or None; drop beats 500 beats 429 on a tie."""
        with self._lock:
            self._count += 1
            n = self._count
        c = self._config
        for every, fault in (
            (c.fault_drop_every, "drop"),
            (c.fault_500_every, "500"),
            (c.fault_429_every, "429"),
        ):
            if every and n % every == 0:
                return fault
        return None

    def reset(self) -> None:
        with self._lock:
            self._count = 0
