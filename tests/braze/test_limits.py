"""The client-side rate limiter: never more than ``limit`` requests in any window, at full rate."""

from __future__ import annotations

import random
import threading
import time
from bisect import bisect_left

import pytest

from brazecfg.braze.limits import DEFAULT_LIMITS, SlidingWindowLimiter, bucket_for


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0  # a zero sleep in a loop would spin
        self.sleeps.append(seconds)
        self.now += seconds


def most_in_any_window(times: list[float], window: float) -> int:
    """The largest number of times inside one half-open interval [t, t + window) (the
    densest interval starts at one of the times)."""
    times = sorted(times)
    return max(bisect_left(times, t + window) - i for i, t in enumerate(times))


@pytest.mark.parametrize(("limit", "window"), [(1, 1.0), (5, 1.0), (3000, 3.0), (7, 0.3)])
def test_never_more_than_limit_in_any_window(limit: int, window: float) -> None:
    fake = FakeTime()
    rng = random.Random(limit)
    lim = SlidingWindowLimiter(limit, window, clock=fake.clock, sleep=fake.sleep)
    times = []
    n = limit * 6 + 3
    for _ in range(n):
        if rng.random() < 0.3:  # pauses, but on average faster than the limit
            fake.now += rng.random() * 2 * window / limit
        lim.acquire()
        times.append(fake.now)
    assert most_in_any_window(times, window) == limit  # the limit, and used in full
    # At full rate: n requests need about n / limit windows, not more.
    assert times[-1] - times[0] <= (n / limit) * window + window


def test_a_steady_stream_runs_at_the_full_rate() -> None:
    fake = FakeTime()
    lim = SlidingWindowLimiter(10, 1.0, clock=fake.clock, sleep=fake.sleep)
    for _ in range(100):
        lim.acquire()
    assert fake.now == pytest.approx(9.0)  # 10 per second; the first 10 at once
    assert most_in_any_window([0.0], 1.0) == 1


def test_block_for_holds_every_sender_then_releases() -> None:
    fake = FakeTime()
    lim = SlidingWindowLimiter(100, 1.0, clock=fake.clock, sleep=fake.sleep)
    lim.acquire()
    lim.block_for(2.5)
    lim.block_for(1.0)  # a shorter hold never shortens a longer one
    lim.acquire()
    assert fake.now == pytest.approx(2.5)
    lim.acquire()  # released: no more waiting
    assert fake.now == pytest.approx(2.5)


def test_threads_share_the_limit() -> None:
    """Eight senders on the real clock: the limit holds across threads, and each sender's
    slot time is the limiter's own reading of the clock (kept per thread)."""
    seen = threading.local()

    def clock() -> float:
        seen.last = time.monotonic()
        return float(seen.last)

    limit, window = 10, 0.05
    lim = SlidingWindowLimiter(limit, window, clock=clock)
    times: list[float] = []
    lock = threading.Lock()

    def sender() -> None:
        for _ in range(10):
            lim.acquire()
            with lock:
                times.append(seen.last)  # the clock reading that took the slot

    threads = [threading.Thread(target=sender) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(times) == 80
    assert most_in_any_window(times, window) <= limit
    assert max(times) - min(times) >= 7 * window * 0.99  # 80 requests need 8 windows


def test_buckets_and_defaults_follow_braze() -> None:
    assert bucket_for("/v2/subscription/status/set") == "subscription"
    assert bucket_for("/subscription/status/set") == "subscription"
    assert bucket_for("/users/track") == "/users/track"
    assert DEFAULT_LIMITS["/users/track"] == (3000, 3.0)
    assert DEFAULT_LIMITS["subscription"] == (5000, 60.0)
