"""What the Braze client takes from the environment: the proxies and the CA bundle, never
credentials. requests, by default, looks up ``~/.netrc`` (or $NETRC) on every request, and an
entry for the Braze host, or a ``default`` entry, replaced the Bearer key with that login and
password: another service's secret sent to Braze, and every call refused (401)."""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from brazecfg.braze.client import BrazeClient, BrazeSettings
from brazecfg.emulator import Emulator, EmulatorConfig
from tests.helpers import cli, copy_example, emulator_get

PASSWORD = "hunter2-netrc-secret"


@pytest.fixture
def netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home whose .netrc has a ``default`` entry (it matches every host), as CI machines
    that fetch from an artifact server often have."""
    home = tmp_path / "home"
    home.mkdir()
    path = home / ".netrc"
    path.write_text(f"default login someone password {PASSWORD}\n")
    path.chmod(0o600)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("NETRC", str(path))
    return path


def test_apply_with_a_default_netrc_entry_sends_the_api_key(
        tmp_path: Path, netrc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Emulator(EmulatorConfig(port=0)) as emu:
        monkeypatch.setenv("BRAZE_REST_ENDPOINT", emu.url)
        project = copy_example(tmp_path)
        run = cli("apply", str(project), "--auto-approve")
        assert run.exit_code == 0, run.output  # before: "Braze refused the API key (401)"
        assert "refused" not in run.output
        users = emulator_get(emu.url, "users")
    assert users, "the emulator received no user"


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def _answer(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        body = b'{"message": "recorded"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_netrc_password_never_reaches_braze(tmp_path: Path, netrc: Path, recorder: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Every header a server at the rest_endpoint received, through the CLI: the key, never
    the netrc login (before: ``Basic`` with the netrc password, base64)."""
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", recorder)
    project = copy_example(tmp_path)
    run = cli("apply", str(project), "--auto-approve")
    assert run.exit_code != 0  # the recorder refuses every call
    assert _Recorder.seen, "brazecfg sent nothing: the test proves nothing"
    leaked = base64.b64encode(f"someone:{PASSWORD}".encode()).decode()
    for header in _Recorder.seen:
        assert header.startswith("Bearer "), header
        assert leaked not in header and PASSWORD not in header
    assert PASSWORD not in run.output and leaked not in run.output


def _client(url: str) -> BrazeClient:
    return BrazeClient(BrazeSettings("braze", url, "k" * 32))


def test_proxies_and_the_ca_bundle_still_come_from_the_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "rest.local-only.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    session = _client("https://rest.iad-01.braze.com")._session
    assert session.proxies.get("https") == "http://proxy.internal:3128"
    assert session.verify == str(bundle)
    assert not session.trust_env
    # NO_PROXY is honoured for its hosts
    assert not _client("https://rest.local-only.example")._session.proxies


def test_a_prepared_request_keeps_the_bearer_key(netrc: Path) -> None:
    session = _client("https://rest.iad-01.braze.com")._session
    prepared = session.prepare_request(requests.Request("GET", "https://rest.iad-01.braze.com/x"))
    assert prepared.headers["Authorization"] == "Bearer " + "k" * 32
