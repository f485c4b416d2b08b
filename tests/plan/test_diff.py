"""The merge-diff on hand-made rows and ledgers: no warehouse, no disk, no network."""

from __future__ import annotations

import io

import pytest

from brazecfg.errors import Location, WarehouseError
from brazecfg.model.resources import (
    App,
    Destination,
    Group,
    Model,
    Project,
    ProjectSettings,
    Property,
    Rule,
    Source,
    SubscriptionMapping,
)
from brazecfg.plan.definition import Action, RecordChange
from brazecfg.plan.diff import diff_destination
from brazecfg.state.hashing import Hasher
from brazecfg.state.ledger import LedgerRecord
from brazecfg.warehouse.base import ModelRow

L = Location("test.yml", 1, 1)
HASHER = Hasher(b"k" * 32)
GROUP_ID = "11111111-1111-4111-8111-111111111111"


def project(mode: str = "sync", **dest: object) -> tuple[Project, Destination]:
    props = {
        "user_id": Property("property", "user_id", L, source="users", type="string", column="id"),
        "email": Property("property", "email", L, source="users", type="email", column="email"),
        "last_name": Property("property", "last_name", L, source="users", type="string",
                              column="last_name"),
        "country": Property("property", "country", L, source="users", type="string",
                            column="country"),
        "ltv": Property("property", "ltv", L, source="users", type="float", column="ltv"),
    }
    options: dict[str, object] = {
        "mapping": {"external_id": "user_id", "email": "email", "last_name": "last_name",
                    "country": "country"},
        "custom_attributes": {"lifetime_value": "ltv"},
        "subscription_groups": (SubscriptionMapping("vip", GROUP_ID),),
    }
    options.update(dest)
    d = Destination("destination", "d", L, app="braze", model="users", mode=mode,
                    **options)  # type: ignore[arg-type]
    p = Project(
        settings=ProjectSettings(name="t", root="/nonexistent"),
        apps={"braze": App("app", "braze", L, type="braze"),
              "wh": App("app", "wh", L, type="sqlite")},
        models={"users": Model("model", "users", L, primary_key="user_id")},
        sources={"users": Source("source", "users", L, app="wh", model="users", table="users",
                                 key="id")},
        properties=props,
        groups={"vip": Group("group", "vip", L, model="users",
                             rules=(Rule(property="ltv", op="gt", value=100),))},
        destinations={"d": d},
    )
    return p, d


def row(key: str, groups: tuple[str, ...] = (), **values: object) -> ModelRow:
    base = {"email": f"{key}@example.com", "last_name": "Doe", "country": "FR", "ltv": 10.0}
    base.update(values)
    return ModelRow(key, base, frozenset(groups))


def ledger_of(p: Project, d: Destination, rows: list[ModelRow]) -> list[LedgerRecord]:
    """The ledger an apply of ``rows`` would leave behind."""
    out = io.StringIO()
    diff_destination(p, d, rows, iter([]), HASHER, spool=out)
    changes = [RecordChange.from_json(line) for line in out.getvalue().splitlines()]
    return [LedgerRecord(c.external_id, c.fields, c.groups) for c in changes]


def spooled(p: Project, d: Destination, rows: list[ModelRow], ledger: list[LedgerRecord]
            ) -> tuple[object, list[RecordChange]]:
    out = io.StringIO()
    plan = diff_destination(p, d, rows, iter(ledger), HASHER, spool=out)
    return plan, [RecordChange.from_json(line) for line in out.getvalue().splitlines()]


def test_first_run_creates_everyone_with_non_empty_fields_only() -> None:
    p, d = project()
    plan, changes = spooled(p, d, [row("1", country=None), row("2", ("vip",), ltv=150)], [])
    assert [c.action for c in changes] == [Action.CREATE, Action.CREATE]
    assert "country" not in changes[0].attributes  # nothing to remove on a new profile
    assert changes[1].attributes["lifetime_value"] == 150
    assert changes[1].joins == ("vip",)
    assert plan.counts["create"] == 2  # type: ignore[attr-defined]


def test_second_run_with_same_data_is_unchanged() -> None:
    p, d = project()
    rows = [row("1"), row("2", ("vip",), ltv=150)]
    plan, changes = spooled(p, d, rows, ledger_of(p, d, rows))
    assert changes == []
    assert plan.counts["unchanged"] == 2  # type: ignore[attr-defined]


def test_only_changed_fields_are_sent_and_emptied_ones_are_nulled() -> None:
    p, d = project()
    before = [row("1"), row("2"), row("3")]
    after = [row("1", last_name="Smith"), row("2", country=None), row("3")]
    plan, changes = spooled(p, d, after, ledger_of(p, d, before))
    assert [(c.external_id, c.attributes) for c in changes] == [
        ("1", {"last_name": "Smith"}), ("2", {"country": None})]
    assert "country" not in changes[1].fields
    assert plan.field_sets == {"last_name": 1}  # type: ignore[attr-defined]
    assert plan.field_removals == {"country": 1}  # type: ignore[attr-defined]


def test_sync_deletes_additive_and_enrich_keep() -> None:
    for mode, expected in (("sync", [Action.DELETE]), ("additive", []), ("enrich", [])):
        p, d = project(mode)
        led = ledger_of(p, d, [row("1"), row("2")])
        plan, changes = spooled(p, d, [row("2")], led)
        assert [c.action for c in changes] == expected, mode
        if mode != "sync":
            assert plan.counts["kept"] == 1  # type: ignore[attr-defined]


def test_enrich_checks_existence_and_never_creates() -> None:
    p, d = project("enrich")
    asked: list[list[str]] = []

    def exists(ids: list[str]) -> set[str]:
        asked.append(ids)
        return {i for i in ids if int(i) % 2 == 0}

    out = io.StringIO()
    rows = [row(str(i)) for i in range(1, 121)]
    rows.sort(key=lambda r: r.key)
    plan = diff_destination(p, d, rows, iter([]), HASHER, spool=out, exists=exists)
    actions = {RecordChange.from_json(x).action for x in out.getvalue().splitlines()}
    assert actions == {Action.ENRICH}
    assert plan.counts["enrich"] == 60 and plan.counts["skipped"] == 60
    assert max(len(a) for a in asked) == 50 and sum(len(a) for a in asked) == 120


def test_group_join_and_leave() -> None:
    p, d = project()
    led = ledger_of(p, d, [row("1", ("vip",)), row("2")])
    plan, changes = spooled(p, d, [row("1"), row("2", ("vip",))], led)
    assert [(c.external_id, c.joins, c.leaves) for c in changes] == [
        ("1", (), ("vip",)), ("2", ("vip",), ())]
    assert plan.joins == {"vip": 1} and plan.leaves == {"vip": 1}  # type: ignore[attr-defined]


def test_bad_value_is_reported_and_the_rest_of_the_record_syncs() -> None:
    p, d = project()
    plan, changes = spooled(p, d, [row("1", email="nope", country="Atlantis")], [])
    assert changes[0].attributes["last_name"] == "Doe"
    assert "email" not in changes[0].attributes and "country" not in changes[0].attributes
    reasons = {(i.external_id, i.field) for i in plan.issues}  # type: ignore[attr-defined]
    assert reasons == {("1", "email"), ("1", "country")}
    assert all("nope" not in i.reason for i in plan.issues)  # type: ignore[attr-defined]


def test_a_now_invalid_value_is_left_alone_in_braze() -> None:
    p, d = project()
    led = ledger_of(p, d, [row("1")])
    plan, changes = spooled(p, d, [row("1", email="broken")], led)
    assert changes == []  # neither sent nor removed
    assert plan.issue_count == 1  # type: ignore[attr-defined]


def test_unmapped_field_removed_in_sync_mode_only() -> None:
    p, d = project()
    led = ledger_of(p, d, [row("1")])
    for mode, expect in (("sync", {"lifetime_value": None}), ("additive", None)):
        p2, d2 = project(mode, custom_attributes={})
        plan, changes = spooled(p2, d2, [row("1")], led)
        assert (changes[0].attributes if changes else None) == expect, mode


def test_duplicate_keys_are_reported_and_out_of_order_rows_refused() -> None:
    p, d = project()
    plan, changes = spooled(p, d, [row("1"), row("1", last_name="X")], [])
    assert len(changes) == 1 and plan.issue_count == 1  # type: ignore[attr-defined]
    with pytest.raises(WarehouseError, match="out of key order"):
        spooled(p, d, [row("2"), row("1")], [])


def test_digest_is_deterministic_and_data_sensitive() -> None:
    p, d = project()
    a = spooled(p, d, [row("1")], [])[0]
    b = spooled(p, d, [row("1")], [])[0]
    c = spooled(p, d, [row("1", last_name="Z")], [])[0]
    assert a.digest == b.digest != c.digest  # type: ignore[attr-defined]


def test_groups_attribute_lists_the_record_groups_like_grouparoo() -> None:
    p, d = project(groups_attribute="brazecfg_groups", subscription_groups=())
    _, changes = spooled(p, d, [row("1", ("vip",)), row("2")], [])
    assert changes[0].attributes["brazecfg_groups"] == ["vip"]
    assert "brazecfg_groups" not in changes[1].attributes  # empty: nothing to set on a new user
    assert changes[0].joins == ()  # no subscription group mapped: no subscription call
    led = [LedgerRecord(c.external_id, c.fields, c.groups) for c in changes]
    _, changes = spooled(p, d, [row("1"), row("2", ("vip",))], led)
    assert [(c.external_id, c.attributes) for c in changes] == [
        ("1", {"brazecfg_groups": None}), ("2", {"brazecfg_groups": ["vip"]})]


def test_a_plan_without_a_spool_keeps_nothing_per_record(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """`brazecfg plan` (no spool) at 1M users held every created record's hash until the end:
    227 MB of peak RSS in bench/compare.py against 101 MB for apply. A change's record hash is
    let go when the change is emitted, spooled or not."""
    import brazecfg.plan.diff as diff_mod

    left: list[int] = []
    finish = diff_mod._Diff.finish

    def spy(self: diff_mod._Diff, refetched: object) -> object:
        plan = finish(self, refetched)  # type: ignore[arg-type]
        left.append(len(self._row_hashes))
        return plan

    monkeypatch.setattr(diff_mod._Diff, "finish", spy)
    p, d = project()
    rows = [ModelRow(r.key, r.values, r.groups, bytes(8)) for r in
            (row(f"{i:04d}", user_id=f"{i:04d}", email=f"u{i}@example.com") for i in range(200))]
    for spool in (None, io.StringIO()):
        plan = diff_destination(p, d, rows, iter(()), HASHER, spool=spool)
        assert plan.counts["create"] == 200
    assert left == [0, 0]


def test_the_merge_keeps_nothing_per_record_it_has_judged() -> None:
    """A first plan at 1M users peaked at 194 MB against 100 MB a round before: the merge
    kept a set of every key it read (meant for the ids to read again, a few). Memory of a
    merge is flat past its bounded caches (the field hashers' memo of 8,192 values, which
    only a spooling plan fills: a plan that spools nothing hashes no create's fields; the
    spool here keeps nothing): three times the records, about the same peak."""
    import tracemalloc

    p, d = project()

    class Discard(io.StringIO):
        def write(self, line: str) -> int:
            return len(line)

    def peak(n: int) -> int:
        rows = (row(f"{i:07d}", user_id=f"{i:07d}") for i in range(n))  # streamed
        tracemalloc.start()
        try:
            plan = diff_destination(p, d, rows, iter(()), Hasher(b"k" * 32),  # own caches
                                    spool=Discard())
            assert plan.counts["create"] == n
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(20_000), peak(60_000)
    assert large < small + 400_000, (small, large)


def _counted(changes: list[RecordChange]) -> tuple[dict[str, int], dict[str, int], int]:
    """Fields set, fields removed and data points, counted change by change."""
    sets: dict[str, int] = {}
    removals: dict[str, int] = {}
    points = 0
    for c in changes:
        for f, v in c.attributes.items():
            bucket = removals if v is None else sets
            bucket[f] = bucket.get(f, 0) + 1
            points += len(v) if isinstance(v, dict) and v else 1
    return sets, removals, points


@pytest.mark.parametrize("limit", [2, 1024])
def test_fields_and_data_points_are_counted_over_every_shape_of_change(
        limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A change with every value set is counted by its fields' tuple (a cheaper count, at
    most SHAPE_LIMIT tuples held: past it they are counted out first); removals and nested
    values one by one: the totals are those of every change's values."""
    monkeypatch.setattr("brazecfg.plan.diff.SHAPE_LIMIT", limit)
    p, d = project()
    before = [row(str(i)) for i in range(6)]
    after = [row("0", last_name="Smith"), row("1", country=None), row("2", ltv=150),
             row("3", email=None, country="DE"), row("4"),
             row("6", country=None), row("7", ("vip",), ltv=200), row("8", email=None)]
    plan, changes = spooled(p, d, after, ledger_of(p, d, before))
    sets, removals, points = _counted(changes)
    assert {c.action for c in changes} == {Action.CREATE, Action.UPDATE, Action.DELETE}
    assert dict(plan.field_sets) == sets  # type: ignore[attr-defined]
    assert dict(plan.field_removals) == removals  # type: ignore[attr-defined]
    assert plan.data_points == points  # type: ignore[attr-defined]
    assert sets["email"] == 2 and removals == {"country": 1, "email": 1}, (sets, removals)
    # nested values (facebook's id goes as one object): counted value by value
    props = dict(p.properties)
    props["fb"] = Property("property", "fb", L, source="users", type="string", column="fb")
    props["fbn"] = Property("property", "fbn", L, source="users", type="integer", column="fbn")
    d2 = Destination("destination", "d", L, app="braze", model="users", mode="sync",
                     mapping={"external_id": "user_id", "email": "email", "facebook.id": "fb",
                              "facebook.num_friends": "fbn"})
    p2 = Project(settings=p.settings, apps=p.apps, models=p.models, sources=p.sources,
                 properties=props, groups=p.groups, destinations={"d": d2})
    plan2, changes2 = spooled(p2, d2, [row("1", fb="123", fbn=7), row("2")], [])
    sets2, removals2, points2 = _counted(changes2)
    assert changes2[0].attributes["facebook"] == {"id": "123", "num_friends": 7}, changes2[0]
    assert (dict(plan2.field_sets), plan2.data_points) == (sets2, points2)  # type: ignore[attr-defined]
