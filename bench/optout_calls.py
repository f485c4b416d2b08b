"""The opt-out check's calls alone: N `/subscription/status/get` calls of 50 ids through
brazecfg's Braze client, one thread, against bench/sink.py started for the run. Prints the
client's CPU and wall milliseconds per call (the sink's own CPU is not in them). A first
plan at 1M users makes about 10,900 such calls, their CPU serialised with the plan's by the
GIL, so this is what they cost it. With another checkout first on PYTHONPATH it measures
that one (interleave the two):

    .venv/bin/python bench/optout_calls.py [--calls 3000]
    PYTHONPATH=/tmp/snap .venv/bin/python bench/optout_calls.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Sink  # noqa: E402

from brazecfg.braze.client import BrazeClient, BrazeSettings  # noqa: E402

GROUP = "6f0b5c0e-7d4c-4a57-9a64-3c1f4c0a0001"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=3000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sink = Sink(Path(tmp) / "sink.log")
        try:
            client = BrazeClient(BrazeSettings("braze", sink.url, "k" * 32))
            ids = [f"user-{i:07d}" for i in range(50)]  # as generate.py names them
            for _ in range(200):  # connections and caches warm
                client.subscription_status(GROUP, ids)
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(args.calls):
                answer = client.subscription_status(GROUP, ids)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            if set(answer) != set(ids):
                print(f"the sink answered for {len(answer)} of the 50 ids", file=sys.stderr)
                return 1
            import brazecfg
            print(f"{brazecfg.__file__}: {args.calls} calls, CPU {1e3 * cpu / args.calls:.3f} "
                  f"ms a call, wall {1e3 * wall / args.calls:.3f} ms a call")
        finally:
            sink.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
