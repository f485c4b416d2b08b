"""Value checks aligned with what Braze accepts, and numbers sent without float noise, through
the CLI (issue 8, items 15 and 16). A value Braze refuses fails its record at every apply, so
plan must refuse it first, with the record and the field; a value Braze takes must go through.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from tests.helpers import NOW, cli, copy_example, emulator_get

FIELDS = ("phone", "dob", "gender", "time_zone", "language", "home_city")
# id -> (email, phone, dob, gender, time_zone, language, home_city); None where fine
ROWS: dict[int, tuple[Any, ...]] = {
    1: ("ada@example.com", "+1 (415) 555-2671", "1990-05-01", "f", "Europe/Paris", "EN", "x"),
    2: ("bo..b@hotmail.com", "+1234", "1990-02-30", "male", "Eastern Time (US & Canada)",
        "english", "y" * 256),
    3: ("x@gmail.com", "4155552671", "1990-05-01T00:00:00Z", "M", "Nowhere/City", "fr", "z"),
    4: ("josé@example.com", "+999123456", None, None, None, None, None),
    5: ("bob@example.123", "+44 20 7183 8750", None, None, None, None, None),
    6: ("a..b@example.com", "0612345678", None, None, None, None, None),
}
# Braze takes a Rails time zone ("Eastern Time (US & Canada)") and a date-time dob, as the
# recorded traffic shows: brazecfg sends them as the IANA name and the day.
BAD = {
    (2, "email"), (2, "phone"), (2, "dob"), (2, "gender"), (2, "language"),
    (2, "home_city"), (3, "email"), (3, "time_zone"), (4, "phone"), (5, "email"),
    (6, "phone"),
}


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(port=0)) as emu:
        monkeypatch.setenv("BRAZE_REST_ENDPOINT", emu.url)
        monkeypatch.delenv("BRAZE_API_KEY", raising=False)
        monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
        yield emu


def values_project(tmp_path: Path) -> Path:
    project = copy_example(tmp_path)
    con = sqlite3.connect(project / "warehouse.db")
    con.executescript((project / "warehouse.sql").read_text())
    with con:
        con.execute("DELETE FROM users WHERE id > 6")
        for col in FIELDS:
            con.execute(f"ALTER TABLE users ADD COLUMN {col} TEXT")
        for uid, (mail, *rest) in ROWS.items():
            con.execute(f"UPDATE users SET email = ?, {', '.join(f'{c} = ?' for c in FIELDS)} "
                        "WHERE id = ?", (mail, *rest, uid))
        # a sum that leaves float noise: 447.72 as a double sum is 447.71999999999997
        con.execute("DELETE FROM purchases WHERE user_id = 1")
        con.execute("INSERT INTO purchases (id, user_id, product, amount, status, created_at) "
                    "VALUES (101, 1, 'a', 447.71999999999997, 'paid', '2026-02-01 10:00:00')")
    con.close()
    props = project / "properties" / "users.yml"
    props.write_text(props.read_text() + "".join(
        f"---\nkind: property\nname: {c}\nsource: users_table\n"
        f"type: {'phone' if c == 'phone' else 'string'}\ncolumn: {c}\n" for c in FIELDS))
    dest = project / "destinations" / "braze_users.yml"
    dest.write_text(dest.read_text().replace(
        "  country: country\n",
        "  country: country\n" + "".join(f"  {c}: {c}\n" for c in FIELDS)))
    return project


def test_plan_refuses_exactly_what_braze_would_refuse(tmp_path: Path,
                                                     emulator: Emulator) -> None:
    project = values_project(tmp_path)
    out = cli("plan", str(project), "--now", NOW, "--format", "json")
    assert out.exit_code == 0, out.output
    issues = json.loads(out.stdout)["destinations"][0]["issues"]["first"]
    got = {(int(i["external_id"]), i["field"]) for i in issues}
    assert got == BAD
    reasons = {(int(i["external_id"]), i["field"]): i["reason"] for i in issues}
    assert "Braze would ignore this one" in reasons[(3, "time_zone")]
    assert "E.164" in reasons[(2, "phone")]
    for (uid, _field), reason in reasons.items():  # never the value itself
        assert "+1234" not in reason and "hotmail" not in reason, (uid, reason)


def test_apply_sends_what_braze_accepts_in_its_canonical_form(tmp_path: Path,
                                                             emulator: Emulator) -> None:
    project = values_project(tmp_path)
    out = cli("apply", str(project), "--auto-approve", "--now", NOW)
    assert out.exit_code == 0, out.output
    users = {u["external_id"]: u["attributes"]
             for u in emulator_get(emulator.url, "users")["users"]}
    assert users["1"]["phone"] == "+14155552671"
    assert users["1"]["gender"] == "F" and users["1"]["language"] == "en"
    assert users["3"]["phone"] == "+14155552671"  # ten digits: a US number, as Braze maps it
    assert users["5"]["phone"] == "+442071838750"
    assert users["4"]["email"] == "josé@example.com"  # Unicode local parts are Braze's rule
    assert users["6"]["email"] == "a..b@example.com"
    assert "phone" not in users["2"] and "email" not in users["2"]
    # no float noise reaches Braze: the request body itself says 447.72
    bodies = [json.dumps(r["body"]) for r in emulator_get(emulator.url, "requests")["requests"]
              if r["path"] == "/users/track"]
    assert any('"lifetime_value": 447.72' in b for b in bodies), bodies
    assert not any("447.7199" in b for b in bodies)
    assert users["1"]["lifetime_value"] == 447.72
    again = cli("plan", str(project), "--now", NOW, "--full-refresh")
    assert "No changes" in again.output, again.output
