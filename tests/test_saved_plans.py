"""Reviewed plans applied exactly (issue 10, items 3, 4, 5, 7), through the CLI against the
emulator: `plan --out` / `apply --plan`, `show`, the pull-request comment, access checked
before anyone approves."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from brazecfg.emulator.config import ALL_PERMISSIONS
from brazecfg.schema.store import load_schema
from brazecfg.state.ledger import Ledger
from tests.helpers import NOW, cli, copy_example, emulator_get, sql


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    keys = {"local-emulator-key": ALL_PERMISSIONS,
            "no-export-key": ALL_PERMISSIONS - {"users.export.ids"}}
    with Emulator(EmulatorConfig(port=0, api_keys=keys)) as emu:
        yield emu


@pytest.fixture
def project(tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", emulator.url)
    monkeypatch.delenv("BRAZE_API_KEY", raising=False)
    monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
    return copy_example(tmp_path)


READ_ONLY = {"/subscription/status/get", "/users/export/ids"}


def writes(emulator: Emulator) -> list[dict[str, Any]]:
    """Requests that change Braze: the plan's read-only lookups (opt-outs, the access check)
    are not sends."""
    return [r for r in requests(emulator) if r["path"] not in READ_ONLY]


def requests(emulator: Emulator) -> list[dict[str, Any]]:
    return list(emulator_get(emulator.url, "requests")["requests"])


def users(emulator: Emulator) -> dict[str, dict[str, Any]]:
    return {u["external_id"]: u["attributes"] for u in emulator_get(emulator.url, "users")["users"]}


def sent_ids(reqs: list[dict[str, Any]]) -> list[str]:
    return sorted((a["external_id"] for r in reqs if r["path"] == "/users/track"
                   for a in r["body"].get("attributes", [])), key=int)


# -- apply exactly the reviewed plan ---------------------------------------------------------

def test_a_saved_plan_applies_with_no_auto_approve_and_no_terminal(project: Path,
                                                                   emulator: Emulator) -> None:
    saved = project.parent / "plan.jsonl"
    made = cli("plan", str(project), "--now", NOW, "--out", str(saved))
    assert made.exit_code == 0
    assert "created the hash key" in made.stderr and (project / ".brazecfg" / "hash.key").exists()
    assert "apply exactly this with `brazecfg apply --plan" in made.stderr
    text = saved.read_text()
    for value in ("Lovelace", "ada@example.com", "Turing", "135.5"):  # hashes, never values
        assert value not in text
    out = cli("apply", str(project), "--plan", str(saved))  # no --auto-approve, no tty
    assert out.exit_code == 0, out.output
    assert "12 created" in out.output
    assert sorted(users(emulator), key=int) == [str(i) for i in range(1, 13)]
    again = cli("plan", str(project), "--now", NOW, "--detailed-exitcode")
    assert again.exit_code == 0 and "No changes." in again.output


def test_changed_records_are_listed_and_skip_changed_applies_only_the_others(
        project: Path, emulator: Emulator) -> None:
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    for i in range(1, 7):
        sql(project, "UPDATE users SET last_name = ? WHERE id = ?", (f"Reviewed{i}", i))
    saved = project.parent / "plan.jsonl"
    reviewed = cli("plan", str(project), "--now", NOW, "--out", str(saved))
    assert reviewed.exit_code == 0 and "~ 6 to update" in reviewed.output
    # The warehouse moves for 3 of the 6 users after the review.
    for i in (2, 4, 6):
        sql(project, "UPDATE users SET first_name = 'Moved' WHERE id = ?", (i,))
    before = len(requests(emulator))
    out = cli("apply", str(project), "--plan", str(saved))
    assert out.exit_code == 1
    assert "3 records changed since the plan was reviewed" in out.stderr
    assert "3 update" in out.stderr and "first_name 3" in out.stderr
    assert '"2", "4", "6"' in out.stderr and "Moved" not in out.output
    assert len(requests(emulator)) == before  # refused: nothing sent

    with Ledger(project / ".brazecfg" / "ledger.sqlite", writable=False) as led:
        mark = led.watermark("braze_users")
    out = cli("apply", str(project), "--plan", str(saved), "--skip-changed")
    assert out.exit_code == 0, out.output
    assert "3 records changed since the plan was reviewed" in out.stderr
    assert sent_ids(requests(emulator)[before:]) == ["1", "3", "5"]
    got = users(emulator)
    assert [got[str(i)]["last_name"] for i in (1, 3, 5)] == ["Reviewed1", "Reviewed3",
                                                             "Reviewed5"]
    assert [got[str(i)]["last_name"] for i in (2, 4, 6)] == ["Turing", "Dijkstra", "Knuth"]
    with Ledger(project / ".brazecfg" / "ledger.sqlite", writable=False) as led:
        assert led.watermark("braze_users") == mark  # held-back records are read again
    nxt = json.loads(cli("plan", str(project), "--now", NOW, "--format", "json").stdout)
    assert nxt["destinations"][0]["counts"]["update"] == 3
    assert nxt["destinations"][0]["fields_set"] == {"first_name": 3, "last_name": 3}


def test_a_record_new_since_the_review_is_not_sent(project: Path, emulator: Emulator) -> None:
    saved = project.parent / "plan.jsonl"
    assert cli("plan", str(project), "--now", NOW, "--out", str(saved)).exit_code == 0
    sql(project, "INSERT INTO users VALUES (13, 'new@example.com', 'New', 'User', 'US', "
                 "'2026-01-05 09:00:00')")
    out = cli("apply", str(project), "--plan", str(saved))
    assert out.exit_code == 1 and "1 record changed since the plan was reviewed" in out.stderr
    assert "(1 create)" in out.stderr and '"13"' in out.stderr
    out = cli("apply", str(project), "--plan", str(saved), "--skip-changed")
    assert out.exit_code == 0, out.output
    assert sorted(users(emulator), key=int) == [str(i) for i in range(1, 13)]


def test_the_saved_flags_are_the_ones_applied(project: Path, emulator: Emulator) -> None:
    saved = project.parent / "plan.jsonl"
    assert cli("plan", str(project), "--now", NOW, "--target", "destination/braze_users",
               "--out", str(saved)).exit_code == 0
    header = json.loads(saved.read_text().splitlines()[0])
    assert header["flags"]["now"] == "2026-11-01T00:00:00+00:00"
    assert header["flags"]["targets"] == ["destination/braze_users"]
    assert header["destinations"][0]["state_name"] == "braze_users"
    assert set(header["destinations"][0]["bindings"]) >= {"workspace", "groups"}
    other = cli("apply", str(project), "--plan", str(saved), "--now", "2026-12-24T00:00:00Z")
    assert other.exit_code == 1 and "--now differs from the saved plan" in other.stderr
    flag = cli("apply", str(project), "--plan", str(saved), "--full-refresh")
    assert flag.exit_code == 1 and "--full-refresh differs" in flag.stderr
    assert writes(emulator) == []  # nothing sent (read-only opt-out lookups aside)
    same = cli("apply", str(project), "--plan", str(saved), "--now", NOW, "--auto-approve")
    assert same.exit_code == 0, same.output


def test_max_plan_age(project: Path, emulator: Emulator) -> None:
    saved = project.parent / "plan.jsonl"
    assert cli("plan", str(project), "--now", NOW, "--out", str(saved)).exit_code == 0
    lines = saved.read_text().splitlines()
    header = json.loads(lines[0])
    header["created_at"] = "2026-01-01T00:00:00+00:00"
    saved.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    old = cli("apply", str(project), "--plan", str(saved), "--max-plan-age", "24h")
    assert old.exit_code == 1 and "older than --max-plan-age 1d" in old.stderr
    bad = cli("apply", str(project), "--plan", str(saved), "--max-plan-age", "soon")
    assert bad.exit_code == 1 and "30m, 24h or 7d" in bad.stderr
    alone = cli("apply", str(project), "--auto-approve", "--max-plan-age", "1h")
    assert alone.exit_code == 1 and "go with --plan" in alone.stderr
    assert writes(emulator) == []  # nothing sent (read-only opt-out lookups aside)
    assert cli("apply", str(project), "--plan", str(saved), "--max-plan-age",
               "5000d").exit_code == 0


def test_foreign_cut_off_and_other_key_plans_are_clear_errors(project: Path,
                                                              emulator: Emulator) -> None:
    saved = project.parent / "plan.jsonl"
    foreign = project.parent / "other.json"
    foreign.write_text('{"format_version": 1, "destinations": []}\n')
    out = cli("apply", str(project), "--plan", str(foreign))
    assert out.exit_code == 1 and "is not a plan saved by `brazecfg plan --out`" in out.stderr
    env = {"BRAZECFG_HASH_KEY": "a" * 32}
    assert cli("plan", str(project), "--now", NOW, "--out", str(saved), env=env).exit_code == 0
    other = cli("apply", str(project), "--plan", str(saved), env={"BRAZECFG_HASH_KEY": "b" * 32})
    assert other.exit_code == 1 and "another hash key" in other.stderr
    cut = project.parent / "cut.jsonl"
    cut.write_text("".join(saved.read_text().splitlines(keepends=True)[:-2]))
    out = cli("apply", str(project), "--plan", str(cut), env=env)
    assert out.exit_code == 1 and "cut off" in out.stderr
    assert "unexpected error" not in other.output + out.output
    assert writes(emulator) == []  # nothing sent (read-only opt-out lookups aside)


def test_a_changed_config_refuses_the_saved_plan(project: Path, emulator: Emulator) -> None:
    saved = project.parent / "plan.jsonl"
    assert cli("plan", str(project), "--now", NOW, "--out", str(saved)).exit_code == 0
    dest = project / "destinations" / "braze_users.yml"
    dest.write_text(dest.read_text().replace("  last_product: last_product\n", ""))
    out = cli("apply", str(project), "--plan", str(saved))
    assert out.exit_code == 1 and "another version of the config" in out.stderr
    assert writes(emulator) == []  # nothing sent (read-only opt-out lookups aside)


# -- show --------------------------------------------------------------------------------

def test_show_renders_a_saved_plan_like_plan_and_the_json_validates(project: Path) -> None:
    saved = project.parent / "plan.jsonl"
    planned = {fmt: cli("plan", str(project), "--now", NOW, "--format", fmt, "--out",
                        str(saved)).stdout for fmt in ("json", "markdown", "text")}
    shown = {fmt: cli("show", str(saved), "--format", fmt) for fmt in planned}
    assert all(r.exit_code == 0 for r in shown.values())
    assert shown["json"].stdout == planned["json"]
    assert shown["markdown"].stdout == planned["markdown"]
    assert "+ 12 to create" in shown["text"].stdout
    assert "not a valid email address" in shown["text"].stdout
    doc = json.loads(shown["json"].stdout)
    schema = load_schema("plan.json")
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(doc, schema)
    assert doc["format_version"] == "2.3"
    # Every key the plan writes is documented (the schema lets readers ignore new ones).
    assert set(doc) <= set(schema["properties"])
    assert set(doc["destinations"][0]) <= set(schema["$defs"]["destination"]["properties"])
    missing = cli("show", str(project.parent / "nope.jsonl"))
    assert missing.exit_code == 1 and "no saved plan at" in missing.stderr


def test_json_of_a_plan_with_changes_validates(project: Path) -> None:
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    sql(project, "DELETE FROM users WHERE id > 2")  # deletes, a guardrail tripped
    sql(project, "UPDATE users SET country = NULL WHERE id = 1")
    doc = json.loads(cli("plan", str(project), "--now", NOW, "--format", "json").stdout)
    assert doc["blocked"] and doc["destinations"][0]["counts"]["delete"] == 10
    jsonschema.validate(doc, load_schema("plan.json"))


# -- check access before anyone approves --------------------------------------------------

def test_a_wrong_key_fails_before_the_approval_prompt(project: Path, emulator: Emulator,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # respect_opt_outs off: the plan then needs no Braze call, so the access check is the
    # first request apply makes (with opt-out lookups on, the plan's own lookup fails first).
    dest = project / "destinations" / "braze_users.yml"
    dest.write_text(dest.read_text() + "respect_opt_outs: false\n")
    monkeypatch.setenv("BRAZE_API_KEY", "wrong-key-1234")
    out = cli("apply", str(project), "--now", NOW, input="y\n")  # nobody is asked
    assert out.exit_code == 1
    assert out.stdout == ""  # the plan was never shown for approval
    assert "--auto-approve" not in out.output and "Apply these changes" not in out.output
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "app/braze" in lines[0] and "401" in lines[0]
    assert "wrong-key-1234" not in out.output
    assert [r["path"] for r in requests(emulator)] == ["/users/export/ids"]
    saved = project.parent / "plan.jsonl"
    assert cli("plan", str(project), "--now", NOW, "--out", str(saved)).exit_code == 0
    out = cli("apply", str(project), "--plan", str(saved))
    assert out.exit_code == 1 and "401" in out.stderr and out.stdout == ""
    assert all(r["path"] == "/users/export/ids" for r in requests(emulator))


def test_a_key_without_the_export_permission_warns_for_a_sync(project: Path,
                                                              emulator: Emulator,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    monkeypatch.setenv("BRAZE_API_KEY", "no-export-key")
    out = cli("apply", str(project), "--auto-approve", "--now", NOW)
    assert out.exit_code == 0, out.output
    assert "warning: app/braze: the API key lacks users.export.ids (403)" in out.stderr
    assert len(users(emulator)) == 12


def test_no_changes_needs_no_access_check(project: Path, emulator: Emulator) -> None:
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    before = len(requests(emulator))
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    assert Counter(r["path"] for r in requests(emulator)[before:]) == Counter()


# -- the CI recipe ---------------------------------------------------------------------------

def test_the_ci_recipe_plan_step_writes_the_comment_and_the_job_summary(
        project: Path, tmp_path: Path) -> None:
    """Runs the workflow's own `plan` step (its shell script, as GitHub would) against the
    emulator: exit 0 on changes, plan.md is the comment body, the job summary gets it."""
    import os
    import subprocess
    import sys

    import yaml

    from tests.helpers import ROOT

    workflow = yaml.safe_load((ROOT / "examples" / "ci" / ".github" / "workflows" /
                               "brazecfg.yml").read_text())
    steps = {s.get("name") or s.get("run"): s for s in workflow["jobs"]["plan"]["steps"]}
    script = steps["plan"]["run"]
    summary = tmp_path / "summary.md"
    env = {**os.environ, "PROJECT": str(project), "GITHUB_STEP_SUMMARY": str(summary),
           "NO_COLOR": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    run = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    body = (tmp_path / "plan.md").read_text()
    assert body.startswith("## brazecfg plan") and "<details>" in body
    assert "Lovelace" not in body and "@example.com" not in body
    assert len("<!-- brazecfg-plan -->\n" + body) < 65_536
    assert summary.read_text() == body


EVENTS = """events:
  - name: purchase_made
    source: purchases
    key: id
    time: created_at
    properties: {product: product, amount: amount}
"""


def test_an_event_row_changed_since_the_review_is_held_back(project: Path,
                                                            emulator: Emulator) -> None:
    dest = project / "destinations" / "braze_users.yml"
    dest.write_text(dest.read_text() + EVENTS)
    assert cli("apply", str(project), "--auto-approve", "--now", NOW).exit_code == 0
    for i, amount in ((14, 5.0), (15, 7.0)):
        sql(project, "INSERT INTO purchases (id, user_id, product, amount, status, created_at) "
                     "VALUES (?, 8, 'lisp', ?, 'refunded', '2026-10-01 10:00:00')", (i, amount))
    saved = project.parent / "plan.jsonl"
    reviewed = json.loads(cli("plan", str(project), "--now", NOW, "--format", "json", "--out",
                              str(saved)).stdout)
    assert reviewed["destinations"][0]["events_to_send"] == {"purchase_made": 2}
    sql(project, "UPDATE purchases SET amount = 6.0 WHERE id = 14")
    out = cli("apply", str(project), "--plan", str(saved))
    assert out.exit_code == 1
    assert "1 event row changed since the plan was reviewed" in out.stderr
    assert "events purchases:id:event 1" in out.stderr and '"14"' in out.stderr
    before = len(requests(emulator))
    out = cli("apply", str(project), "--plan", str(saved), "--skip-changed")
    assert out.exit_code == 0, out.output
    sent = [e for r in requests(emulator)[before:] if r["path"] == "/users/track"
            for e in r["body"].get("events", [])]
    assert [e["properties"]["amount"] for e in sent] == [7.0]  # only the row that matched
    nxt = json.loads(cli("plan", str(project), "--now", NOW, "--format", "json").stdout)
    assert nxt["destinations"][0]["events_to_send"] == {"purchase_made": 1}


def test_an_error_quoting_markup_is_printed_as_text(project: Path) -> None:
    """Error messages quote ids and names from files and warehouses (a saved plan's refusal
    lists external ids): "[/x]" once crashed the error boundary with a traceback."""
    out = cli("plan", str(project), "--now", NOW, "--target", "destination/[/x]")
    assert out.exit_code == 1
    assert "--target destination/[/x]: no such destination" in out.stderr
