"""The log of API requests the emulator answered, bounded in count and bytes.

Bodies are kept as the raw bytes received and parsed only when someone asks: a parsed
75-user body costs several times its size in Python objects, and a benchmark sends
thousands. The Authorization header is never recorded.
"""

from __future__ import annotations

import json
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

DROPPED = 0  # the status logged for a request whose connection was closed unanswered


@dataclass(frozen=True)
class LoggedRequest:
    seq: int
    time: float
    method: str
    path: str
    status: int
    body: bytes

    def to_json(self) -> dict[str, Any]:
        try:
            parsed: Any = json.loads(self.body) if self.body else None
        except ValueError:
            parsed = {"_unparsed": self.body[:1000].decode("utf-8", "replace")}
        return {
            "seq": self.seq,
            "time": self.time,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "dropped": self.status == DROPPED,
            "body": parsed,
        }


class RequestLog:
    """Not thread-safe on its own: the Store calls it under its lock."""

    def __init__(self, limit: int, max_bytes: int) -> None:
        self._limit = limit
        self._max_bytes = max_bytes
        self._entries: deque[LoggedRequest] = deque()
        self._bytes = 0
        self._seq = 0
        self.counts: Counter[tuple[str, int]] = Counter()  # never trimmed, unlike entries

    def add(self, method: str, path: str, status: int, body: bytes) -> None:
        self._seq += 1
        self.counts[(path, status)] += 1
        entry = LoggedRequest(self._seq, time.time(), method, path, status, body)
        self._entries.append(entry)
        self._bytes += len(body)
        while self._entries and (len(self._entries) > self._limit or self._bytes > self._max_bytes):
            self._bytes -= len(self._entries.popleft().body)

    def entries(self, path: str | None = None, limit: int | None = None) -> list[LoggedRequest]:
        chosen = [e for e in self._entries if path is None or e.path == path]
        return chosen[-limit:] if limit else chosen

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
        self._seq = 0
        self.counts.clear()
