"""Client-side rate limiting: never send more requests in any window than Braze allows.

A sliding log (the send times of the last ``limit`` requests) guarantees at most ``limit``
requests in every interval of ``window`` seconds, so a server counting fixed windows never
sees more than its limit either, while a steady stream still runs at the full rate.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

# Braze's published limits (requests, seconds), see shared/braze-api-facts.md.
DEFAULT_LIMITS: dict[str, tuple[int, float]] = {
    "/users/track": (3000, 3.0),
    "/users/track/bulk": (50, 1.0),  # "50 requests/second for most customers"
    "/users/delete": (20000, 60.0),
    "/users/export/ids": (250, 60.0),
    "subscription": (5000, 60.0),
}


# A request let out at the end of a window may reach Braze in the next one: the client's
# sliding windows are this much longer than Braze's (for /users/track, 3.05 s for 3 s).
SLACK_SECONDS = 0.05
# Braze's round trip from a cloud region, for sizing the worker pool (braze-api-facts.md).
TYPICAL_LATENCY = 0.1
MAX_WORKERS = 16  # more threads only contend for the GIL (bench/README.md)


def headroom(limit: int) -> int:
    """Requests of a window left unused, for a trip slower than SLACK_SECONDS: 1% (at least
    one). A fixed one per worker left 16 of 300 unused in every window (issue 9)."""
    return max(1, -(-limit // 100))


def workers_for(limit: int, window: float, latency: float = TYPICAL_LATENCY) -> int:
    """Workers that keep a bucket at its rate limit when each request takes ``latency``: the
    requests in flight at that rate (Little's law), with a quarter more for slow answers and
    bursts, at least 2 and at most MAX_WORKERS."""
    in_flight = limit / window * latency * 1.25
    return max(2, min(MAX_WORKERS, -(-int(in_flight * 100) // 100)))


def bucket_for(path: str) -> str:
    return "subscription" if "subscription/status/set" in path else path


class SlidingWindowLimiter:
    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.limit = limit
        self.window = window
        self._sent: deque[float] = deque()
        self._blocked_until = 0.0
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                while self._sent and self._sent[0] <= now - self.window:
                    self._sent.popleft()
                wait = self._blocked_until - now
                if wait <= 0 and len(self._sent) < self.limit:
                    self._sent.append(now)
                    return
                if wait <= 0:
                    wait = self._sent[0] + self.window - now
            self._sleep(max(wait, 0.001))

    def block_for(self, seconds: float) -> None:
        """The server said to wait: hold every sender of this bucket, not only the one told."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)


class ClockWindowLimiter:
    """At most ``limit`` requests in each fixed window aligned to the wall clock, for limits
    Braze counts per clock window (hourly limits reset on the clock hour). A sliding log would
    also stay under such a limit, but after a burst late in an hour it would wait up to a whole
    hour, where Braze lets the client go again at the top of the hour.

    ``margin`` seconds are added after the window ends, for clock skew between us and Braze.
    """

    def __init__(self, limit: int, window: float = 3600.0, *, margin: float = 1.0,
                 wall: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.limit = limit
        self.window = window
        self.margin = margin
        self._wall = wall
        self._sleep = sleep
        self._lock = threading.Lock()
        self._start = float("-inf")
        self._used = 0

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = self._wall()
                start = (now - self.margin) // self.window * self.window
                if start != self._start:
                    self._start, self._used = start, 0
                if self._used < self.limit:
                    self._used += 1
                    return
                wait = start + self.window + self.margin - now
            self._sleep(max(wait, 0.001))

    def block_for(self, seconds: float) -> None:
        """A 429 on the bucket: the sliding limiter beside this one holds the senders."""


class Limiters:
    """Every limit of one endpoint bucket: its burst (sliding) and any clock windows."""

    def __init__(self, burst: SlidingWindowLimiter,
                 clock_windows: list[ClockWindowLimiter] | None = None) -> None:
        self.burst = burst
        self.clock_windows = clock_windows or []

    def acquire(self) -> None:
        # The long windows first: a burst slot taken and then held for an hour would waste it.
        for limiter in self.clock_windows:
            limiter.acquire()
        self.burst.acquire()

    def block_for(self, seconds: float) -> None:
        self.burst.block_for(seconds)
