"""The HTTP side: a stdlib ThreadingHTTPServer that speaks Braze's REST API on loopback.

Each API request goes: route (404) -> key (401/403) -> Content-Type (415) -> size (413)
-> injected fault -> rate limit (429) -> JSON (400) -> endpoint. Bodies are always read in full first, so a keep-alive
connection stays in step whatever the answer.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from brazecfg.emulator.api import ENDPOINTS, BadRequest
from brazecfg.emulator.config import EmulatorConfig
from brazecfg.emulator.inspection import PREFIX, inspect
from brazecfg.emulator.requestlog import DROPPED
from brazecfg.emulator.store import Store
from brazecfg.emulator.traffic import FaultInjector, Quota, RateLimiter

JSON = "application/json"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN and Infinity are Python's, not JSON's


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # benchmarks open many connections at once
    emulator: Emulator


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse connections
    timeout = 120  # an idle keep-alive connection frees its thread eventually
    # Headers and body go out in two writes; with Nagle on, the body waits for the
    # client's delayed ACK (~40 ms a request).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a terminal line per request would drown a benchmark."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        body = self._read_body()
        if body is None:
            self._send(400, {"message": "Unreadable request body"})
            self.close_connection = True
            return
        path, _, query = self.path.partition("?")
        emulator = self.server.emulator
        if path.startswith(PREFIX):
            self._send(*inspect(emulator, method, path, query))
            return
        if emulator.config.latency_ms:
            time.sleep(emulator.config.latency_ms / 1000)
        # Logged by _send before the response leaves, so a client that got its answer
        # always finds its request in the log and the stats (no race with inspection).
        self._log_as: tuple[str, str, bytes] | None = (method, path, body)
        status = self._api(emulator, method, path, body, query)
        if self._log_as is not None:  # dropped: nothing was sent
            emulator.store.log_request(method, path, status, body)
            self._log_as = None

    def _api(self, emulator: Emulator, method: str, path: str, body: bytes,
             query: str = "") -> int:
        """Answers one API request; returns the status for the request log."""
        endpoint = ENDPOINTS.get(path)
        if endpoint is None or method != endpoint.method:
            return self._send(404, {"message": "Not Found"})
        key = self._api_key()
        permissions = emulator.config.api_keys.get(key) if key is not None else None
        if permissions is None:
            # Braze echoes the key here; brazecfg must never print auth error bodies.
            return self._send(401, {"message": f"Invalid API key: {key or ''}"})
        if endpoint.permission not in permissions:
            return self._send(403, {"message": "Access Denied"})
        content_type = self.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() != JSON:
            # errors.md: Content-Type missing or not application/json.
            return self._send(415, {"message": "Unsupported Media Type: send Content-Type: "
                                               "application/json"})
        if len(body) > emulator.config.max_body_bytes:
            return self._send(413, {"message": "Payload Too Large: a request body is at most "
                                               f"{emulator.config.max_body_bytes} bytes"})
        if path == "/users/track/bulk" and len(body) > emulator.config.bulk_max_body_bytes:
            # "2 MB (over: 400)" (api_limits.md)
            return self._send(400, {"message": "a /users/track/bulk body is at most "
                                               f"{emulator.config.bulk_max_body_bytes} bytes"})
        fault = emulator.faults.next_fault()
        if fault == "drop":
            self.close_connection = True  # the socket closes with nothing written
            return DROPPED
        if fault == "500":
            return self._send(
                500, {"message": "Internal Server Error"}, emulator.limiter.peek(path)
            )
        quota = emulator.limiter.peek(path) if fault == "429" else emulator.limiter.take(path)
        if fault == "429" or (quota is not None and not quota.allowed):
            wait = emulator.config.fault_429_retry_after if fault == "429" else None
            return self._send(429, {"message": "API rate limit exceeded"}, quota, throttled=True,
                              retry_after=wait)
        try:
            if endpoint.method == "GET":  # read endpoints take query parameters
                parsed: Any = urllib.parse.parse_qs(query, keep_blank_values=True)
            else:
                parsed = json.loads(body, parse_constant=_reject_constant) if body.strip() else None
        except ValueError:
            # errors.md: "400 Bad Request: Bad syntax."
            return self._send(400, {"message": "Bad syntax: the request body is not valid JSON"},
                              quota)
        try:
            status, payload = endpoint.handler(parsed, emulator.store, emulator.config)
        except BadRequest as exc:
            status, payload = 400, {"message": str(exc)}
        return self._send(status, payload, quota)

    def _api_key(self) -> str | None:
        header = self.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, key = header.strip().partition(" ")
        return key.strip() if scheme.lower() == "bearer" else None

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        while True:
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                return None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(65537)

    def _send(
        self,
        status: int,
        payload: dict[str, Any],
        quota: Quota | None = None,
        *,
        throttled: bool = False,
        retry_after: int | None = None,
    ) -> int:
        data = json.dumps(payload).encode("utf-8")
        pending = getattr(self, "_log_as", None)
        if pending is not None:
            self.server.emulator.store.log_request(pending[0], pending[1], status, pending[2])
            self._log_as = None
        self.send_response(status)
        self.send_header("Content-Type", JSON)
        self.send_header("Content-Length", str(len(data)))
        mode = self.server.emulator.config.rate_limit_headers
        if quota is not None:
            wait = quota.retry_after() if retry_after is None else retry_after
            if throttled and mode == "mau":
                # MAU plans: on a 429 this one header replaces the three (post_user_track.md).
                self.send_header("X-Ratelimit-Retry-After", str(wait))
            else:
                for name, value in quota.headers(mode).items():
                    self.send_header(name, value)
                if throttled:
                    self.send_header("Retry-After", str(wait))
        elif throttled:
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(data)
        return status


class Emulator:
    """A local Braze REST API. Use as a context manager, or start() and stop().

    `url` is known after start() (port 0 picks a free port); `store` gives tests direct
    access to users, events, purchases, subscriptions and the request log.
    """

    def __init__(self, config: EmulatorConfig | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        """`clock` is the wall clock the rate-limit windows follow (tests pass a fake one to
        cross an hour boundary without waiting an hour)."""
        self.config = config or EmulatorConfig()
        self.store = Store(self.config)
        self.limiter = RateLimiter(self.config.rate_limits, clock=clock,
                                   hourly=self.config.hourly_limits)
        self.faults = FaultInjector(self.config)
        self.url = _url(self.config.host, self.config.port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Emulator:
        if self._server is not None:
            return self
        state = self.config.state_file
        if state and os.path.exists(state):
            self.store.load(state)
        server_class = _Server6 if ":" in self.config.host else _Server
        server = server_class((self.config.host, self.config.port), _Handler)
        server.emulator = self
        self.url = _url(self.config.host, server.server_address[1])
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="braze-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving, closes the listening socket and saves state if configured."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()
        if self.config.state_file:
            self.save()

    def save(self) -> int:
        """Writes the state file now; returns the number of users saved."""
        if not self.config.state_file:
            raise ValueError("no state_file configured")
        return self.store.save(self.config.state_file)

    def reset(self) -> None:
        """Forgets users, the request log, rate-limit windows and fault counters."""
        self.store.reset()
        self.limiter.reset()
        self.faults.reset()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(config: EmulatorConfig, *, announce: Callable[[str], None] = print) -> None:
    """Runs the emulator until Ctrl-C or SIGTERM, then stops cleanly (saving state)."""
    stopping = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    emulator = Emulator(config).start()
    try:
        announce(f"Braze emulator listening on {emulator.url} (Ctrl-C to stop)")
        while not stopping.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
