"""A fast Braze stand-in on loopback, for benchmarks: NOT what is measured.

    python bench/sink.py --port 4567 [--log 5000]

One asyncio process, HTTP/1.1 keep-alive, no validation beyond what the checks need. It
exists so that the clients (brazecfg and the references) are what a benchmark measures,
not the emulator: `brazecfg emulator` validates every field like Braze and costs several
ms of CPU per request, which on 2 shared cores would be charged to whoever sends.

What it holds, enough for bench/run.py's and bench/compare.py's checks, all from what it
received:
  - users: external_id -> {"attributes": merged, "subscription_groups": {id: state}}
  - per path and status, the number of requests; attribute objects received and a histogram
    of objects per /users/track request; external ids deleted
  - the last --log requests (raw bodies, parsed only when asked for), with a sequence number
  - its own CPU time (time.process_time) and peak RSS

API (same shapes as `brazecfg emulator` where the benchmarks use them):
  POST /users/track, /users/track/bulk   {"attributes": [...]}, inline subscription_groups
  POST /users/delete                     {"external_ids": [...]} (at most 50)
  POST /v2/subscription/status/set       {"subscription_groups": [{..., "external_ids"}]}
  POST /users/export/ids                 {"external_ids": [...]}: users / invalid_user_ids
  GET  /subscription/status/get          ?subscription_group_id=..&external_id[]=..
  GET  /_emulator/health | stats | requests?path=&limit= | users/<external_id>
  GET  /_emulator/users?offset=&limit=   every user held, by external_id
  POST /_emulator/reset                  forget users, counts and the log (not the CPU)
  POST /_emulator/snapshot | restore     save the users / put the saved users back (so two
                                         clients can each start from the same Braze)
Every API call needs an `Authorization: Bearer ...` header (401 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import resource
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

Reply = tuple[int, Any]


class Store:
    def __init__(self, log: int) -> None:
        self.log_size = log
        self.saved: dict[str, dict[str, Any]] | None = None
        self.reset()

    def reset(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self.objects = 0
        self.per_request: collections.Counter[int] = collections.Counter()
        self.deleted = 0
        self.seq = 0
        self.log: collections.deque[tuple[int, str, int, bytes]] = collections.deque(
            maxlen=self.log_size)

    def record(self, path: str, status: int, body: bytes) -> None:
        self.seq += 1
        by = self.counts.setdefault(path, {})
        by[str(status)] = by.get(str(status), 0) + 1
        self.log.append((self.seq, path, status, body))

    # -- the API ---------------------------------------------------------------------------
    def track(self, body: Any) -> Reply:
        attrs = body.get("attributes") if isinstance(body, dict) else None
        if not isinstance(attrs, list) or not attrs or len(attrs) > 75:
            return 400, {"message": "'attributes' must be an array of 1 to 75 objects"}
        users = self.users
        errors = []
        for index, obj in enumerate(attrs):
            xid = obj.get("external_id") if isinstance(obj, dict) else None
            if not isinstance(xid, str) or not xid:
                errors.append({"index": index, "input_array": "attributes",
                               "type": "'external_id' is required"})
                continue
            user = users.get(xid)
            if user is None:
                user = users[xid] = {"attributes": {}, "subscription_groups": {}}
            a = user["attributes"]
            for k, v in obj.items():
                if k == "subscription_groups":
                    for g in v:
                        user["subscription_groups"][g["subscription_group_id"]] = \
                            g["subscription_state"]
                elif k != "external_id":
                    a[k] = v
        n = len(attrs) - len(errors)
        self.objects += n
        self.per_request[len(attrs)] += 1
        reply: dict[str, Any] = {"message": "success", "attributes_processed": n}
        if errors:
            reply["errors"] = errors
        return (201 if n else 400), reply

    def delete(self, body: Any) -> Reply:
        ids = body.get("external_ids") if isinstance(body, dict) else None
        if not isinstance(ids, list) or not ids or len(ids) > 50:
            return 400, {"message": "'external_ids' must be an array of 1 to 50 ids"}
        n = sum(1 for i in ids if self.users.pop(i, None) is not None)
        self.deleted += n
        return 201, {"deleted": n, "message": "success"}

    def subscription_set(self, body: Any) -> Reply:
        groups = body.get("subscription_groups") if isinstance(body, dict) else None
        if not isinstance(groups, list) or not groups:
            return 400, {"message": "'subscription_groups' must be a non-empty array"}
        for g in groups:
            for xid in g.get("external_ids") or []:
                user = self.users.get(xid)
                if user is None:
                    user = self.users[xid] = {"attributes": {}, "subscription_groups": {}}
                user["subscription_groups"][g["subscription_group_id"]] = g["subscription_state"]
        return 201, {"message": "success"}

    def export_ids(self, body: Any) -> Reply:
        ids = body.get("external_ids") or [] if isinstance(body, dict) else []
        users = [{"external_id": i, **self.users[i]["attributes"]} for i in ids if i in self.users]
        reply: dict[str, Any] = {"users": users}
        invalid = [i for i in ids if i not in self.users]
        if invalid:
            reply["invalid_user_ids"] = invalid
        reply["message"] = "success"
        return 201, reply

    def subscription_get(self, query: str) -> Reply:
        q = parse_qs(query)
        group = (q.get("subscription_group_id") or [""])[0]
        ids = q.get("external_id[]") or q.get("external_id") or []
        status = {i: (self.users.get(i) or {}).get("subscription_groups", {}).get(
            group, "unknown") for i in ids}
        return 201, {"status": status, "message": "success"}

    # -- inspection ------------------------------------------------------------------------
    def inspect(self, method: str, route: str, query: str) -> Reply:
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        if method == "GET" and route == "health":
            return 200, {"status": "ok", "server": "bench/sink.py"}
        if method == "GET" and route == "stats":
            ru = resource.getrusage(resource.RUSAGE_SELF)
            return 200, {"users": len(self.users), "requests": self.counts,
                         "attribute_objects": self.objects,
                         "objects_per_request": {str(k): v for k, v in
                                                 sorted(self.per_request.items())},
                         "deleted": self.deleted, "seq": self.seq,
                         "cpu_s": round(time.process_time(), 3),
                         "peak_rss_mb": round(ru.ru_maxrss / 1024, 1)}
        if method == "GET" and route == "requests":
            path, limit = params.get("path"), int(params.get("limit") or 0)
            entries = [e for e in self.log if path is None or e[1] == path]
            if limit:
                entries = entries[-limit:]
            return 200, {"requests": [{"seq": s, "path": p, "status": st,
                                       "body": json.loads(b) if b else None}
                                      for s, p, st, b in entries]}
        if method == "GET" and route == "users":
            offset = int(params.get("offset") or 0)
            limit = int(params.get("limit") or len(self.users))
            ids = sorted(self.users)[offset:offset + limit]
            return 200, {"total": len(self.users),
                         "users": [{"external_id": i, **self.users[i]} for i in ids]}
        if method == "GET" and route.startswith("users/"):
            xid = unquote(route[len("users/"):])
            user = self.users.get(xid)
            if user is None:
                return 404, {"message": f"No user with external_id {xid!r}"}
            return 200, {"external_id": xid, **user}
        if method == "POST" and route == "reset":
            self.reset()
            return 200, {"message": "reset"}
        if method == "POST" and route == "snapshot":
            self.saved = {k: {"attributes": dict(u["attributes"]),
                              "subscription_groups": dict(u["subscription_groups"])}
                          for k, u in self.users.items()}
            return 200, {"message": "saved", "users": len(self.saved)}
        if method == "POST" and route == "restore":
            if self.saved is None:
                return 400, {"message": "no snapshot"}
            self.users = {k: {"attributes": dict(u["attributes"]),
                              "subscription_groups": dict(u["subscription_groups"])}
                          for k, u in self.saved.items()}
            return 200, {"message": "restored", "users": len(self.users)}
        return 404, {"message": f"No endpoint {method} /_emulator/{route}"}

    def handle(self, method: str, target: str, headers: dict[bytes, bytes],
               body: bytes) -> Reply:
        parts = urlsplit(target)
        path = parts.path
        if path.startswith("/_emulator/"):
            return self.inspect(method, path[len("/_emulator/"):], parts.query)
        if not headers.get(b"authorization", b"").startswith(b"Bearer "):
            status, reply = 401, {"message": "Invalid API key"}
        elif method == "GET" and path == "/subscription/status/get":
            status, reply = self.subscription_get(parts.query)
        elif method != "POST" or path not in POSTS:
            status, reply = 404, {"message": f"No endpoint {method} {path}"}
        else:
            try:
                data = json.loads(body)
            except ValueError:
                status, reply = 400, {"message": "Invalid JSON"}
            else:
                status, reply = POSTS[path](self, data)
        self.record(path, status, body)
        return status, reply


POSTS = {"/users/track": Store.track, "/users/track/bulk": Store.track,
         "/users/delete": Store.delete, "/v2/subscription/status/set": Store.subscription_set,
         "/users/export/ids": Store.export_ids}
REASONS = {200: b"OK", 201: b"Created", 400: b"Bad Request", 401: b"Unauthorized",
           404: b"Not Found", 411: b"Length Required"}


class Http(asyncio.Protocol):
    """HTTP/1.1 with Content-Length bodies and keep-alive; requests are answered in order."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).split(b"\r\n")
            method, target, _ = head[0].decode("latin-1").split(" ", 2)
            headers = {}
            for line in head[1:]:
                k, _, v = line.partition(b":")
                headers[k.strip().lower()] = v.strip()
            if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                self._reply(411, {"message": "send a Content-Length"}, close=True)
                return
            length = int(headers.get(b"content-length", b"0"))
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4:end + 4 + length])
            del self.buf[:end + 4 + length]
            status, reply = self.store.handle(method, target, headers, body)
            self._reply(status, reply, close=headers.get(b"connection", b"").lower() == b"close")

    def _reply(self, status: int, reply: Any, close: bool = False) -> None:
        assert self.transport is not None
        payload = json.dumps(reply).encode()
        self.transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n%s\r\n" % (
                                 status, REASONS.get(status, b"OK"), len(payload),
                                 b"Connection: close\r\n" if close else b"") + payload)
        if close:
            self.transport.close()


async def serve(host: str, port: int, log: int) -> None:
    store = Store(log)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Http(store), host, port, backlog=512)
    print(f"bench/sink.py listening on http://{host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=4567)
    ap.add_argument("--log", type=int, default=5000,
                    help="requests kept with their bodies for /_emulator/requests")
    args = ap.parse_args()
    try:
        asyncio.run(serve(args.host, args.port, args.log))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
