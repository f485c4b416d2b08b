"""The ceiling of bench/sink.py: K client processes POST the same 75-object /users/track
body over keep-alive connections for S seconds; prints requests/s and the sink's CPU ms per
request (from its own /_emulator/stats).

    python bench/sinkload.py [--clients 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PYTHON, ROOT, free_port  # noqa: E402

BODY = json.dumps({"attributes": [
    {"external_id": str(i), "email": f"user{i}@example.com", "first_name": f"First{i}",
     "last_name": f"Last{i}", "country": "US", "lifetime_value": 123.45,
     "purchase_count": 3, "last_product": "pro"} for i in range(75)]}).encode()


def client(port: int, seconds: float, out: multiprocessing.Queue[int]) -> None:
    c = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Authorization": "Bearer k", "Content-Type": "application/json"}
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        c.request("POST", "/users/track", BODY, headers)
        r = c.getresponse()
        r.read()
        assert r.status == 201, r.status
        n += 1
    out.put(n)


def stats(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_emulator/stats") as r:
        return json.load(r)  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5)
    args = ap.parse_args()
    port = free_port()
    sink = subprocess.Popen([PYTHON, str(ROOT / "bench" / "sink.py"), "--port", str(port)],
                            stdout=subprocess.DEVNULL)
    try:
        time.sleep(1)
        cpu0 = stats(port)["cpu_s"]
        q: multiprocessing.Queue[int] = multiprocessing.Queue()
        t0 = time.perf_counter()
        procs = [multiprocessing.Process(target=client, args=(port, args.seconds, q))
                 for _ in range(args.clients)]
        for p in procs:
            p.start()
        n = sum(q.get() for _ in procs)
        wall = time.perf_counter() - t0
        s = stats(port)
        assert s["attribute_objects"] == 75 * n, (s["attribute_objects"], n)
        print(json.dumps({"clients": args.clients, "requests": n, "objects": 75 * n,
                          "requests_per_s": round(n / wall), "sink_cpu_s": s["cpu_s"] - cpu0,
                          "sink_cpu_ms_per_request": round((s["cpu_s"] - cpu0) / n * 1000, 3)}))
    finally:
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    main()
