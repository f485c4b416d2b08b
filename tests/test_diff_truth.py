"""The diff never lies (issue 8), through the CLI: incremental reads that miss nothing, event
rows without a key that are reported instead of guessed, and attributes that mode switches
never leave stale."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from tests.helpers import NOW, cli, copy_example, emulator_get, settle_stamps, sql, unhashed


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(port=0, max_string_length=40)) as emu:
        yield emu


@pytest.fixture
def project(tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", emulator.url)
    monkeypatch.delenv("BRAZE_API_KEY", raising=False)
    monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
    return copy_example(tmp_path)


def apply(project: Path, *extra: str, code: int = 0) -> str:
    out = cli("apply", str(project), "--auto-approve", "--now", NOW, *extra)
    assert out.exit_code == code, out.output
    return out.output


def plan(project: Path, *extra: str) -> dict[str, object]:
    out = cli("plan", str(project), "--now", NOW, "--format", "json", *extra)
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)["destinations"][0]  # type: ignore[no-any-return]


def users(emulator: Emulator) -> dict[str, dict[str, object]]:
    return {u["external_id"]: u for u in emulator_get(emulator.url, "users")["users"]}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def test_a_late_row_with_an_old_updated_at_is_created(project: Path, emulator: Emulator) -> None:
    apply(project)
    # Replication lag, a loader that keeps source timestamps: the row is new to brazecfg, but
    # its updated_at is older than the last run.
    sql(project, "INSERT INTO users VALUES (13, 'late@example.com', 'Late', 'Row', 'FR', "
                 "'2020-01-01 00:00:00')")
    d = plan(project)
    assert d["read_since"] is not None  # still an incremental read ...
    assert d["counts"]["create"] == 1  # ... that does not miss the late row
    # the late row, and the records the state has no record hash for yet (group joins)
    # by key: the late row, and records with no record hash yet that the read left out
    n = int(d["read_by_key"])  # type: ignore[call-overload]
    assert 1 <= n <= len(unhashed(project) | {"13"}) and d["hashes_compared"] == 13
    text = cli("plan", str(project), "--now", NOW).output
    assert f"{n} record{'s' if n > 1 else ''} read by key" in text
    apply(project)
    assert "13" in users(emulator)


def test_a_record_braze_rejects_keeps_incremental_reads_on(project: Path,
                                                           emulator: Emulator) -> None:
    settle_stamps(project)  # stamps stay old: only the failure brings user 3 back
    sql(project, "UPDATE users SET last_name = ? WHERE id = 3", ("H" * 60,))  # over the cap
    out = apply(project, code=1)
    assert "1 failed" in out
    d = plan(project)
    assert d["read_since"] is not None  # one failing record does not turn incremental off
    assert d["counts"]["create"] == 1  # and it is retried
    assert 1 <= int(d["read_by_key"]) <= len(unhashed(project) | {"3"})  # type: ignore[call-overload]
    sql(project, "UPDATE users SET last_name = 'Hopper' WHERE id = 3")  # fixed, unstamped
    apply(project)
    assert users(emulator)["3"]["attributes"]["last_name"] == "Hopper"  # type: ignore[index]
    assert "No changes." in cli("plan", str(project), "--now", NOW).output


def _track(emulator: Emulator, external_id: str) -> None:
    body = json.dumps({"attributes": [{"external_id": external_id, "first_name": "Known"}]})
    req = urllib.request.Request(f"{emulator.url}/users/track", data=body.encode(), headers={
        "Authorization": "Bearer local-emulator-key", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 201


def test_enrich_reaches_a_user_who_appears_in_braze_later(project: Path,
                                                           emulator: Emulator) -> None:
    edit(project / "destinations" / "braze_users.yml", "mode: sync", "mode: enrich")
    for i in ("1", "2"):
        _track(emulator, i)
    apply(project)
    assert plan(project)["counts"]["enrich"] == 0
    _track(emulator, "5")  # signs up in the app: Braze has them now
    d = plan(project)
    assert d["read_since"] is not None
    assert d["counts"]["enrich"] == 1
    apply(project)
    assert users(emulator)["5"]["attributes"]["last_name"] == "Liskov"  # type: ignore[index]


EVENTS_WITH_NULL_KEYS = """events:
  - name: purchase_made
    source: purchase_rows
    key: row_key
    time: created_at
"""

ROWS_SOURCE = """---
kind: source
name: purchase_rows
app: warehouse
model: users
query: SELECT CASE WHEN id > 10 THEN NULL ELSE id END AS row_key, user_id, created_at FROM purchases
key: user_id
"""


def test_event_rows_without_a_key_are_reported_never_sent(project: Path,
                                                          emulator: Emulator) -> None:
    (project / "sources" / "users.yml").write_text(
        (project / "sources" / "users.yml").read_text() + ROWS_SOURCE)
    dest = project / "destinations" / "braze_users.yml"
    dest.write_text(dest.read_text() + EVENTS_WITH_NULL_KEYS)
    d = plan(project)
    assert d["events_to_send"] == {"purchase_made": 10}
    keyless = [i for i in d["issues"]["first"] if "empty key" in i["reason"]]  # type: ignore[index]
    assert len(keyless) == 3
    apply(project, code=0)
    held = sum(len(u.get("events", [])) for u in users(emulator).values())  # type: ignore[arg-type]
    assert held == 10
    again = plan(project)
    assert again["events_to_send"] == {}
    assert len([i for i in again["issues"]["first"] if "empty key" in i["reason"]]) == 3  # type: ignore[index]


def test_sync_additive_sync_leaves_no_stale_attribute(project: Path, emulator: Emulator) -> None:
    dest = project / "destinations" / "braze_users.yml"
    apply(project)
    had = {i for i, u in users(emulator).items() if "last_product" in u["attributes"]}  # type: ignore[operator]
    assert "1" in had
    # The additive period: last_product leaves the mapping, user 1 is written meanwhile.
    edit(dest, "mode: sync", "mode: additive")
    edit(dest, "  last_product: last_product\n", "")
    sql(project, "UPDATE users SET first_name = 'Augusta' WHERE id = 1")
    apply(project)
    assert "last_product" in users(emulator)["1"]["attributes"]  # type: ignore[operator]
    # Back to sync: the config is the truth again, for every user alike.
    edit(dest, "mode: additive", "mode: sync")
    d = plan(project)
    assert d["fields_removed"] == {"last_product": len(had)}
    apply(project)
    assert not any("last_product" in u["attributes"] for u in users(emulator).values())  # type: ignore[operator]


def test_the_watermark_follows_the_warehouse_clock_not_this_machine(project: Path,
                                                                     emulator: Emulator) -> None:
    """A warehouse that stamps rows in local time (UTC-5 here): the machine's clock would put
    the watermark five hours after every new stamp and miss each change."""
    sql(project, "DROP TRIGGER users_touch")
    sql(project, "UPDATE users SET updated_at = datetime('now', '-5 hours')")
    apply(project)
    sql(project, "UPDATE users SET last_name = 'Byron', updated_at = datetime('now', "
                 "'-5 hours', '+1 minute') WHERE id = 1")
    d = plan(project)
    assert d["read_since"] is not None
    assert d["counts"]["update"] == 1 and d["fields_set"] == {"last_name": 1}
    apply(project)
    assert users(emulator)["1"]["attributes"]["last_name"] == "Byron"  # type: ignore[index]


def test_event_properties_carry_no_float_noise_and_no_reserved_names(
        project: Path, emulator: Emulator) -> None:
    dest = project / "destinations" / "braze_users.yml"
    dest.write_text(dest.read_text() + "events:\n  - name: purchase_made\n    source: purchases\n"
                    "    key: id\n    time: created_at\n    properties: {time: amount}\n")
    bad = cli("validate", str(project))
    assert bad.exit_code == 1 and "'time' is a name Braze refuses" in bad.output
    dest.write_text(dest.read_text().replace("{time: amount}", "{amount: amount}"))
    sql(project, "UPDATE purchases SET amount = 447.71999999999997 WHERE id = 1")
    apply(project)
    sent = [json.dumps(r["body"]) for r in emulator_get(emulator.url, "requests")["requests"]
            if r["path"] == "/users/track" and "events" in r["body"]]
    assert any('"amount": 447.72' in b for b in sent) and not any("447.7199" in b for b in sent)


def test_too_many_late_rows_fall_back_to_one_full_read(project: Path) -> None:
    import sqlite3

    apply(project)
    con = sqlite3.connect(project / "warehouse.db")
    with con:  # a bulk load that kept its source's old stamps
        con.executemany("INSERT INTO users VALUES (?, ?, 'Late', 'Load', 'FR', "
                        "'2020-01-01 00:00:00')",
                        [(i, f"u{i}@example.com") for i in range(100, 5200)])
    con.close()
    d = plan(project)
    assert d["read_since"] is None and "more than 5,000 records" in d["full_read_reason"]
    assert d["counts"]["create"] == 5100
