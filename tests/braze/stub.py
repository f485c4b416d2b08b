"""A tiny scripted HTTP server for client tests: each request gets the next scripted answer."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DROP = "drop"  # close the connection without answering
TRUNCATE = "truncate"  # send the headers and half a body, then close


@dataclass
class Answer:
    status: int = 201
    body: dict[str, Any] = field(default_factory=lambda: {"message": "success"})
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (for client timeouts)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


class Stub:
    """Answers requests from a script; once the script runs out, 201 success. ``respond``,
    when set, answers first (None: fall through to the script)."""

    def __init__(self) -> None:
        self.script: list[Answer | str] = []
        self.respond: Callable[[Seen], Answer | str | None] | None = None
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else ~40 ms a request (delayed ACK)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                seen = Seen(self.path, dict(self.headers.items()),
                            json.loads(raw) if raw else None)
                with stub._lock:
                    stub.seen.append(seen)
                    answer = stub.respond(seen) if stub.respond else None
                    if answer is None:
                        answer = stub.script.pop(0) if stub.script else Answer()
                if answer == DROP:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if answer == TRUNCATE:
                    self.close_connection = True
                    self.wfile.write(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: 100\r\n\r\n{\"message\"")
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                assert isinstance(answer, Answer)
                if answer.delay:
                    time.sleep(answer.delay)
                data = json.dumps(answer.body).encode()
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in answer.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout)

            do_GET = do_POST  # read-only calls (their query in Seen.path), answered alike

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)

    def answer(self, *answers: Answer | str) -> None:
        with self._lock:
            self.script.extend(answers)

    def __enter__(self) -> Stub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
