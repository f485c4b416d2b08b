"""Where a call to Braze goes, and with what. From the environment the client takes the
proxies and the CA bundle, never credentials: requests, by default, looked up ``~/.netrc``
(or $NETRC) on every request, and an entry for the Braze host, or a ``default`` entry,
replaced the Bearer key with that login and password (another service's secret sent to
Braze, and every call refused, 401). And a redirect is never followed: requests resent the
profiles wherever a 307 pointed and took that server's answer for Braze's."""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brazecfg.braze import client
from brazecfg.braze.client import BrazeClient, BrazeSettings
from brazecfg.emulator import Emulator, EmulatorConfig
from brazecfg.errors import BrazeError
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
        users = emulator_get(emu.url, "users")["users"]
    assert len(users) == 12, users  # the example's users, all of them


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []  # the Authorization header of each request
    targets: list[str] = []  # and its target (a whole URL when it came as to a proxy)
    redirect_to: str | None = None  # answer 307 to there instead of 401

    def _answer(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        self.targets.append(self.path)
        body = b'{"message": "recorded"}'
        if self.redirect_to is not None:
            self.send_response(307)
            self.send_header("Location", self.redirect_to + self.path)
        else:
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
    _Recorder.targets = []
    _Recorder.redirect_to = None
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
    return BrazeClient(BrazeSettings("braze", url, "k" * 32, max_retries=0))


def test_an_http_proxy_from_the_environment_carries_the_calls(
        recorder: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY: the call goes to the proxy, naming the whole URL, with the key."""
    monkeypatch.setenv("HTTP_PROXY", recorder)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = _client("http://braze.invalid")
    with pytest.raises(BrazeError, match="refused the API key"):  # the recorder answers 401
        client.delete(["1"])
    assert _Recorder.targets == ["http://braze.invalid/users/delete"]
    assert _Recorder.seen == ["Bearer " + "k" * 32]


def test_no_proxy_sends_directly(recorder: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", recorder)
    monkeypatch.setenv("NO_PROXY", "braze.invalid")
    with pytest.raises(BrazeError, match="does not resolve"):
        _client("http://braze.invalid").delete(["1"])
    assert _Recorder.targets == []


def test_the_ca_bundle_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    assert _client("https://rest.iad-01.braze.com")._http.verify == str(bundle)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert _client("https://rest.iad-01.braze.com")._http.verify is True


def test_apply_never_follows_a_redirect(tmp_path: Path, recorder: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The rest_endpoint answers 307 to another server (an emulator): nothing reaches that
    one, and the run says what to fix. Before, every profile went there and its answers
    were recorded as Braze's."""
    with Emulator(EmulatorConfig(port=0)) as emu:
        _Recorder.redirect_to = emu.url
        monkeypatch.setenv("BRAZE_REST_ENDPOINT", recorder)
        project = copy_example(tmp_path)
        run = cli("apply", str(project), "--auto-approve")
        assert run.exit_code != 0, run.output
        assert "a redirect to" in run.output and "rest_endpoint" in run.output, run.output
        assert "Traceback" not in run.output
        assert _Recorder.targets, "nothing was sent: the test proves nothing"
        assert emulator_get(emu.url, "users")["users"] == []


# The request target as urllib3 would send it: brazecfg passes an already encoded target on
# as it is (brazecfg/braze/client.py, _encode_target), which must never change a byte sent.
_TARGET_CHARS = ("/?#%[] &=+-._~!$'()*,;:@\n\r\t\x00\x7f\"<>\\^`{|}aAfFgGzZ09é\u2028")


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from([*_TARGET_CHARS, "%5B", "%5b", "%2", "%e9", "%25", "%C3", "%GG",
                                  "%Z9", "%zz"]), max_size=40))
def test_a_target_is_sent_as_urllib3_would_encode_it(parts: list[str]) -> None:
    target = "/" + "".join(parts)
    assert client._urllib3_encode_target is not None
    try:
        want: str | type[BaseException] = client._urllib3_encode_target(target)
    except Exception as exc:  # noqa: BLE001 -- both must refuse it the same way
        want = type(exc)
    try:
        got: str | type[BaseException] = client._encode_target(target)
    except Exception as exc:  # noqa: BLE001
        got = type(exc)
    assert got == want, target


def test_the_opt_out_check_sends_its_ids_as_urllib3_encodes_them(recorder: str) -> None:
    """Ids that need quoting and plain ones: the client quotes each, so every target it
    builds is already encoded and takes the shortcut (urllib3's own encoding of any other
    target is the test above), and the server reads back the very ids asked about."""
    import urllib3.connectionpool
    assert urllib3.connectionpool._encode_target is client._encode_target  # type: ignore[attr-defined]
    ids = ["user-0000001", "a b", "x&y=z", "50%", "é", "#frag", "a[1]", "%41"]
    for asked in (ids, ids[:1]):
        _Recorder.targets = []
        with pytest.raises(BrazeError, match="refused the API key"):
            _client(recorder).subscription_status("6f0b5c0e-0001", asked)
        query = "subscription_group_id=6f0b5c0e-0001&" + "&".join(
            "external_id%5B%5D=" + quote(i, safe="") for i in asked)
        assert client._urllib3_encode_target is not None
        assert _Recorder.targets == [
            client._urllib3_encode_target("/subscription/status/get?" + query)]
        sent = parse_qs(urlsplit(_Recorder.targets[0]).query)
        assert sent == {"subscription_group_id": ["6f0b5c0e-0001"], "external_id[]": asked}
