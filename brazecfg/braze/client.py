"""The only place brazecfg talks HTTP: one pooled session per Braze app.

Timeouts on every call; retries with exponential backoff and jitter on 429, 5xx, dropped
connections and timeouts, honouring X-RateLimit-Reset, X-Ratelimit-Retry-After and
Retry-After; 401/403/404 fail fast with one line naming the app. The API key is never put in a
message: Braze's 401 body echoes it, so auth error bodies are never read into errors.

Requests that are not idempotent (events, purchases) pass ``idempotent=False``: after a 5xx,
a timeout or a dropped connection nobody knows whether Braze processed them, so the client
raises DeliveryUnknown instead of retrying. A 429 is always retried: nothing was processed.

A connection that could not be opened (refused, a name that does not resolve) provably sent
nothing: the client raises NotSent at once, never DeliveryUnknown, and never retries it for
minutes (it is almost always a wrong endpoint or an emulator that is not running). A connect
timeout also sent nothing, so it is retried even for events. ``hooks`` let the caller record,
right before each attempt leaves, that the request is in flight, and undo that when Braze
answered that it processed nothing (429).
"""

from __future__ import annotations

import email.utils
import json
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import quote

import orjson
import requests
import urllib3
from requests.adapters import HTTPAdapter

from brazecfg.braze.limits import (
    DEFAULT_LIMITS,
    SLACK_SECONDS,
    ClockWindowLimiter,
    Limiters,
    SlidingWindowLimiter,
    bucket_for,
    headroom,
    workers_for,
)
from brazecfg.errors import BrazeError

USER_AGENT = "brazecfg/0.1"


def _encode(body: dict[str, Any]) -> bytes:
    """The request body: orjson, or json for what orjson refuses (integers past 64 bits)."""
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


# The limit of an endpoint without one of its own in ``rate_limits`` (requests, seconds).
_OTHER_LIMIT = (250_000, 3600.0)


class DeliveryUnknown(BrazeError):
    """The request may or may not have been processed (5xx, timeout, dropped connection)."""


class NotSent(BrazeError):
    """The request never left this machine (connection refused, unknown host): nothing of it
    reached Braze, so whatever it carried can be sent again safely."""


@dataclass(frozen=True)
class SendHooks:
    """Callbacks around each attempt of one request, called in the calling thread.

    ``leaving`` runs after the rate limiter let the attempt out, right before its bytes go;
    ``refused`` runs when the attempt provably processed nothing (a 429, a 401/403/404, a
    connection that could not be opened), before the client waits, retries or raises."""

    leaving: Callable[[], None] | None = None
    refused: Callable[[], None] | None = None


def _never_left(exc: Exception) -> str | None:
    """Why a connection could not even be opened (nothing was sent), or None when the
    request may have reached the server (connection lost after sending, read timeout)."""
    if isinstance(exc, urllib3.exceptions.NameResolutionError):
        return "the host name does not resolve"
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return "connection refused"
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):  # NewConnectionError's base
        return "connect timed out"
    return None


@dataclass
class BrazeSettings:
    app: str
    rest_endpoint: str
    api_key: str = field(repr=False)
    timeout: float = 30.0
    max_retries: int = 8
    concurrency: int | None = None  # None: sized to the rate limit (limits.workers_for)
    backoff_base: float = 0.5
    backoff_cap: float = 60.0
    # Settling unknown events trusts Braze's export only for rows sent this long ago: the
    # export lags behind what Braze accepted (Braze advises five minutes between calls).
    settle_after: float = 300.0
    rate_limits: dict[str, tuple[int, float]] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    # The contract (see settings.py): objects per /users/track request, whether that cap counts
    # per array (legacy) or in total, and hourly limits (bucket -> requests) that reset on the
    # clock hour, beside the burst limits above.
    track_batch: int = 75
    track_cap_per: str = "request"
    hourly_limits: dict[str, int] = field(default_factory=dict)
    # Where profile writes go: /users/track, or /users/track/bulk when the app opts in
    # (``track_endpoint: bulk``; its own permission users.track.bulk, limits and caps).
    track_path: str = "/users/track"
    # Objects per /users/track/bulk request: up to 1,000 "depending on your account's bulk
    # rate-limit policy" (contract.bulk_objects), at most 100 per profile (we send one).
    bulk_batch: int = 1000

    @property
    def workers(self) -> int:
        """Requests in flight at once: the app's ``concurrency`` option, else what keeps the
        profile writes' endpoint at its rate limit (limits.workers_for)."""
        if self.concurrency is not None:
            return max(1, self.concurrency)
        return workers_for(*self.rate_limits.get(self.track_path,
                                                 DEFAULT_LIMITS["/users/track"]))


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class ExportedUser:
    """What /users/export/ids says of one user: when Braze created the profile and how many
    events and purchases it holds, by (kind, name); a purchase's name is its product_id."""

    created_at: str
    counts: dict[tuple[str, str], int]


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


def _wait_from_headers(headers: Mapping[str, str], now: float
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


_SAFE_QUERY = re.compile(r"[A-Za-z0-9_.~-]*")


def _query(params: dict[str, Any]) -> str:
    """``params`` as a query string, lists repeated (``external_id[]=1&external_id[]=2``):
    what requests' ``params=`` sends, quoting only values that need it."""
    parts = []
    for name, value in params.items():
        key = quote(name, safe="")
        for v in value if isinstance(value, list) else [value]:
            v = str(v)
            parts.append(f"{key}={v if _SAFE_QUERY.fullmatch(v) else quote(v, safe='')}")
    return "&".join(parts)


# urllib3 re-encodes every request target it is given (urlopen's ``_encode_target``). A query
# holding a '%' (``external_id%5B%5D=``: every opt-out check's 50 ids) goes through its
# per-byte Python loop, which returns such a target unchanged when it is already encoded:
# 160 us of the call's 520 us of CPU, about 1.9 s of a first plan at 1M (bench/README.md). A
# target in that form (urllib3's allowed characters, '%' only as %XX in upper case, no '#')
# is passed on as it is; any other goes through urllib3's own encoding. A test holds the two
# to the same answer for any target (tests/braze/test_transport.py).
_ALLOWED = r"\-A-Za-z0-9._~!$&'()*+,;=:@/"
_ENCODED_TARGET = re.compile(rf"/[{_ALLOWED}]*+(?:\?(?:[{_ALLOWED}?]++|%[0-9A-F]{{2}})*+)?")
_urllib3_encode_target: Callable[[str], str] | None = getattr(urllib3.connectionpool,
                                                               "_encode_target", None)


def _encode_target(target: str) -> str:
    if _ENCODED_TARGET.fullmatch(target):
        return target
    assert _urllib3_encode_target is not None
    return _urllib3_encode_target(target)


if _urllib3_encode_target is not None:
    setattr(urllib3.connectionpool, "_encode_target", _encode_target)  # noqa: B010


class _Http:
    """The one place a call to Braze leaves the process: urllib3's connection pool for the
    endpoint, set up by requests' adapter (its proxy and TLS handling, certifi's CA bundle),
    one kept-alive connection per worker. Each call is one ``urlopen``: no per-call session
    work (requests' prepare, cookies, hooks and environment merge cost 0.7 ms of CPU per
    call, twice urllib3's own), no redirect followed, and nothing from ``~/.netrc``: with
    requests' ``trust_env`` an entry for the host, or a ``default`` entry, replaced the
    Bearer key with that login and password, sent to Braze. The proxies (HTTP(S)_PROXY,
    ALL_PROXY, NO_PROXY) and the CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) are honoured,
    read once."""

    def __init__(self, base: str, headers: dict[str, str], workers: int, timeout: float) -> None:
        self.proxies = requests.utils.get_environ_proxies(base)
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        self.verify: bool | str = bundle or True
        self._adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(4, workers),
                                    max_retries=0)
        probe = requests.Request("GET", base + "/").prepare()
        self._pool = cast(urllib3.HTTPConnectionPool,
                          self._adapter.get_connection_with_tls_context(probe, self.verify,
                                                                        self.proxies))
        # The request target for a path: the path (plus the endpoint's own path), or the
        # whole URL through an HTTP proxy for a plain-http endpoint, as requests would send.
        self._prefix = self._adapter.request_url(probe, self.proxies)[:-1]
        self._headers = {**headers, "Accept": "*/*", "Accept-Encoding": "gzip, deflate"}
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)

    def send(self, method: str, path: str, body: bytes | None,
             params: dict[str, Any] | None) -> urllib3.BaseHTTPResponse:
        """One call, its whole answer read. Raises urllib3's errors (see ``_never_left``)."""
        target = self._prefix + path + ("?" + _query(params) if params else "")
        r: urllib3.BaseHTTPResponse = self._pool.urlopen(
            method, target, body=body, headers=self._headers, redirect=False,
            assert_same_host=False, retries=False, timeout=self._timeout,
            preload_content=True, decode_content=True)
        return r

    def close(self) -> None:
        self._adapter.close()


class BrazeClient:
    def __init__(self, settings: BrazeSettings, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._base = settings.rest_endpoint.rstrip("/")
        # Every wait goes through these two, the rate limiters' included.
        self._sleep = sleep
        self._clock = clock
        self._wall = wall  # clock-hour windows follow the wall clock, as Braze's do
        self._http = _Http(self._base, {"Authorization": f"Bearer {settings.api_key}",
                                        "Content-Type": "application/json",
                                        "User-Agent": USER_AGENT},
                           settings.workers, settings.timeout)
        self._limiters: dict[str, Limiters] = {}
        self._limiters_lock = threading.Lock()
        self.stats = ClientStats()
        # Hears each retry before its wait: (seconds, why: "429", "503", "timed out", ...).
        self.on_retry: Callable[[float, str], None] | None = None

    def close(self) -> None:
        self._http.close()

    def _limiter(self, path: str) -> Limiters:
        bucket = bucket_for(path)
        with self._limiters_lock:
            if bucket not in self._limiters:
                self._limiters[bucket] = self._contract_limiters(bucket)
            return self._limiters[bucket]

    def workers_for(self, path: str) -> int:
        """Threads worth sending to ``path`` at once: no more than the client's workers, and
        no more than keep its bucket at the rate limit (limits.workers_for)."""
        limit, window = self.settings.rate_limits.get(bucket_for(path), _OTHER_LIMIT)
        return max(1, min(self.settings.workers, workers_for(limit, window)))

    def _contract_limiters(self, bucket: str) -> Limiters:
        """The bucket's burst limit (sliding) and, on MAU-style contracts, its hourly limit
        counted per clock hour. A request let out at the very end of a window can reach Braze
        in the next one: the sliding window is SLACK_SECONDS longer than Braze's, and a
        headroom of 1% of the limit (limits.headroom) covers a slower trip than that."""
        limit, window = self.settings.rate_limits.get(bucket, _OTHER_LIMIT)
        burst = SlidingWindowLimiter(max(1, limit - headroom(limit)), window + SLACK_SECONDS,
                                     clock=self._clock, sleep=self._sleep)
        hourly = self.settings.hourly_limits.get(bucket)
        windows = [ClockWindowLimiter(max(1, hourly - headroom(hourly)), 3600.0,
                                      wall=self._wall, sleep=self._sleep)] if hourly else []
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

    def _unreachable(self, path: str, why: str, attempts: int) -> NotSent:
        app = self.settings.app
        tries = "" if attempts <= 1 else f" ({attempts} attempts)"
        return NotSent(f"app/{app}: cannot reach {self._base} for {path}: {why}{tries}; nothing "
                       "was sent. Start the local emulator with `brazecfg emulator`, or set "
                       "rest_endpoint (BRAZE_REST_ENDPOINT in the example) to your instance's "
                       "REST endpoint, such as https://rest.iad-01.braze.com.", None, app)

    def post(self, path: str, body: dict[str, Any], *, idempotent: bool = True,
             hooks: SendHooks | None = None) -> Response:
        """POST to Braze with retries. Returns 2xx and 400 responses; raises on the rest."""
        return self.request("POST", path, body, idempotent=idempotent, hooks=hooks)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, *,
                params: dict[str, Any] | None = None, idempotent: bool = True,
                hooks: SendHooks | None = None) -> Response:
        """One call with the limiter and retries (``post`` for most endpoints; GET for the
        read-only ones that take query parameters)."""
        app = self.settings.app
        limiter = self._limiter(path)
        hooks = hooks or SendHooks()
        attempt = 0
        while True:
            limiter.acquire()
            self.stats.add(requests=1)
            if hooks.leaving:
                hooks.leaving()
            try:
                # orjson: the body's bytes in a fraction of json.dumps's time (UTF-8, as the
                # Content-Type header says).
                r = self._http.send(method, path, None if body is None else _encode(body),
                                    params)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                why = _never_left(exc)
                if why is not None:
                    if hooks.refused:
                        hooks.refused()
                    # Refused or unresolvable: a wrong endpoint or a stopped emulator, not a
                    # blip; say so now instead of retrying for minutes. A connect timeout may
                    # be a blip, and sent nothing either: retried even for events.
                    if why != "connect timed out" or attempt >= self.settings.max_retries:
                        raise self._unreachable(path, why, attempt + 1) from None
                    self._retry_wait(attempt, None, why)
                    attempt += 1
                    continue
                # Or the connection died while the answer was being read (ProtocolError).
                kind = ("timed out" if isinstance(exc, urllib3.exceptions.TimeoutError)
                        else "lost the connection")
                if not idempotent:
                    raise DeliveryUnknown(f"app/{app}: {path} {kind}; Braze may or may not have "
                                          "processed it", None, app) from None
                if attempt >= self.settings.max_retries:
                    raise BrazeError(f"app/{app}: {path} {kind} {attempt + 1} times; check that "
                                     f"{self._base} is reachable, then apply again", None,
                                     app) from None
                self._retry_wait(attempt, None, kind)
                attempt += 1
                continue
            status = r.status
            if 300 <= status < 400:  # never followed: a POST would turn into a GET elsewhere
                if hooks.refused:
                    hooks.refused()
                raise BrazeError(
                    f"app/{app}: {path} answered {status}, a redirect to "
                    f"{r.headers.get('Location') or '(no location)'}: Braze did not process it. "
                    "Set rest_endpoint to the instance's REST endpoint itself, such as "
                    "https://rest.iad-01.braze.com", status, app)
            if status in (401, 403, 404):
                if hooks.refused:
                    hooks.refused()
                raise self._fail_fast(status, path)
            if status == 429 or status >= 500:
                if status >= 500 and not idempotent:
                    raise DeliveryUnknown(f"app/{app}: {path} answered {status}; Braze may or "
                                          "may not have processed it", status, app)
                if status == 429 and hooks.refused:
                    hooks.refused()  # nothing was processed: not in flight while we wait
                if attempt >= self.settings.max_retries:
                    raise BrazeError(f"app/{app}: {path} still answered {status} after "
                                     f"{attempt + 1} attempts; apply again later (nothing "
                                     "unconfirmed was recorded)", status, app)
                server_wait = _wait_from_headers(r.headers, time.time()) if status == 429 else None
                if status == 429:
                    self.stats.add(throttled=1)
                    limiter.block_for(server_wait if server_wait is not None else
                                      self._backoff(attempt))
                self._retry_wait(attempt, server_wait, str(status))
                attempt += 1
                continue
            try:
                payload = orjson.loads(r.data) if r.data else {}
            except orjson.JSONDecodeError:
                payload = {}
            if not isinstance(payload, dict):
                payload = {"message": str(payload)[:200]}
            if status >= 400 and status != 400:
                raise BrazeError(f"app/{app}: {path} answered {status}: "
                                 f"{str(payload.get('message', ''))[:200]}", status, app)
            return Response(status, payload)

    def _retry_wait(self, attempt: int, server_wait: float | None, why: str = "") -> None:
        self.stats.add(retries=1)
        if server_wait is not None:
            seconds = server_wait + random.random() * 0.1
        else:
            seconds = self._backoff(attempt)
        if self.on_retry is not None:
            self.on_retry(seconds, why)
        self._sleep(seconds)

    # -- endpoints --------------------------------------------------------------------------
    def track(self, attributes: list[dict[str, Any]] | None = None,
              events: list[dict[str, Any]] | None = None,
              purchases: list[dict[str, Any]] | None = None,
              hooks: SendHooks | None = None) -> Response:
        body: dict[str, Any] = {}
        if attributes:
            body["attributes"] = attributes
        if events:
            body["events"] = events
        if purchases:
            body["purchases"] = purchases
        return self.post("/users/track", body, idempotent=not (events or purchases),
                         hooks=hooks)

    def write_profiles(self, attributes: list[dict[str, Any]],
                       hooks: SendHooks | None = None) -> Response:
        """Attributes objects (values and subscription group changes) to the app's profile
        write endpoint: /users/track, or /users/track/bulk when the app opted in."""
        return self.post(self.settings.track_path, {"attributes": attributes}, hooks=hooks)

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

    def export_event_counts(self, external_ids: list[str]) -> dict[str, ExportedUser]:
        """Per user Braze has, its creation time and its event and purchase counts by name
        (read-only; used to settle events whose delivery is unknown). Users Braze does not
        have are absent from the answer."""
        assert len(external_ids) <= 50
        r = self.post("/users/export/ids", {"external_ids": external_ids, "fields_to_export": [
            "external_id", "created_at", "custom_events", "purchases"]})
        if r.status >= 400:
            raise BrazeError(f"app/{self.settings.app}: /users/export/ids answered {r.status}",
                             r.status, self.settings.app)
        wanted = set(external_ids)
        out: dict[str, ExportedUser] = {}
        for user in r.body.get("users") or []:
            if not isinstance(user, dict) or user.get("external_id") not in wanted:
                continue
            counts: dict[tuple[str, str], int] = {}
            for kind, key in (("event", "custom_events"), ("purchase", "purchases")):
                for item in user.get(key) or []:
                    if isinstance(item, dict) and isinstance(item.get("count"), int):
                        counts[(kind, str(item.get("name")))] = item["count"]
            out[str(user["external_id"])] = ExportedUser(str(user.get("created_at") or ""),
                                                         counts)
        return out

    def export_users(self, external_ids: list[str], fields: list[str]
                     ) -> tuple[list[dict[str, Any]], set[str]]:
        """Braze's current profiles of these users (read-only; drift): the users found and
        the ids Braze does not know. /users/export/ids, at most 50 ids a call."""
        assert len(external_ids) <= 50
        r = self.post("/users/export/ids", {"external_ids": external_ids,
                                            "fields_to_export": sorted(set(fields))})
        if r.status >= 400:
            raise BrazeError(f"app/{self.settings.app}: /users/export/ids answered {r.status}",
                             r.status, self.settings.app)
        users = [u for u in r.body.get("users") or [] if isinstance(u, dict)]
        return users, {str(i) for i in r.body.get("invalid_user_ids") or []}

    def subscription_status(self, group_id: str, external_ids: list[str]) -> dict[str, str]:
        """Each user's state in one subscription group, as Braze has it (read-only):
        ``Subscribed``, ``Unsubscribed`` or ``Unknown`` (never in the group, or no such user).
        GET /subscription/status/get, at most 50 ids a call."""
        assert len(external_ids) <= 50
        r = self.request("GET", "/subscription/status/get",
                         params={"subscription_group_id": group_id, "external_id[]": external_ids})
        if r.status >= 400:
            raise BrazeError(f"app/{self.settings.app}: /subscription/status/get answered "
                             f"{r.status}", r.status, self.settings.app)
        status = r.body.get("status")
        return {str(k): str(v) for k, v in status.items()} if isinstance(status, dict) else {}
