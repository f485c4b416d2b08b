"""The CLI's contract: exit codes, error messages without tracebacks, the emulator command."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, cli, copy_example

CASES = ROOT / "tests" / "config" / "cases"
LOCATED = re.compile(r"^error \S+:\d+:\d+: ", re.M)


def test_broken_project_lists_every_error_with_location_and_exits_1() -> None:
    out = cli("validate", str(CASES / "many_errors"))
    assert out.exit_code == 1
    assert "Traceback" not in out.output
    expected = (CASES / "many_errors" / "expected.txt").read_text().splitlines()
    assert len(LOCATED.findall(out.stderr)) >= len([x for x in expected if re.search(r":\d+:\d+:", x)])
    assert f"{len(expected)} problems found." in out.stderr


def test_each_broken_case_exits_1_without_traceback() -> None:
    for case in sorted(p for p in CASES.iterdir() if p.is_dir() and p.name != "valid"):
        out = cli("plan", str(case))
        assert out.exit_code == 1, case.name
        assert "Traceback" not in out.output and "problem" in out.stderr, case.name


def test_missing_project_folder_is_a_clear_error(tmp_path: Path) -> None:
    out = cli("validate", str(tmp_path / "nope"))
    assert out.exit_code == 1 and "Traceback" not in out.output
    assert out.stderr.strip()


def test_unreachable_braze_is_one_clear_error(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused connection is a wrong endpoint or a stopped emulator: one line at once (not
    retries for minutes), naming the app, and saying what to do."""
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused
    project = copy_example(tmp_path)
    started = time.monotonic()
    out = cli("apply", str(project), "--auto-approve")
    assert time.monotonic() - started < 10  # default max_retries: 8, yet no retry wait
    assert out.exit_code == 1
    # The endpoint was rendered from the environment, so it is masked like any possible
    # secret; the message names the app and the variable to check instead.
    assert "app/braze: cannot reach ***" in out.stderr and "127.0.0.1:9" not in out.stderr
    assert "connection refused; nothing was sent" in out.stderr
    assert "brazecfg emulator" in out.stderr and "BRAZE_REST_ENDPOINT" in out.stderr
    assert "Traceback" not in out.output


def test_missing_warehouse_file_names_the_app(tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    (project / "warehouse.sql").unlink()
    out = cli("plan", str(project))
    assert out.exit_code == 1
    assert "app/warehouse" in out.stderr and "Traceback" not in out.output


def test_emulator_command_serves_until_stopped(tmp_path: Path) -> None:
    exe = shutil.which("brazecfg", path=str(Path(sys.executable).parent))
    assert exe
    proc = subprocess.Popen([exe, "--no-color", "emulator", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line
        dump = subprocess.run([exe, "emulator", "dump", "stats", "--url", url.group(0)],
                              capture_output=True, text=True, timeout=30, check=False)
        assert dump.returncode == 0 and '"users": 0' in dump.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def test_emulator_command_takes_the_contract(tmp_path: Path) -> None:
    """A 50-object cap, an hourly limit and MAU headers, from the command line."""
    import requests

    exe = shutil.which("brazecfg", path=str(Path(sys.executable).parent))
    assert exe
    proc = subprocess.Popen([exe, "--no-color", "emulator", "--port", "0", "--track-cap", "50",
                             "--track-hourly-limit", "2", "--mau-headers"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        url = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline())
        assert url
        headers = {"Authorization": "Bearer local-emulator-key",
                   "Content-Type": "application/json"}

        def track(n: int) -> requests.Response:
            body = {"attributes": [{"external_id": str(i)} for i in range(n)]}
            return requests.post(f"{url.group(0)}/users/track", json=body, headers=headers,
                                 timeout=10)

        assert track(51).json()["message"] == "Max Input Length Exceeded"
        assert track(50).status_code == 201
        throttled = track(1)
        assert throttled.status_code == 429 and "X-Ratelimit-Retry-After" in throttled.headers
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def test_validate_loads_neither_the_warehouse_nor_the_http_nor_the_apply_machinery(
        tmp_path: Path) -> None:
    """`validate` (and `fmt`, the editor's loop) reads files only: it must not pay for
    importing SQLAlchemy, requests or apply (half of its 1 s on a small project, 24 MB),
    nor check the shipped schemas against the metaschema on every run (the tests do)."""
    project = copy_example(tmp_path)
    probe = (
        "import sys, runpy, jsonschema\n"
        "def checked(cls, schema, *a, **k):\n"
        "    raise AssertionError('a shipped schema was checked against the metaschema')\n"
        "jsonschema.Draft202012Validator.check_schema = classmethod(checked)\n"
        f"sys.argv = ['brazecfg', 'validate', {str(project)!r}]\n"
        "try:\n"
        "    runpy.run_module('brazecfg', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(' '.join(m for m in ('sqlalchemy', 'requests', 'brazecfg.apply.applier',\n"
        "                           'brazecfg.warehouse.engine') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60).stdout.splitlines()
    assert "valid" in out[0]
    assert out[1] == ""  # none of them was imported
