"""The only place brazecfg talks HTTP: one pooled session per Braze app.

Timeouts on every call; retries with exponential backoff and jitter on 429, 5xx, dropped
connections and timeouts, honouring X-RateLimit-Reset, X-Ratelimit-Retry-After and
Retry-After; 401/403/404 fail fast with one line naming the app. The API key is never put in a
message: Braze's 401 body echoes it, so auth error bodies are never read into errors.

Requests that are not idempotent (events, purchases) pass ``idempotent=False``: after a 5xx,
a timeout or a dropped connection nobody knows whether Braze processed them, so the client
raises DeliveryUnknown instead of retrying. A 429 is always retried: nothing was processed.
"""

from __future__ import annotations

import email.utils
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from brazecfg.braze.limits import (
    DEFAULT_LIMITS,
    ClockWindowLimiter,
    Limiters,
    SlidingWindowLimiter,
    bucket_for,
)
from brazecfg.errors import BrazeError

USER_AGENT = "brazecfg/0.1"


class DeliveryUnknown(BrazeError):
    """The request may or may not have been processed (5xx, timeout, dropped connection)."""


@dataclass
class BrazeSettings:
    app: str
    rest_endpoint: str
    api_key: str = field(repr=False)
    timeout: float = 30.0
    max_retries: int = 8
    concurrency: int = 16
    backoff_base: float = 0.5
    backoff_cap: float = 60.0
    rate_limits: dict[str, tuple[int, float]] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    # The contract (see settings.py): objects per /users/track request, whether that cap counts
    # per array (legacy) or in total, and hourly limits (bucket -> requests) that reset on the
    # clock hour, beside the burst limits above.
    track_batch: int = 75
    track_cap_per: str = "request"
    hourly_limits: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)


def _seconds(value: str) -> float | None:
    """A header's number of seconds; None for text that is not a finite number."""
    try:
        f = float(value)
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def _wait_from_headers(headers: requests.structures.CaseInsensitiveDict[str], now: float
                       ) -> float | None:
    """Seconds the server asked us to wait, from any of the headers Braze may send.
    A header that cannot be read is skipped (the caller backs off instead), never fatal."""
    for name in ("X-Ratelimit-Retry-After", "Retry-After"):
        value = headers.get(name)
        if not value:
            continue
        seconds = _seconds(value)
        if seconds is not None:
            return max(0.0, seconds)
        try:  # Retry-After may be an HTTP date
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError, OverflowError):
            continue
    reset = _seconds(headers.get("X-RateLimit-Reset") or "")
    if reset is None:
        return None
    # Epoch seconds on most plans, seconds remaining on some.
    return max(0.0, reset - now) if reset > 1_000_000_000 else max(0.0, reset)


class BrazeClient:
    def __init__(self, settings: BrazeSettings, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 session: requests.Session | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._base = settings.rest_endpoint.rstrip("/")
        # Every wait goes through these two, the rate limiters' included.
        self._sleep = sleep
        self._clock = clock
        self._wall = wall  # clock-hour windows follow the wall clock, as Braze's do
        self._session = session or requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(4, settings.concurrency),
                              max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update({"Authorization": f"Bearer {settings.api_key}",
                                      "Content-Type": "application/json",
                                      "User-Agent": USER_AGENT})
        self._limiters: dict[str, Limiters] = {}
        self._limiters_lock = threading.Lock()
        self.stats = ClientStats()

    def close(self) -> None:
        self._session.close()

    def _limiter(self, path: str) -> Limiters:
        bucket = bucket_for(path)
        with self._limiters_lock:
            if bucket not in self._limiters:
                self._limiters[bucket] = self._contract_limiters(bucket)
            return self._limiters[bucket]

    def _contract_limiters(self, bucket: str) -> Limiters:
        """The bucket's burst limit (sliding) and, on MAU-style contracts, its hourly limit
        counted per clock hour. Headroom of one request per worker on each: a request let out
        at the very end of a window can reach Braze in the next one and be one too many."""
        headroom = self.settings.concurrency
        limit, window = self.settings.rate_limits.get(bucket, (250_000, 3600.0))
        burst = SlidingWindowLimiter(max(1, limit - headroom), window, clock=self._clock,
                                     sleep=self._sleep)
        hourly = self.settings.hourly_limits.get(bucket)
        windows = [ClockWindowLimiter(max(1, hourly - headroom), 3600.0, wall=self._wall,
                                      sleep=self._sleep)] if hourly else []
        return Limiters(burst, windows)

    def _backoff(self, attempt: int) -> float:
        base = min(self.settings.backoff_cap, self.settings.backoff_base * 2.0 ** attempt)
        return base * (0.5 + random.random() / 2)  # "equal jitter"

    def _fail_fast(self, status: int, path: str) -> BrazeError:
        app = self.settings.app
        if status == 401:
            return BrazeError(f"app/{app}: Braze refused the API key (401). Check that the key is "
                              f"right and belongs to the instance at {self._base}.", status, app)
        if status == 403:
            return BrazeError(f"app/{app}: the API key lacks the permission for {path} (403). "
                              "Give the key that permission in Braze's dashboard.", status, app)
        return BrazeError(f"app/{app}: {self._base}{path} does not exist (404). Check "
                          "rest_endpoint: it should be your instance's REST endpoint, such as "
                          "https://rest.iad-01.braze.com.", status, app)

    def post(self, path: str, body: dict[str, Any], *, idempotent: bool = True) -> Response:
        """POST to Braze with retries. Returns 2xx and 400 responses; raises on the rest."""
        app = self.settings.app
        limiter = self._limiter(path)
        url = self._base + path
        attempt = 0
        while True:
            limiter.acquire()
            self.stats.add(requests=1)
            try:
                r = self._session.post(url, json=body, timeout=self.settings.timeout)
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                # ChunkedEncodingError: the connection died while the answer was being read.
                kind = "timed out" if isinstance(exc, requests.Timeout) else "lost the connection"
                if not idempotent:
                    raise DeliveryUnknown(f"app/{app}: {path} {kind}; Braze may or may not have "
                                          "processed it", None, app) from None
                if attempt >= self.settings.max_retries:
                    raise BrazeError(f"app/{app}: {path} {kind} {attempt + 1} times; check that "
                                     f"{self._base} is reachable, then apply again", None,
                                     app) from None
                self._retry_wait(attempt, None)
                attempt += 1
                continue
            status = r.status_code
            if status in (401, 403, 404):
                raise self._fail_fast(status, path)
            if status == 429 or status >= 500:
                if status >= 500 and not idempotent:
                    raise DeliveryUnknown(f"app/{app}: {path} answered {status}; Braze may or "
                                          "may not have processed it", status, app)
                if attempt >= self.settings.max_retries:
                    raise BrazeError(f"app/{app}: {path} still answered {status} after "
                                     f"{attempt + 1} attempts; apply again later (nothing "
                                     "unconfirmed was recorded)", status, app)
                server_wait = _wait_from_headers(r.headers, time.time()) if status == 429 else None
                if status == 429:
                    self.stats.add(throttled=1)
                    limiter.block_for(server_wait if server_wait is not None else
                                      self._backoff(attempt))
                self._retry_wait(attempt, server_wait)
                attempt += 1
                continue
            try:
                payload = r.json()
            except ValueError:
                payload = {}
            if not isinstance(payload, dict):
                payload = {"message": str(payload)[:200]}
            if status >= 400 and status != 400:
                raise BrazeError(f"app/{app}: {path} answered {status}: "
                                 f"{str(payload.get('message', ''))[:200]}", status, app)
            return Response(status, payload)

    def _retry_wait(self, attempt: int, server_wait: float | None) -> None:
        self.stats.add(retries=1)
        if server_wait is not None:
            self._sleep(server_wait + random.random() * 0.1)
        else:
            self._sleep(self._backoff(attempt))

    # -- endpoints --------------------------------------------------------------------------
    def track(self, attributes: list[dict[str, Any]] | None = None,
              events: list[dict[str, Any]] | None = None,
              purchases: list[dict[str, Any]] | None = None) -> Response:
        body: dict[str, Any] = {}
        if attributes:
            body["attributes"] = attributes
        if events:
            body["events"] = events
        if purchases:
            body["purchases"] = purchases
        return self.post("/users/track", body, idempotent=not (events or purchases))

    def delete(self, external_ids: list[str]) -> Response:
        assert len(external_ids) <= 50
        return self.post("/users/delete", {"external_ids": external_ids})

    def existing(self, external_ids: list[str]) -> set[str]:
        """Which of these ids Braze has (read-only; used by enrich plans)."""
        assert len(external_ids) <= 50
        r = self.post("/users/export/ids", {"external_ids": external_ids,
                                            "fields_to_export": ["external_id"]})
        if r.status >= 400:
            raise BrazeError(f"app/{self.settings.app}: /users/export/ids answered {r.status}",
                             r.status, self.settings.app)
        invalid = set(r.body.get("invalid_user_ids") or [])
        return {i for i in external_ids if i not in invalid}

    def set_subscription(self, group_id: str, state: str, external_ids: list[str]) -> Response:
        assert len(external_ids) <= 50
        return self.post("/v2/subscription/status/set", {"subscription_groups": [{
            "subscription_group_id": group_id, "subscription_state": state,
            "external_ids": external_ids}]})
