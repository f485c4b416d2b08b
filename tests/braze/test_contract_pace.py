"""The client keeps the pace a contract allows, against the emulator configured with the same
contract. One fake clock drives both sides (the emulator's windows, the client's limiters and
its sleeps), so crossing an hour boundary takes no real hour."""

from __future__ import annotations

import threading

from brazecfg.braze.client import BrazeClient, BrazeSettings
from brazecfg.braze.limits import DEFAULT_LIMITS, ClockWindowLimiter
from brazecfg.braze.settings import contract_settings
from brazecfg.emulator import DEFAULT_API_KEY, Emulator, EmulatorConfig

HOUR = 3600.0
START = 1_800_000_000.0 // HOUR * HOUR + HOUR - 10  # ten seconds before a clock hour


class FakeClock:
    """Wall time that moves only when someone sleeps."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.slept = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds
            self.slept += seconds


def client_for(emu: Emulator, clock: FakeClock, **contract: object) -> BrazeClient:
    settings = BrazeSettings(app="braze", rest_endpoint=emu.url, api_key=DEFAULT_API_KEY,
                             concurrency=1, rate_limits=dict(DEFAULT_LIMITS),
                             **contract_settings(dict(contract)))
    return BrazeClient(settings, sleep=clock.sleep, clock=clock.time, wall=clock.time)


def track(client: BrazeClient, n: int) -> None:
    for i in range(n):
        r = client.track(attributes=[{"external_id": f"u{i}", "n": i}])
        assert r.status == 201


def test_hourly_limit_is_kept_and_resumes_at_the_top_of_the_hour() -> None:
    clock = FakeClock(START)
    config = EmulatorConfig(port=0, hourly_limits={"/users/track": 20})
    with Emulator(config, clock=clock.time) as emu:
        client = client_for(emu, clock, hourly_limits={"/users/track": 20})
        track(client, 40)  # 19 an hour (one request of headroom per worker)
        stats = emu.store.stats()
    assert "429" not in stats["requests"]["/users/track"]  # never over the limit
    assert client.stats.throttled == 0
    # Two waits: to the first clock hour (10 s + 1 s margin), then one whole hour. A sliding
    # hour would have waited an hour after the first 19 requests, and again after 38.
    assert HOUR < clock.slept < HOUR + 15


def test_clock_window_waits_only_until_the_clock_hour() -> None:
    clock = FakeClock(START)
    limiter = ClockWindowLimiter(2, HOUR, margin=1.0, wall=clock.time, sleep=clock.sleep)
    limiter.acquire()
    limiter.acquire()
    limiter.acquire()  # the third waits for the next clock hour
    assert clock.slept == 11.0


def test_mau_retry_after_replaces_the_rate_limit_headers_and_is_honoured() -> None:
    """MAU plans: a 429 carries only X-Ratelimit-Retry-After; the client waits that long."""
    clock = FakeClock(START)
    config = EmulatorConfig(port=0, hourly_limits={"/users/track": 3}, rate_limit_headers="mau")
    with Emulator(config, clock=clock.time) as emu:
        client = client_for(emu, clock)  # contract not declared: it meets the 429
        track(client, 4)
        throttled = [r for r in emu.store.requests("/users/track") if r.status == 429]
    assert len(throttled) == 1 and client.stats.throttled == 1
    # It waited the 10 seconds left in the hour (plus under 0.1 s of jitter), no backoff guess.
    assert 10.0 <= clock.slept < 10.2


def test_mau_headers_give_seconds_left_in_the_hour() -> None:
    import requests

    clock = FakeClock(START)
    config = EmulatorConfig(port=0, hourly_limits={"/users/track": 3}, rate_limit_headers="mau",
                            rate_limits={"/users/track": (3000, 3.0)})
    with Emulator(config, clock=clock.time) as emu, requests.Session() as http:
        http.headers.update({"Authorization": f"Bearer {DEFAULT_API_KEY}",
                             "Content-Type": "application/json"})
        answers = [http.post(f"{emu.url}/users/track",
                             json={"attributes": [{"external_id": "a"}]}) for _ in range(4)]
    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    assert answers[0].headers["X-RateLimit-Limit"] == "3"
    assert answers[0].headers["X-RateLimit-Reset"] == "10"  # seconds left, not an epoch
    assert answers[3].headers["X-Ratelimit-Retry-After"] == "10"
    assert "X-RateLimit-Limit" not in answers[3].headers  # replaced, not added to


def export_pace(per_minute: int, calls: int) -> tuple[float, int]:
    clock = FakeClock(START - 600)
    config = EmulatorConfig(port=0, rate_limits={"/users/export/ids": (per_minute, 60.0)})
    with Emulator(config, clock=clock.time) as emu:
        client = client_for(emu, clock, export_per_minute=per_minute)
        client.settings.rate_limits["/users/export/ids"] = (per_minute, 60.0)
        for i in range(calls):
            assert client.existing([f"u{i}"]) == set()
        throttled = client.stats.throttled
    return clock.slept, throttled


def test_export_rate_follows_the_contract() -> None:
    """250 a minute (onboarded on or after 2024-08-22) or 2,500 (before)."""
    slow, slow_throttled = export_pace(250, 300)
    fast, fast_throttled = export_pace(2500, 300)
    assert (slow_throttled, fast_throttled) == (0, 0)
    assert slow >= 60.0  # 300 calls need a second minute at 250 a minute
    assert fast == 0.0


def test_contract_settings_read_from_the_app() -> None:
    assert contract_settings({"track_objects": 50, "track_objects_per": "array",
                              "hourly_limits": {"/users/track": 250000}}) == {
        "track_batch": 50, "track_cap_per": "array",
        "hourly_limits": {"/users/track": 250000}}
    assert contract_settings({}) == {}


def test_each_burst_window_is_filled_to_its_limit_but_one_percent() -> None:
    """Issue 9: with one request of headroom per worker, each 3 s window of a 300/3 s limit
    got exactly 300 - 16 requests. Now: 1% headroom (297), and never a 429."""
    clock = FakeClock(START)
    limits = {**DEFAULT_LIMITS, "/users/track": (300, 3.0)}
    config = EmulatorConfig(port=0, rate_limits={**EmulatorConfig().rate_limits,
                                                 "/users/track": (300, 3.0)})
    with Emulator(config, clock=clock.time) as emu:
        settings = BrazeSettings(app="braze", rest_endpoint=emu.url, api_key=DEFAULT_API_KEY,
                                 concurrency=16, rate_limits=limits)
        client = BrazeClient(settings, sleep=clock.sleep, clock=clock.time, wall=clock.time)
        sent: list[float] = []
        for i in range(900):
            assert client.track(attributes=[{"external_id": f"u{i}"}]).status == 201
            sent.append(clock.time())
        stats = emu.store.stats()
    assert "429" not in stats["requests"]["/users/track"]
    per_window: dict[int, int] = {}
    for t in sent:
        per_window[int(t // 3.0)] = per_window.get(int(t // 3.0), 0) + 1
    full = sorted(per_window.values())[1:-1] or sorted(per_window.values())
    assert max(per_window.values()) == 297  # 300 less 1%, not 300 less 16
    assert min(full) >= 297 - 1
