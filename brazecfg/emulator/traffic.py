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
    window: float = 0.0

    def headers(self, mode: str = "standard") -> dict[str, str]:
        """Braze's rate-limit headers; on MAU plans Reset is the seconds left in the window."""
        reset = self.retry_after() if mode == "mau" else self.reset
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(reset),
        }

    def retry_after(self) -> int:
        return max(1, math.ceil(self.reset - self.now))


class RateLimiter:
    """Fixed windows per bucket: the burst window from `limits`, plus an hourly one (reset on
    the clock hour) from `hourly` for MAU-style contracts. A request is let through only when
    every window of its bucket has room, and then counts in each."""

    def __init__(
        self,
        limits: dict[str, tuple[int, float]],
        clock: Callable[[], float] = time.time,
        hourly: dict[str, int] | None = None,
    ) -> None:
        self._windows_of: dict[str, list[tuple[int, float]]] = {
            bucket: [spec] for bucket, spec in limits.items()
        }
        for path, limit in (hourly or {}).items():
            self._windows_of.setdefault(BUCKETS.get(path, path), []).append((limit, 3600.0))
        self._clock = clock
        self._lock = threading.Lock()
        # (bucket, window length) -> (window start, used)
        self._windows: dict[tuple[str, float], tuple[float, int]] = {}

    def take(self, path: str) -> Quota | None:
        """Counts one request against the path's bucket; None when the path has no limit."""
        return self._quota(path, spend=True)

    def peek(self, path: str) -> Quota | None:
        """The quota as it stands, without spending any (for injected 429s)."""
        return self._quota(path, spend=False)

    def _quota(self, path: str, *, spend: bool) -> Quota | None:
        bucket = BUCKETS.get(path, path)
        specs = self._windows_of.get(bucket)
        if not specs:
            return None
        now = self._clock()
        with self._lock:
            state = []
            for limit, window in specs:
                start = math.floor(now / window) * window
                seen_start, used = self._windows.get((bucket, window), (start, 0))
                state.append((limit, window, start, 0 if seen_start != start else used))
            allowed = spend and all(used < limit for limit, _, _, used in state)
            quotas = []
            for limit, window, start, used in state:
                if allowed:
                    used += 1
                if spend:
                    self._windows[(bucket, window)] = (start, used)
                quotas.append(Quota(limit, limit - used, math.ceil(start + window),
                                    allowed, now, window))
        if not allowed and spend:
            # The window that refused; the one that frees last when several did.
            full = [q for q in quotas if q.remaining <= 0]
            return max(full, key=lambda q: q.reset) if full else quotas[0]
        return min(quotas, key=lambda q: (q.remaining, -q.window))

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
