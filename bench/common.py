"""Shared plumbing for the benchmarks: the Braze stand-ins (the emulator, bench/sink.py) as
child processes with their inspection endpoints, the benchmark project's setup, timed
commands measured with os.wait4, and the machine's description.

Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BRAZECFG = str(BIN / "brazecfg")
PYTHON = sys.executable
GENERATE = str(ROOT / "bench" / "generate.py")
MEASURE = str(ROOT / "bench" / "measure.py")
SINK = str(ROOT / "bench" / "sink.py")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A Braze stand-in as a separate process on a free loopback port, with the
    /_emulator/ inspection endpoints (health, stats, requests, users/ID, reset)."""

    def __init__(self, log: Path, port: int, args: list[str]) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = args
        self._log = log.open("w")
        self.proc = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.get("health").get("status") == "ok":
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the emulator did not start; see {log}")
            time.sleep(0.1)

    def get(self, route: str, timeout: float = 120) -> Any:
        with urllib.request.urlopen(f"{self.url}/_emulator/{route}", timeout=timeout) as r:
            return json.load(r)

    def post(self, route: str, timeout: float = 600) -> Any:
        req = urllib.request.Request(f"{self.url}/_emulator/{route}", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.load(r)

    def user(self, external_id: str) -> dict[str, Any] | None:
        try:
            return self.get(f"users/{urllib.parse.quote(external_id, safe='')}")  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def stats(self) -> dict[str, Any]:
        return self.get("stats")  # type: ignore[no-any-return]

    def last_seq(self) -> int:
        reqs = self.get("requests?limit=1")["requests"]
        return int(reqs[-1]["seq"]) if reqs else 0

    def peak_rss_mb(self) -> float | None:
        """The emulator's high-water RSS (VmHWM), read while it still runs."""
        try:
            text = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return None
        m = re.search(r"VmHWM:\s+(\d+) kB", text)
        return round(int(m.group(1)) / 1024, 1) if m else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class Emulator(Server):
    """`brazecfg emulator` (validates like Braze; its CPU is charged to the machine)."""

    def __init__(self, log: Path, *extra: str) -> None:
        port = free_port()
        super().__init__(log, port, [BRAZECFG, "emulator", "--port", str(port), *extra])


class Sink(Server):
    """bench/sink.py: a fast stand-in that only records (see its docstring)."""

    def __init__(self, log: Path, *extra: str) -> None:
        port = free_port()
        super().__init__(log, port, [PYTHON, SINK, "--port", str(port), *extra])


def prepare(out: Path, tag: str, n: int, *, options: dict[str, Any] | None = None,
            updated_at: bool = False, groups: bool = True) -> tuple[Path, Path, float]:
    """Generate the benchmark project OUT/TAG for N users (not measured), forget brazecfg's
    state there and apply the braze app's options. Returns (project, logs folder, seconds
    generating). The logs sit outside the project: the loader reads every .json in it."""
    project, logs = out / tag, out / f"{tag}-logs"
    print(f"setup: generating {n:,} users into {project}", flush=True)
    t0 = time.perf_counter()
    subprocess.run([PYTHON, GENERATE, str(project), "--users", str(n),
                    *(["--updated-at"] if updated_at else [])], check=True)
    gen_s = time.perf_counter() - t0
    reset_project_state(project)
    logs.mkdir(parents=True, exist_ok=True)
    if options:
        set_braze_options(project, **options)
    if not groups:
        strip_groups(project)
    return project, logs, gen_s


def bench_env(url: str) -> dict[str, str]:
    """The environment for brazecfg and the references: the stand-in's URL, no colour, and
    no hash key from the caller (the project keeps its own)."""
    env = dict(os.environ, BRAZE_REST_ENDPOINT=url, NO_COLOR="1")
    env.pop("BRAZECFG_HASH_KEY", None)
    return env


def strip_groups(project: Path) -> None:
    """Drop the destination's subscription_groups (no subscription calls)."""
    dest = project / "destination.yml"
    out: list[str] = []
    skipping = False
    for line in dest.read_text().splitlines(keepends=True):
        if line.startswith("subscription_groups:"):
            skipping = True
            continue
        if skipping and line.startswith("  "):
            continue
        skipping = False
        out.append(line)
    dest.write_text("".join(out))


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def request_counts(stats: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {p: dict(s) for p, s in stats.get("requests", {}).items()}


def request_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Requests answered between two stats snapshots, by path and status."""
    b, a = request_counts(before), request_counts(after)
    out: dict[str, dict[str, int]] = {}
    for path, statuses in a.items():
        for status, n in statuses.items():
            d = n - b.get(path, {}).get(status, 0)
            if d:
                out.setdefault(path, {})[status] = d
    return out


def total(delta: dict[str, dict[str, int]], path: str | None = None,
          status: str | None = None) -> int:
    return sum(n for p, s in delta.items() if path is None or p == path
               for st, n in s.items() if status is None or st == status)


@dataclass
class Timed:
    argv: list[str]
    returncode: int
    wall_s: float
    peak_rss_mb: float
    cpu_s: float
    stdout: str
    stderr: str = field(repr=False, default="")


def timed(argv: list[str], env: dict[str, str], log: Path) -> Timed:
    """Run one command through bench/measure.py: wall time around fork..reap, peak RSS and
    CPU from os.wait4. The small launcher matters: a child's ru_maxrss starts from the RSS
    of whoever forked it, and this driver may hold millions of ids."""
    out_path, err_path = log.with_suffix(".out"), log.with_suffix(".err")
    m_path = log.with_suffix(".measure.json")
    with out_path.open("w") as out, err_path.open("w") as err:
        subprocess.run([PYTHON, MEASURE, str(m_path), "--", *argv], stdout=out, stderr=err,
                       env=env, check=False)
    m = json.loads(m_path.read_text())
    return Timed(argv, m["returncode"], round(m["wall_s"], 2), round(m["maxrss_kb"] / 1024, 1),
                 round(m["cpu_s"], 2), out_path.read_text(), err_path.read_text())


def set_braze_options(project: Path, **options: Any) -> None:
    """Add options to the braze app in the generated apps.yml (a flow mapping, one line)."""
    apps = project / "apps.yml"
    text = apps.read_text()
    marker = "  rest_endpoint:"
    lines = []
    for key, value in options.items():
        lines.append(f"  {key}: {json.dumps(value)}")
    if lines and "\n".join(lines) not in text:
        text = text.replace(marker, "\n".join(lines) + "\n" + marker, 1)
        apps.write_text(text)


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        m = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        mem_kb = int(m.group(1)) if m else 0
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "python": platform.python_version(), "os": platform.platform()}


def reset_project_state(project: Path) -> None:
    """Forget brazecfg's state (ledger, hash key, lockfile) so the first plan is a first run."""
    for p in (project / ".brazecfg",):
        if p.exists():
            for child in sorted(p.rglob("*"), reverse=True):
                child.unlink() if child.is_file() else child.rmdir()
            p.rmdir()
    for name in ("brazecfg.lock", "brazecfg.lock.json"):
        (project / name).unlink(missing_ok=True)


def revision() -> str:
    """The commit the benchmark ran on, with "+dirty" when brazecfg/ has uncommitted edits."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "brazecfg"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def configured_concurrency(project: Path) -> int:
    """The workers brazecfg uses for the project's braze app: its `concurrency` option, else
    what brazecfg sizes to the app's rate limit (brazecfg's own rule, not restated here)."""
    import yaml

    from brazecfg.braze.settings import braze_settings
    from brazecfg.errors import Location
    from brazecfg.model.resources import App

    for doc in yaml.safe_load_all((project / "apps.yml").read_text()):
        if doc and doc.get("type") == "braze":
            opts = dict(doc.get("options") or {}, api_key="k", rest_endpoint="http://127.0.0.1")
            return braze_settings(App(kind="app", name=doc["name"], location=Location("apps.yml"),
                                      type="braze", options=opts)).workers
    raise ValueError(f"no braze app in {project / 'apps.yml'}")
