"""Incremental reads: only records changed since the last confirmed run are read, and
deletions are still found (every key is listed, and the ledger knows who was sent)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import NOW, cli, emulated_example, plan_json, settle_stamps, sql, unhashed


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from emulated_example(tmp_path, monkeypatch)



def test_second_run_reads_only_changed_records_and_still_finds_deletes(project: Path) -> None:
    settle_stamps(project)
    first = plan_json(project)
    assert first["read_since"] is None  # first run: everything
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    # A change the warehouse did not stamp (its updated_at left as it was) is outside an
    # incremental read: it trusts updated_at (README "How it works") and says so; a full read
    # finds it.
    sql(project, "UPDATE users SET first_name = 'Unstamped' WHERE id = 2")
    sql(project, "UPDATE users SET last_name = 'Byron', updated_at = datetime('now') WHERE id = 1")
    sql(project, "DELETE FROM users WHERE id = 4")
    second = plan_json(project)
    assert second["read_since"] is not None and second["compared"] == "counts"
    assert second["counts"]["update"] == 1 and second["counts"]["delete"] == 1
    assert second["fields_set"] == {"last_name": 1}
    # the records the state holds no record hash for (those that joined a group: it is
    # stored once nothing is pending) are read by key
    assert second["read_by_key"] == len(unhashed(project) - {"1", "4"})
    assert second["hashes_compared"] == 11
    assert second["counts"]["unchanged"] == 10  # known and untouched
    text = cli("plan", str(project), "--now", NOW).output
    assert "incremental read: records changed since" in text
    assert "trusts updated_at" in text
    full = plan_json(project, "--full-refresh")
    assert full["read_since"] is None
    assert full["fields_set"] == {"first_name": 1, "last_name": 1}


def test_a_related_row_change_reaches_its_user(project: Path) -> None:
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    sql(project, "INSERT INTO purchases (id, user_id, product, amount, status, created_at) "
                 "VALUES (99, 12, 'ethernet', 42, 'paid', '2026-11-01 00:00:00')")
    d = plan_json(project)
    assert d["read_since"] is not None
    assert d["counts"]["update"] == 1
    assert d["fields_set"] == {"last_product": 1, "lifetime_value": 1, "purchase_count": 1}


def test_a_config_change_forces_a_full_read(project: Path) -> None:
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    f = project / "destinations" / "braze_users.yml"
    f.write_text(f.read_text().replace("  last_product: last_product\n",
                                       "  last_product: last_product\n  surname: last_name\n"))
    d = plan_json(project)
    assert d["read_since"] is None
    assert d["fields_set"] == {"surname": 12}


def test_apply_records_the_watermark_with_the_destination_fingerprint(project: Path) -> None:
    from brazecfg.state.ledger import Ledger

    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    with Ledger(project / ".brazecfg" / "ledger.sqlite", writable=False) as led:
        mark = led.watermark("braze_users")
    lock = json.loads((project / "brazecfg.lock.json").read_text())
    assert mark is not None
    assert mark["fingerprint"] == lock["resources"]["destination/braze_users"]["fingerprint"]


def _ltv(project: Path, user: str) -> object:
    import os

    from tests.helpers import emulator_get

    found = [u for u in emulator_get(os.environ["BRAZE_REST_ENDPOINT"], "users")["users"]
             if u["external_id"] == user]
    return found[0]["attributes"].get("lifetime_value") if found else None


@pytest.mark.parametrize("change", [
    "UPDATE purchases SET user_id = 2, updated_at = datetime('now') WHERE id = 2",  # re-parented
    "DELETE FROM purchases WHERE id = 2",  # hard-deleted: nothing stamps it
], ids=["re-parented", "hard-deleted"])
def test_a_related_row_that_leaves_its_user_updates_the_old_owner(project: Path,
                                                                  change: str) -> None:
    """User 1's purchase 2 (15.50) moves to user 2, or is deleted: user 1's own rows carry no
    new stamp, so only its related-row count (in the keys-and-counts pass) shows it changed."""
    settle_stamps(project)
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    assert _ltv(project, "1") == 135.5
    sql(project, change)
    d = plan_json(project)
    assert d["read_since"] is not None  # still an incremental read
    assert d["fields_set"].get("lifetime_value") == (2 if "UPDATE" in change else 1), d  # type: ignore[attr-defined]
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    assert _ltv(project, "1") == 120
    assert "No changes." in cli("plan", str(project), "--now", NOW).output


def test_a_full_plan_reads_only_the_records_whose_hash_changed(project: Path) -> None:
    """No ``updated_at`` anywhere: the plan compares record hashes in the warehouse and reads
    only the changed, new and rejected records in full; --full-refresh reads everything."""
    sources = project / "sources" / "users.yml"
    sources.write_text("\n".join(line for line in sources.read_text().splitlines()
                                 if not line.strip().startswith("updated_at:")) + "\n")
    first = plan_json(project)
    assert first["hashes_compared"] == 0 and first["full_read_reason"] == "first run"
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    # every confirmed record keeps its record hash, but user 11, whose email is not sent (an
    # issue the plan reports): it is read every time, so the issue is reported every time
    assert unhashed(project) == {"11"}
    sql(project, "UPDATE users SET last_name = 'Byron' WHERE id = 1")
    sql(project, "DELETE FROM users WHERE id = 4")
    sql(project, "INSERT INTO users (id, email, first_name, last_name, country, updated_at) "
                 "VALUES (13, 'new@example.com', 'New', 'User', 'FR', '2020-01-01 00:00:00')")
    d = plan_json(project)
    assert d["full_read_reason"] is None and d["read_since"] is None
    assert d["hashes_compared"] == 12  # 11 kept + 1 new: keys and hashes only
    assert d["read_by_key"] == 3  # user 1 (hash changed), 13 (not in the state) and 11
    assert (d["counts"]["update"], d["counts"]["delete"], d["counts"]["create"]) == (1, 1, 1)
    assert d["fields_set"]["last_name"] == 2 and d["counts"]["unchanged"] == 10
    assert d["issues"]["count"] == first["issues"]["count"] > 0
    text = cli("plan", str(project), "--now", NOW).output
    assert d["compared_in"] == "brazecfg"  # SQLite: value hashes are merged here
    assert "compared 12 record hashes in the warehouse; read 3 records by key" in text
    full = plan_json(project, "--full-refresh")
    assert full["hashes_compared"] == 0 and full["full_read_reason"] == "full refresh requested"
    assert full["counts"] == d["counts"]


def test_an_upgrade_that_changes_value_rules_reads_every_record_once(project: Path) -> None:
    """Record hashes say only that the warehouse did not change. After an upgrade whose value
    rules differ (VALUE_RULES), the first plan reads every record, so a value made under the
    old rules is corrected; the next one compares hashes again."""
    from brazecfg.state.ledger import Ledger

    sources = project / "sources" / "users.yml"
    sources.write_text("\n".join(line for line in sources.read_text().splitlines()
                                 if not line.strip().startswith("updated_at:")) + "\n")
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    assert plan_json(project)["hashes_compared"] == 12
    with Ledger(project / ".brazecfg" / "ledger.sqlite", writable=True) as led:
        for name in led.destinations():
            mark = led.watermark(name)
            assert mark is not None and mark["rules"]
            led.set_watermark(name, {**mark, "rules": "0"})  # made by an older brazecfg
    d = plan_json(project)
    assert d["hashes_compared"] == 0
    assert "value rules changed" in str(d["full_read_reason"])
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    assert plan_json(project)["hashes_compared"] == 12


def test_an_upgrade_that_changed_only_the_value_hash_keeps_incremental_reads(
        project: Path) -> None:
    """VALUE_RULES 3 changed only SQLite's value hash: an incremental destination, whose
    state holds related-row counts recorded under rules 2, still reads incrementally after
    the upgrade (a full read of every record would buy nothing); rules older than that, or
    unknown, still read everything once."""
    from brazecfg.state.ledger import Ledger

    settle_stamps(project)
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0

    def recorded_under(rules: str) -> None:
        with Ledger(project / ".brazecfg" / "ledger.sqlite", writable=True) as led:
            for name in led.destinations():
                mark = led.watermark(name)
                assert mark is not None and mark["hash"] == "counts"
                led.set_watermark(name, {**mark, "rules": rules})

    sql(project, "UPDATE users SET last_name = 'Byron', updated_at = datetime('now') WHERE id = 1")
    recorded_under("2")
    d = plan_json(project)
    assert d["read_since"] is not None and d["full_read_reason"] is None, d["full_read_reason"]
    assert d["compared"] == "counts" and d["counts"]["update"] == 1
    for older in ("1", "0"):
        recorded_under(older)
        d = plan_json(project)
        assert d["read_since"] is None
        assert "value rules changed" in str(d["full_read_reason"])
        assert d["counts"]["update"] == 1
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    assert plan_json(project)["read_since"] is not None


def test_a_later_bump_that_names_nothing_still_trusted_reads_every_record_once(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What rules 3 still trusts of rules 2 is written for rules 3 (STILL_TRUSTED): a later
    bump that adds no entry of its own trusts no earlier hash, so counts recorded under 2 or 3
    are read again in full, not kept because rules 3 once trusted them."""
    from brazecfg.plan import planner
    from brazecfg.state.ledger import Ledger

    settle_stamps(project)
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    monkeypatch.setattr(planner, "VALUE_RULES", "4")  # a bump that changed something else
    for rules in ("2", "3"):
        with Ledger(project / ".brazecfg" / "ledger.sqlite", writable=True) as led:
            for name in led.destinations():
                mark = led.watermark(name)
                assert mark is not None and mark["hash"] == "counts"
                led.set_watermark(name, {**mark, "rules": rules})
        d = plan_json(project)
        assert d["read_since"] is None, rules
        assert "value rules changed" in str(d["full_read_reason"])
