"""``plan --show-current`` (issue 11, item 7), through the CLI against the emulator: the
sampled updates show Braze's value now -> the planned one, read with a handful of
/users/export/ids calls naming just the changed fields; never by default; a key without the
export permission gives a note, not a failed plan; Markdown and JSON never show a value."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from brazecfg.emulator.config import ALL_PERMISSIONS
from tests.helpers import NOW, cli, copy_example, emulator_get, sql

NO_EXPORT_KEY = "no-export-key"


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    keys = {"local-emulator-key": ALL_PERMISSIONS,
            NO_EXPORT_KEY: ALL_PERMISSIONS - {"users.export.ids"}}
    with Emulator(EmulatorConfig(port=0, api_keys=keys)) as emu:
        yield emu


@pytest.fixture
def project(tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", emulator.url)
    monkeypatch.delenv("BRAZE_API_KEY", raising=False)
    monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
    project = copy_example(tmp_path)
    applied = cli("apply", str(project), "--now", NOW, "--auto-approve")
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    # eight users get a new first name: more updates than a plan samples
    sql(project, "UPDATE users SET first_name = first_name || 'X' WHERE id <= 8")
    return project


def sample_lines(out: str) -> list[str]:
    lines = [line.strip() for line in out.splitlines()]
    start = lines.index("Samples") + 1
    end = start
    while end < len(lines) and lines[end][:2] in ("+ ", "~ ", "- "):
        end += 1
    return lines[start:end]


def exports(emulator: Emulator) -> list[dict[str, Any]]:
    return [r for r in emulator_get(emulator.url, "requests")["requests"]
            if r["path"] == "/users/export/ids"]


def test_show_current_shows_old_to_new_for_the_sampled_updates(project: Path,
                                                               emulator: Emulator) -> None:
    before = len(exports(emulator))
    run = cli("plan", str(project), "--now", NOW, "--show-current")
    assert run.exit_code == 0, run.stdout + run.stderr
    shown = sample_lines(run.stdout)
    assert len(shown) == 5, run.stdout  # SAMPLE_SIZE of the 8 updates
    for line in shown:  # e.g. ~ 3 first_name="Grace" -> "GraceX"
        uid, change = line[2:].split(" ", 1)
        old = json.loads(change.split("=", 1)[1].split(" -> ")[0])
        assert change == f'first_name="{old}" -> "{old}X"', line
        assert 1 <= int(uid) <= 8
    calls = exports(emulator)[before:]
    assert len(calls) == math.ceil(len(shown) / 50) == 1
    body = calls[0]["body"]
    assert sorted(body["external_ids"]) == sorted(line[2:].split(" ", 1)[0] for line in shown)
    assert body["fields_to_export"] == ["external_id", "first_name"]  # just the changed field


def test_never_by_default(project: Path, emulator: Emulator) -> None:
    before = len(exports(emulator))
    run = cli("plan", str(project), "--now", NOW)
    assert run.exit_code == 0, run.stdout + run.stderr
    assert all(" -> " not in line for line in sample_lines(run.stdout))
    assert len(exports(emulator)) == before


def test_a_key_without_the_export_permission_gives_a_note(project: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv("BRAZE_API_KEY", NO_EXPORT_KEY)
    run = cli("plan", str(project), "--now", NOW, "--show-current", "--detailed-exitcode")
    assert run.exit_code == 2, run.stdout + run.stderr  # the plan stands: changes planned
    assert "lacks the users.export.ids permission" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
    assert "8 to update" in run.stdout
    assert all(" -> " not in line for line in sample_lines(run.stdout))


def test_json_shows_ids_and_counts_never_values(project: Path) -> None:
    run = cli("plan", str(project), "--now", NOW, "--show-current", "-f", "json")
    assert run.exit_code == 0, run.stdout + run.stderr
    doc = json.loads(run.stdout)
    block = doc["show_current"]["destinations"][0]
    assert block["read"] is True and block["note"] is None
    assert block["fields_differing"] == {"first_name": len(block["sampled_updates"])}
    assert block["fields_already_current"] == {}
    assert doc["show_current"]["requests"] == 1
    for name in ("Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Margaret", "John"):
        assert name not in run.stdout


def test_markdown_refuses_show_current(project: Path) -> None:
    run = cli("plan", str(project), "--now", NOW, "--show-current", "-f", "markdown")
    assert run.exit_code == 1
    assert "--format text or json" in run.stderr
    plain = cli("plan", str(project), "--now", NOW, "-f", "markdown")
    assert plain.exit_code == 0 and "AdaX" not in plain.stdout and " -> " not in plain.stdout


def test_a_sampled_user_braze_does_not_have_is_said(project: Path, emulator: Emulator) -> None:
    import urllib.request

    sampled = [line[2:].split(" ", 1)[0] for line in sample_lines(
        cli("plan", str(project), "--now", NOW, "--show-current").stdout)]
    gone = sampled[0]
    req = urllib.request.Request(
        f"{emulator.url}/users/delete", data=json.dumps({"external_ids": [gone]}).encode(),
        headers={"Authorization": "Bearer local-emulator-key",
                 "Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status < 300
    run = cli("plan", str(project), "--now", NOW, "--show-current")
    lines = {line[2:].split(" ", 1)[0]: line for line in sample_lines(run.stdout)}
    assert lines[gone].endswith("(not in Braze)") and " -> " not in lines[gone], lines[gone]
    assert all(" -> " in line for uid, line in lines.items() if uid != gone)


def test_the_json_block_matches_the_plan_schema(project: Path) -> None:
    import jsonschema

    from brazecfg.schema.bundle import bundle

    run = cli("plan", str(project), "--now", NOW, "--show-current", "-f", "json")
    doc = json.loads(run.stdout)
    jsonschema.validate(doc, bundle("plan"))
    broken = {**doc, "show_current": {**doc["show_current"], "values": {"1": "Ada"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, bundle("plan"))
