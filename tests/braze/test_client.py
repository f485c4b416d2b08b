"""The Braze client against a scripted stub server: what it waits, what it retries, what it
refuses to retry, and that the API key never leaks."""

from __future__ import annotations

import email.utils
import logging
import random
import time
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from brazecfg.braze.client import BrazeClient, BrazeSettings, DeliveryUnknown
from brazecfg.errors import BrazeError
from tests.braze.stub import DROP, TRUNCATE, Answer, Stub

CANARY = "canary-key-1f2e3d4c5b6a"
EVENT = {"external_id": "1", "name": "e", "time": "2026-01-01T00:00:00Z"}
ATTRS = {"external_id": "1", "first_name": "Ada"}


class FakeTime:
    """A monotonic clock that only moves when someone sleeps; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def stub() -> Iterator[Stub]:
    with Stub() as s:
        yield s


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


_open: list[BrazeClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


def make(stub: Stub, fake: FakeTime, **settings: Any) -> BrazeClient:
    """A client of app "prod" whose every wait goes to ``fake``."""
    opts: dict[str, Any] = {"max_retries": 8, "timeout": 5.0}
    opts.update(settings)
    client = BrazeClient(BrazeSettings("prod", stub.url, CANARY, **opts), sleep=fake.sleep,
                         clock=fake.clock)
    _open.append(client)
    return client


def too_many(**headers: str) -> Answer:
    return Answer(429, {"message": "API rate limit exceeded"}, headers)


# -- honouring what the server asks ------------------------------------------------------------

@pytest.mark.parametrize(("headers", "low", "high"), [
    ({"Retry-After": "7"}, 7.0, 7.1),
    ({"X-Ratelimit-Retry-After": "3"}, 3.0, 3.1),
    ({"x-ratelimit-retry-after": "4"}, 4.0, 4.1),  # headers may arrive in lowercase
    ({"X-RateLimit-Reset": "12"}, 12.0, 12.1),  # seconds remaining
    ({"x-ratelimit-reset": "5"}, 5.0, 5.1),
    # The reset header says 40 s, the explicit retry header wins.
    ({"X-RateLimit-Reset": "40", "X-Ratelimit-Retry-After": "2"}, 2.0, 2.1),
])
def test_429_waits_what_the_server_asks(stub: Stub, fake: FakeTime, headers: dict[str, str],
                                        low: float, high: float) -> None:
    stub.answer(too_many(**headers))
    client = make(stub, fake)
    r = client.post("/users/track", {"attributes": [ATTRS]})
    assert r.status == 201 and len(stub.seen) == 2
    assert low <= sum(fake.sleeps) <= high, fake.sleeps
    assert client.stats.throttled == 1 and client.stats.retries == 1


def test_429_with_reset_as_epoch_seconds(stub: Stub, fake: FakeTime) -> None:
    reset = int(time.time()) + 20
    stub.answer(too_many(**{"X-RateLimit-Reset": str(reset), "X-RateLimit-Remaining": "0"}))
    make(stub, fake).post("/users/track", {"attributes": [ATTRS]})
    assert len(stub.seen) == 2
    assert 18.5 <= sum(fake.sleeps) <= 20.2, fake.sleeps  # not 1.7 billion seconds


def test_429_with_retry_after_as_http_date(stub: Stub, fake: FakeTime) -> None:
    stub.answer(too_many(**{"Retry-After": email.utils.formatdate(time.time() + 9, usegmt=True)}))
    make(stub, fake).post("/users/track", {"attributes": [ATTRS]})
    assert len(stub.seen) == 2
    assert 7.5 <= sum(fake.sleeps) <= 9.2, fake.sleeps


@pytest.mark.parametrize("value", ["soon", "inf", "nan", ""])
def test_unreadable_retry_header_falls_back_to_backoff(stub: Stub, fake: FakeTime,
                                                       value: str) -> None:
    stub.answer(too_many(**{"Retry-After": value, "X-RateLimit-Reset": "later"}))
    client = make(stub, fake, backoff_base=0.5)
    assert client.post("/users/track", {}).status == 201
    assert len(stub.seen) == 2
    # Backoff for attempt 0 (0.25-0.5 s) in the limiter and in the retry: never a crash,
    # never an endless or infinite sleep.
    assert all(0 < s <= 0.5 for s in fake.sleeps) and fake.sleeps, fake.sleeps


def test_a_429_holds_every_sender_of_the_bucket(stub: Stub, fake: FakeTime) -> None:
    """The limiter is told too: the next request of that bucket waits for the reset even if
    the sender that was told has not slept yet."""
    client = make(stub, fake)
    stub.answer(too_many(**{"Retry-After": "30"}))
    sleeps: list[float] = []
    client._sleep = sleeps.append  # the retrying sender does not move the clock ...
    limiter = client._limiter("/users/track")
    limiter.burst._sleep = fake.sleep  # ... another sender in the limiter does
    client.post("/users/track", {})
    assert 30.0 <= sleeps[0] <= 30.1
    assert 29.9 <= sum(fake.sleeps) <= 30.0, fake.sleeps  # the limiter held the retry
    before = len(fake.sleeps)
    client.post("/users/export/ids", {})  # another bucket: not held
    assert len(fake.sleeps) == before


def test_a_429_is_retried_even_for_events(stub: Stub, fake: FakeTime) -> None:
    stub.answer(too_many(**{"Retry-After": "1"}), too_many(**{"Retry-After": "1"}))
    r = make(stub, fake).track(events=[EVENT])
    assert r.status == 201 and len(stub.seen) == 3  # nothing was processed: safe to resend
    assert [s.body for s in stub.seen] == [{"events": [EVENT]}] * 3


def test_429s_exhausting_retries_raise_a_plain_error(stub: Stub, fake: FakeTime) -> None:
    stub.answer(*[too_many(**{"Retry-After": "1"})] * 4)
    with pytest.raises(BrazeError) as info:
        make(stub, fake, max_retries=3).track(events=[EVENT])
    assert not isinstance(info.value, DeliveryUnknown)  # Braze processed none of them
    assert len(stub.seen) == 4 and "429" in str(info.value)


# -- backoff ---------------------------------------------------------------------------------

def test_exponential_backoff_with_equal_jitter_bounds(stub: Stub, fake: FakeTime,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    base, cap = 0.5, 4.0
    uppers = [min(cap, base * 2 ** a) for a in range(6)]  # 0.5 1 2 4 4 4
    for draw in (0.0, 0.999999):
        fake.sleeps.clear()
        monkeypatch.setattr(random, "random", lambda d=draw: d)
        stub.answer(*[Answer(500, {"message": "Internal Server Error"})] * 6)
        client = make(stub, fake, backoff_base=base, backoff_cap=cap)
        assert client.post("/users/track", {}).status == 201
        expected = [u * (0.5 + draw / 2) for u in uppers]
        assert fake.sleeps == pytest.approx(expected, abs=1e-5)
    monkeypatch.undo()
    fake.sleeps.clear()
    client = make(stub, fake, backoff_base=base, backoff_cap=cap)
    for _ in range(40):
        stub.answer(Answer(503, {}))
        client.post("/users/track", {})
    assert all(0.25 <= s <= 0.5 for s in fake.sleeps)
    assert max(fake.sleeps) - min(fake.sleeps) > 0.05  # jittered, not one fixed delay


def test_5xx_and_lost_connections_are_retried_for_idempotent_calls(stub: Stub,
                                                                   fake: FakeTime) -> None:
    stub.answer(Answer(500, {}), DROP, Answer(502, {}), TRUNCATE, Answer(503, {}))
    client = make(stub, fake)
    r = client.track(attributes=[ATTRS])
    assert r.status == 201 and r.body == {"message": "success"}
    assert len(stub.seen) == 6 and client.stats.retries == 5
    assert all(s.body == {"attributes": [ATTRS]} for s in stub.seen)


def test_timeouts_are_retried_for_idempotent_calls(stub: Stub, fake: FakeTime) -> None:
    stub.answer(Answer(delay=0.5))
    r = make(stub, fake, timeout=0.1).delete(["1"])
    assert r.status == 201 and len(stub.seen) == 2


@pytest.mark.parametrize("answer", [Answer(500, {}), Answer(503, {}), DROP, TRUNCATE,
                                    Answer(delay=0.5)],
                         ids=["500", "503", "drop", "truncated", "timeout"])
def test_uncertain_outcomes_of_events_are_never_retried(stub: Stub, fake: FakeTime,
                                                        answer: Answer | str) -> None:
    stub.answer(answer)
    client = make(stub, fake, timeout=0.1)
    with pytest.raises(DeliveryUnknown) as info:
        client.track(events=[EVENT])
    assert len(stub.seen) == 1  # sent once: a blind retry could count it twice
    assert "app/prod" in str(info.value) and "may or may not" in str(info.value)
    with pytest.raises(DeliveryUnknown):
        stub.answer(answer)
        client.track(purchases=[{"external_id": "1", "product_id": "p", "currency": "USD",
                                 "price": 1, "time": "2026-01-01T00:00:00Z"}])
    assert len(stub.seen) == 2


def test_exhausted_retries_name_the_app_and_say_what_next(stub: Stub, fake: FakeTime) -> None:
    stub.answer(*[Answer(500, {})] * 3)
    with pytest.raises(BrazeError) as info:
        make(stub, fake, max_retries=2).track(attributes=[ATTRS])
    assert len(stub.seen) == 3
    assert str(info.value).startswith("app/prod:") and "apply again" in str(info.value)


# -- fail fast -------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "words"), [
    (401, "refused the API key"), (403, "lacks the permission"), (404, "does not exist")])
def test_auth_and_not_found_fail_fast_in_one_line(stub: Stub, fake: FakeTime, status: int,
                                                  words: str) -> None:
    # Braze's 401 body echoes the key.
    stub.answer(Answer(status, {"message": f"Invalid API key: {CANARY}"},
                       {"Retry-After": "1"}))
    with pytest.raises(BrazeError) as info:
        make(stub, fake).track(attributes=[ATTRS])
    exc = info.value
    assert len(stub.seen) == 1 and fake.sleeps == []  # no retry, no wait
    assert exc.status == status and exc.app == "prod"
    text = str(exc)
    assert "\n" not in text and text.startswith("app/prod:") and str(status) in text
    assert words in text
    assert CANARY not in text and CANARY not in repr(exc)


# -- the key never leaks ---------------------------------------------------------------------

def test_the_api_key_never_appears_in_errors_reprs_or_logs(
        stub: Stub, fake: FakeTime, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 and requests log at debug
    client = make(stub, fake, max_retries=1, timeout=0.1)
    assert stub.url  # the key did go out, in the Authorization header
    texts: list[str] = [str(client), repr(client), str(client.settings),
                        repr(client.settings), repr(client.stats)]
    scripts: list[tuple[list[Answer | str], dict[str, Any]]] = [
        ([Answer(401, {"message": f"Invalid API key: {CANARY}"})], {"attributes": [ATTRS]}),
        ([Answer(403, {"message": f"Access Denied {CANARY}"})], {"attributes": [ATTRS]}),
        ([Answer(500, {"message": CANARY})] * 2, {"attributes": [ATTRS]}),
        ([DROP, DROP], {"attributes": [ATTRS]}),
        ([Answer(500, {"message": CANARY})], {"events": [EVENT]}),
        ([DROP], {"events": [EVENT]}),
        ([Answer(delay=0.5)], {"events": [EVENT]}),
        ([Answer(418, {"message": "teapot"})], {"attributes": [ATTRS]}),
    ]
    for answers, body in scripts:
        stub.answer(*answers)
        with pytest.raises(BrazeError) as info:
            client.post("/users/track", body, idempotent="events" not in body)
        texts += [str(info.value), repr(info.value),
                  "".join(traceback.format_exception(info.value))]
    assert stub.seen[0].headers["Authorization"] == f"Bearer {CANARY}"
    texts.append(caplog.text)
    for t in texts:
        assert CANARY not in t


# -- endpoints -------------------------------------------------------------------------------

def test_track_keeps_per_object_errors_of_a_201(stub: Stub, fake: FakeTime) -> None:
    errors = [{"index": 1, "input_array": "attributes", "type": "bad"}]
    stub.answer(Answer(201, {"message": "success", "errors": errors}))
    r = make(stub, fake).track(attributes=[ATTRS, ATTRS])
    assert r.status == 201 and r.body["errors"] == errors and len(stub.seen) == 1


def test_400_is_returned_not_retried(stub: Stub, fake: FakeTime) -> None:
    stub.answer(Answer(400, {"message": "Valid data must be provided"}))
    r = make(stub, fake).track(events=[EVENT])
    assert r.status == 400 and len(stub.seen) == 1


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_an_error_and_never_followed(stub: Stub, fake: FakeTime,
                                                   status: int) -> None:
    """A redirect means Braze did not process the call. requests followed it: a 307/308
    resent the profiles to wherever it pointed and returned that server's 201 as Braze's;
    a 301/302 turned the POST into a GET elsewhere."""
    with Stub() as elsewhere:
        stub.answer(Answer(status, {}, {"Location": f"{elsewhere.url}/users/track"}))
        with pytest.raises(BrazeError, match=f"answered {status}, a redirect to") as err:
            make(stub, fake).track(attributes=[ATTRS])
        assert "rest_endpoint" in str(err.value)
        assert elsewhere.seen == [] and len(stub.seen) == 1


def test_delete_bodies(stub: Stub, fake: FakeTime) -> None:
    client = make(stub, fake)
    client.delete(["3"])
    assert [(s.path, s.body) for s in stub.seen] == [("/users/delete", {"external_ids": ["3"]})]
    with pytest.raises(AssertionError):
        client.delete([str(i) for i in range(51)])


# -- a request that never left ----------------------------------------------------------------

def test_a_refused_connection_is_not_sent_at_once_never_delivery_unknown(fake: FakeTime
                                                                          ) -> None:
    """Nothing reached the server: NotSent (events are safe to send again), no retries and
    no waits, and the caller's hooks hear it was refused, never that it left and hung."""
    from brazecfg.braze.client import NotSent, SendHooks

    calls: list[str] = []
    client = BrazeClient(BrazeSettings("prod", "http://127.0.0.1:9", CANARY, max_retries=8),
                         sleep=fake.sleep, clock=fake.clock)
    _open.append(client)
    hooks = SendHooks(leaving=lambda: calls.append("leaving"),
                      refused=lambda: calls.append("refused"))
    with pytest.raises(NotSent) as info:
        client.track(events=[EVENT], hooks=hooks)
    assert not isinstance(info.value, DeliveryUnknown)
    assert fake.sleeps == [] and calls == ["leaving", "refused"]
    assert "app/prod" in str(info.value) and "http://127.0.0.1:9" in str(info.value)
    assert "connection refused" in str(info.value) and CANARY not in str(info.value)


def test_hooks_hear_a_429_as_nothing_processed_then_the_retry_leave(stub: Stub,
                                                                    fake: FakeTime) -> None:
    from brazecfg.braze.client import SendHooks

    calls: list[str] = []
    stub.script = [too_many(**{"Retry-After": "1"})]
    client = make(stub, fake)
    r = client.track(events=[EVENT], hooks=SendHooks(leaving=lambda: calls.append("leaving"),
                                                     refused=lambda: calls.append("refused")))
    assert r.status == 201
    assert calls == ["leaving", "refused", "leaving"]


def test_a_dropped_connection_after_sending_stays_delivery_unknown_with_hooks(
        stub: Stub, fake: FakeTime) -> None:
    from brazecfg.braze.client import SendHooks

    calls: list[str] = []
    stub.script = [DROP]
    client = make(stub, fake)
    with pytest.raises(DeliveryUnknown):
        client.track(events=[EVENT], hooks=SendHooks(leaving=lambda: calls.append("leaving"),
                                                     refused=lambda: calls.append("refused")))
    assert calls == ["leaving"]  # it may have been processed: never "refused"
