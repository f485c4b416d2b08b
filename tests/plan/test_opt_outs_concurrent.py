"""The opt-out check at plan time runs its Braze calls on several threads (issue 9: one call
at a time was a quarter of the first plan at 1M users), and the plan stays exactly the one
a single thread makes: same changes in the same order, same digest, same counts. Unit test
(a stand-in for the Braze call); the CLI tests in test_opt_outs.py use the emulator."""

from __future__ import annotations

import io
import threading

import pytest

from brazecfg.plan.diff import diff_destination
from tests.plan.test_diff import GROUP_ID, HASHER, project, row


class Check:
    """Opted out: the ids ending in 7. With ``hold``, the first call waits until another
    call has started, so calls must overlap and answer out of order."""

    def __init__(self, workers: int, *, hold: bool = False) -> None:
        self.workers = workers
        self.hold = hold
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        self._second = threading.Event()

    def __call__(self, group_id: str, external_ids: list[str]) -> set[str]:
        with self._lock:
            self.calls.append((group_id, tuple(external_ids)))
            first = len(self.calls) == 1
            if not first:
                self._second.set()
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.hold and first:
            self._second.wait(timeout=30)
        with self._lock:
            self.in_flight -= 1
        assert len(external_ids) <= 50
        return {i for i in external_ids if i.endswith("7")}


def plan_with(check: Check) -> tuple[object, str]:
    p, d = project()
    # 600 records: every third joins the group, the others are plain creates between them
    rows = [row(f"{i:04d}", ("vip",) if i % 3 == 0 else (), ltv=150 if i % 3 == 0 else 10)
            for i in range(600)]
    out = io.StringIO()
    plan = diff_destination(p, d, rows, iter([]), HASHER, spool=out, opted_out=check)
    return plan, out.getvalue()


def test_concurrent_opt_out_calls_make_the_plan_one_thread_makes() -> None:
    one, many = Check(1), Check(4, hold=True)
    plan1, spool1 = plan_with(one)
    plan4, spool4 = plan_with(many)
    assert many.most_in_flight > 1  # the calls overlapped ...
    assert many.most_in_flight <= 4  # ... within the workers
    assert sorted(many.calls) == sorted(one.calls) and len(one.calls) == 4
    assert all(g == GROUP_ID for g, _ in one.calls)
    assert spool4 == spool1 and spool1.count("\n") == 600  # same changes, same order
    assert plan4.digest == plan1.digest  # type: ignore[attr-defined]
    assert plan4.counts == plan1.counts  # type: ignore[attr-defined]
    assert plan1.opted_out == {"vip": 20}  # type: ignore[attr-defined]
    assert plan4.opted_out == plan1.opted_out  # type: ignore[attr-defined]


class Elsewhere(Check):
    """Calls made elsewhere, as planner._OptOuts.start hands them to a process of its own
    past its first calls: ``start`` makes the first ``local`` calls on the pool (None), and
    answers the rest only after a few looks, a later call often ready before an earlier
    one."""

    def __init__(self, local: int, fail: str | None = None, workers: int = 4) -> None:
        super().__init__(workers)
        self.local = local
        self.fail = fail
        self.started = 0
        self.looks = 0  # done() asked

    def start(self, calls: list[tuple[str, list[str]]]) -> Late | None:
        self.started += len(calls)
        if self.started <= self.local:
            return None
        answers = [self(g, ids) for g, ids in calls]
        failed = any(self.fail in ids for _, ids in calls) if self.fail else False
        return Late(self, answers, looks=3 - self.started % 3, failed=failed)


class Late:
    def __init__(self, check: Elsewhere, answers: list[set[str]], *, looks: int,
                 failed: bool) -> None:
        self.check, self.answers, self.looks, self.failed = check, answers, looks, failed

    def done(self) -> bool:
        self.check.looks += 1
        self.looks -= 1
        return self.looks <= 0

    def result(self) -> list[set[str]]:
        if self.failed:
            raise RuntimeError("Braze answered 500")
        return self.answers


@pytest.mark.parametrize(("local", "workers"), [(0, 4), (2, 4), (100, 4), (0, 1)],
                         ids=["all-elsewhere", "switching", "none", "one-at-a-time"])
def test_opt_out_calls_made_elsewhere_make_the_plan_one_thread_makes(local: int,
                                                                     workers: int) -> None:
    """(One at a time: a second call in flight makes the merge wait for the first.)"""
    plan1, spool1 = plan_with(Check(1))
    check = Elsewhere(local, workers=workers)
    plan2, spool2 = plan_with(check)
    assert check.started == 4 and len(check.calls) == 4
    if local == 0:
        assert check.looks > 0  # looked at while the merge went on, answered later
    assert spool2 == spool1  # same changes, same order
    assert plan2.digest == plan1.digest  # type: ignore[attr-defined]
    assert plan2.counts == plan1.counts  # type: ignore[attr-defined]
    assert plan2.opted_out == plan1.opted_out == {"vip": 20}  # type: ignore[attr-defined]


@pytest.mark.parametrize("local", [0, 1], ids=["all-elsewhere", "switching"])
def test_an_error_in_a_call_made_elsewhere_stops_the_plan(local: int) -> None:
    with pytest.raises(RuntimeError, match="500"):
        plan_with(Elsewhere(local, fail="0150"))


def test_an_error_in_one_call_stops_the_plan() -> None:
    class Failing(Check):
        def __call__(self, group_id: str, external_ids: list[str]) -> set[str]:
            if "0150" in external_ids:  # the second batch of joins
                raise RuntimeError("Braze answered 500")
            return super().__call__(group_id, external_ids)

    with pytest.raises(RuntimeError, match="500"):
        plan_with(Failing(4))


class Counted(io.StringIO):
    """A spool that counts the changes written (one line each)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines = 0

    def write(self, s: str) -> int:
        self.lines += s.count("\n")
        return super().write(s)


@pytest.mark.parametrize("latency", [0.0, 0.2], ids=["instant", "slow"])
def test_the_changes_held_behind_opt_out_checks_stay_bounded(latency: float) -> None:
    """Changes after a join wait for its opt-out answer, to keep their order. Before, an
    answer was only taken when the next check started: with a joiner every 400 records, the
    20,000 changes between two checks waited in memory. Now at most HELD_LIMIT (and a
    batch of joins) wait, however slowly Braze answers."""
    import time

    from brazecfg.plan.diff import EXISTS_BATCH, HELD_LIMIT

    class Slow(Check):
        def __call__(self, group_id: str, external_ids: list[str]) -> set[str]:
            time.sleep(latency)
            return super().__call__(group_id, external_ids)

    p, d = project()
    spool = Counted()
    most = [0]

    def rows() -> object:
        for i in range(60_000):
            most[0] = max(most[0], i - spool.lines)  # read, not yet in the plan
            yield row(f"{i:05d}", ("vip",) if i % 400 == 7 else (),
                      ltv=150 if i % 400 == 7 else 10)

    check = Slow(16)
    plan = diff_destination(p, d, rows(), iter([]), HASHER, spool=spool,  # type: ignore[arg-type]
                            opted_out=check)
    assert spool.lines == 60_000 and len(check.calls) == 3
    assert plan.opted_out == {"vip": 150}  # type: ignore[attr-defined]
    assert most[0] <= HELD_LIMIT + EXISTS_BATCH + 1, most[0]
