"""The plain loop: what a user would write. One thread, one requests.Session, the floor's
bodies (bench/floor.py) POSTed to /users/track 75 objects at a time, then the ids in
--deletes (one per line) to /users/delete 50 at a time. No state: every run sends everyone.

    BRAZE_REST_ENDPOINT=http://127.0.0.1:PORT python bench/loop.py PROJECT_DIR [--deletes F]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import requests  # noqa: TID251 - the reference is a plain requests loop, by design

sys.path.insert(0, str(Path(__file__).resolve().parent))
from floor import bodies  # noqa: E402


def post(s: requests.Session, url: str, data: bytes) -> None:
    while True:
        r = s.post(url, data=data, timeout=30)
        if r.status_code != 429:
            r.raise_for_status()
            return
        time.sleep(float(r.headers.get("Retry-After", "1")))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("project", type=Path)
    ap.add_argument("--deletes", type=Path)
    args = ap.parse_args()
    base = os.environ["BRAZE_REST_ENDPOINT"].rstrip("/")
    s = requests.Session()
    s.headers.update({"Authorization": f"Bearer {os.environ.get('BRAZE_API_KEY', 'key')}",
                      "Content-Type": "application/json"})
    sent = reqs = 0
    for n, body in bodies(args.project / "warehouse.db"):
        post(s, base + "/users/track", body)
        sent, reqs = sent + n, reqs + 1
    ids = args.deletes.read_text().split() if args.deletes else []
    for i in range(0, len(ids), 50):
        post(s, base + "/users/delete", json.dumps({"external_ids": ids[i:i + 50]}).encode())
        reqs += 1
    print(json.dumps({"records": sent, "deleted": len(ids), "requests": reqs}))


if __name__ == "__main__":
    main()
