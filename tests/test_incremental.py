"""Incremental reads: only records changed since the last confirmed run are read, and
deletions are still found (every key is listed, and the ledger knows who was sent)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from tests.helpers import NOW, cli, copy_example, settle_stamps, sql


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with Emulator(EmulatorConfig(port=0)) as emu:
        monkeypatch.setenv("BRAZE_REST_ENDPOINT", emu.url)
        monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
        yield copy_example(tmp_path)


def plan_json(project: Path, *extra: str) -> dict[str, object]:
    out = cli("plan", str(project), "--now", NOW, "--format", "json", *extra)
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)["destinations"][0]  # type: ignore[no-any-return]


def test_second_run_reads_only_changed_records_and_still_finds_deletes(project: Path) -> None:
    settle_stamps(project)
    first = plan_json(project)
    assert first["read_since"] is None  # first run: everything
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    # A change the warehouse did not stamp (updated_at forced back) is invisible to an
    # incremental read: proof that the read is incremental.
    sql(project, "UPDATE users SET first_name = 'Unstamped' WHERE id = 2")
    sql(project, "UPDATE users SET last_name = 'Byron', updated_at = datetime('now') WHERE id = 1")
    sql(project, "DELETE FROM users WHERE id = 4")
    second = plan_json(project)
    assert second["read_since"] is not None
    assert second["counts"]["update"] == 1 and second["counts"]["delete"] == 1
    assert second["fields_set"] == {"last_name": 1}
    assert second["counts"]["unchanged"] == 10  # known and untouched: not re-read
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
