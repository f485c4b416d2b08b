"""Incremental reads compare related-row counts, not values (README "How it works", record
hashes): the rows changed since the last run show every change a stamp shows, and a count of
each record's rows per aggregated source shows the rest (a related row that moved away or
was deleted). No property is computed for a record whose rows did not change."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from brazecfg.state.ledger import Ledger
from tests.helpers import NOW, cli, emulated_example, plan_json, settle_stamps, sql, unhashed


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield from emulated_example(tmp_path, monkeypatch)



def apply(project: Path) -> None:
    out = cli("apply", str(project), "--auto-approve", "--now", NOW)
    assert out.exit_code == 0, out.output


def test_counts_find_a_deleted_related_row_and_trust_updated_at_for_values(
        project: Path) -> None:
    """User 1 loses purchase 2 (no stamp shows it: its count does); user 3's purchase changes
    amount without a new stamp (outside what an incremental read sees: nothing is computed
    for a record whose rows did not change). A full read finds both."""
    settle_stamps(project)
    apply(project)
    sql(project, "DELETE FROM purchases WHERE id = 2")
    sql(project, "UPDATE purchases SET amount = amount + 1000 WHERE user_id = 3")
    d = plan_json(project)
    assert d["read_since"] is not None and d["compared"] == "counts"
    assert d["hashes_compared"] == 12
    assert d["counts"]["update"] == 1 and d["fields_set"]["lifetime_value"] == 1, d  # user 1
    assert d["read_by_key"] == len(unhashed(project) | {"1"})
    text = cli("plan", str(project), "--now", NOW).output
    assert d["compared_in"] == "warehouse"  # the local state, attached to the SQLite file
    assert ("compared the related-row counts of 12 records with the state's in the "
            "warehouse") in text
    full = plan_json(project, "--full-refresh")
    assert full["read_since"] is None and full["compared"] is None
    assert full["fields_set"]["lifetime_value"] == 2  # users 1 and 3


def test_a_state_with_value_hashes_reads_everything_once_then_incrementally(
        project: Path) -> None:
    """A state whose record hashes cover property values (written by a brazecfg before
    incremental reads compared counts, or while the destination could not read
    incrementally) cannot show a related row that left: the plan reads everything once,
    says why, and apply stores count hashes for every record."""
    settle_stamps(project)
    apply(project)
    ledger_path = project / ".brazecfg" / "ledger.sqlite"
    with Ledger(ledger_path, writable=True) as led:
        mark = led.watermark("braze_users")
        assert mark is not None and mark["hash"] == "counts"
        del mark["hash"]  # as such a state's watermark reads
        led.set_watermark("braze_users", mark)
    sql(project, "DELETE FROM purchases WHERE id = 2")
    d = plan_json(project)
    assert d["read_since"] is None and d["hashes_compared"] == 0
    assert "related-row counts" in str(d["full_read_reason"])
    assert "cover property values" in str(d["full_read_reason"])
    assert d["counts"]["update"] == 1 and d["fields_set"]["lifetime_value"] == 1, d
    apply(project)
    sql(project, "UPDATE users SET last_name = 'Byron', updated_at = datetime('now') WHERE id = 5")
    again = plan_json(project)
    assert again["read_since"] is not None and again["compared"] == "counts"
    assert again["fields_set"] == {"last_name": 1}
    assert again["read_by_key"] == len(unhashed(project) - {"5"})


def test_a_model_without_aggregates_checks_only_which_keys_remain(project: Path) -> None:
    """Nothing to count: an incremental read is the changed rows plus the keys (deletions),
    on any warehouse."""
    (project / "properties" / "purchases.yml").unlink()
    (project / "groups" / "high_value.yml").unlink()
    dest = project / "destinations" / "braze_users.yml"
    text = dest.read_text()
    dest.write_text(text[:text.index("custom_attributes:")])
    settle_stamps(project)
    apply(project)
    sql(project, "UPDATE users SET last_name = 'Byron', updated_at = datetime('now') WHERE id = 1")
    sql(project, "DELETE FROM users WHERE id = 4")
    d = plan_json(project)
    assert d["read_since"] is not None and d["compared"] == "keys"
    assert d["hashes_compared"] == 11
    assert (d["counts"]["update"], d["counts"]["delete"]) == (1, 1)
    assert d["fields_set"] == {"last_name": 1}
    assert "checked 11 record keys in the warehouse" in cli("plan", str(project),
                                                           "--now", NOW).output
