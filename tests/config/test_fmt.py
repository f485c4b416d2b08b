"""``brazecfg fmt [--check]`` (issue 11, item 5), through the CLI: canonical key order (kind,
name, then the kind's schema order), 2-space style, comments and templates kept, the meaning
never changed, only the loader's files touched, a broken file reported and the rest formatted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brazecfg.emulator import EmulatorConfig
from brazecfg.schema.bundle import bundle
from tests.helpers import EXAMPLE, NOW, cli, copy_example

MISORDERED = """\
# yaml-language-server: $schema=../.brazecfg.schema.json
# The Braze users, synced from the warehouse.
name: braze_users   # the destination's name
model: users
app: braze
kind: destination

# how it syncs: the config is the truth
mode: sync            # sync | additive | enrich
custom_attributes:    # custom attribute name: property
    lifetime_value: ltv<SPACES>
    purchase_count: purchase_count
    last_product: last_product
mapping:              # Braze standard field: property
    external_id: user_id
    email: email
    first_name: first_name
    last_name: last_name
    country: country
subscription_groups:  # group: Braze subscription group id
    high_value: 6f0b5c0e-7d4c-4a57-9a64-3c1f4c0a0001
""".replace("<SPACES>", "   ")  # a trailing-space line

PROPERTY_TEMPLATE = """\
type: float
name: ltv
kind: property
description: Lifetime value, the sum of paid purchases.
aggregate: sum
source: purchases
column: amount
filters:
  - {column: status, op: eq, value: "{{ var('paid_status') }}"}
"""


def _misorder(project: Path) -> Path:
    dest = project / "destinations" / "braze_users.yml"
    dest.write_text(MISORDERED)
    return dest


def test_check_fails_on_a_misordered_file_and_fmt_fixes_it_keeping_comments(
        tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    dest = _misorder(project)
    checked = cli("fmt", str(project), "--check")
    assert checked.exit_code == 1, checked.stdout + checked.stderr
    assert f"would reformat {project.as_posix()}/destinations/braze_users.yml" in checked.stdout
    assert dest.read_text() == MISORDERED  # --check writes nothing

    fixed = cli("fmt", str(project))
    assert fixed.exit_code == 0, fixed.stdout + fixed.stderr
    lines = dest.read_text().splitlines()
    keys = [line.split(":")[0] for line in lines if line[:1].isalpha()]
    order = list(bundle("destination")["properties"])
    assert keys[:2] == ["kind", "name"]
    assert keys == sorted(keys, key=order.index)  # the schema's order, not a hand list
    # comments kept, each where it belongs: the modeline and header on top, eol comments on
    # their key's line, the full-line comment above the key it describes
    assert lines[0] == "# yaml-language-server: $schema=../.brazecfg.schema.json"
    assert lines[1] == "# The Braze users, synced from the warehouse."
    assert "name: braze_users   # the destination's name" in lines
    i = lines.index("mode: sync            # sync | additive | enrich")
    assert lines[i - 1] == "# how it syncs: the config is the truth"
    assert "mapping:              # Braze standard field: property" in lines
    # 2-space indentation, no trailing spaces, one trailing newline
    assert "  lifetime_value: ltv" in lines
    assert not any(line != line.rstrip() for line in lines)
    assert dest.read_text().endswith("\n")
    assert not dest.read_text().endswith("\n\n")

    again = cli("fmt", str(project), "--check")
    assert again.exit_code == 0, again.stdout + again.stderr
    assert "0 files would be reformatted" in again.stdout


def test_the_example_project_is_formatted() -> None:
    run = cli("fmt", str(EXAMPLE), "--check")
    assert run.exit_code == 0, run.stdout + run.stderr
    assert "would reformat" not in run.stdout


def test_fmt_keeps_the_meaning_validate_and_fingerprints(tmp_path: Path, start: object,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Applied with misordered files, then formatted: the next plan has no config change
    (the lockfile's fingerprints match) and validate still passes."""
    monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
    start(EmulatorConfig(port=0))  # type: ignore[operator]
    project = copy_example(tmp_path)
    _misorder(project)
    props = project / "properties" / "purchases.yml"
    props.write_text(PROPERTY_TEMPLATE + "---\n" + props.read_text().split("---\n", 1)[1])
    before = json.loads(cli("plan", str(project), "--now", NOW, "-f", "json").stdout)
    applied = cli("apply", str(project), "--now", NOW, "--auto-approve")
    assert applied.exit_code == 0, applied.stdout + applied.stderr

    formatted = cli("fmt", str(project))
    assert formatted.exit_code == 0, formatted.stdout + formatted.stderr
    assert "reformatted" in formatted.stdout
    prop = (project / "properties" / "purchases.yml").read_text()
    assert prop.startswith("kind: property\nname: ltv\n")
    # the template survives byte for byte
    assert """  - {column: status, op: eq, value: "{{ var('paid_status') }}"}\n""" in prop
    assert "---\nkind: property\nname: purchase_count\n" in prop  # documents kept, in order

    assert cli("validate", str(project)).exit_code == 0
    after = cli("plan", str(project), "--now", NOW, "-f", "json", "--detailed-exitcode")
    assert after.exit_code == 0, after.stdout + after.stderr  # no change at all
    plan = json.loads(after.stdout)
    assert plan["config_changes"] == []
    assert plan["config_fingerprint"] == before["config_fingerprint"]


def test_fmt_stays_in_the_loaders_lane(tmp_path: Path, start: object) -> None:
    start(EmulatorConfig(port=0))  # type: ignore[operator]
    project = copy_example(tmp_path)
    others = {
        "package.json": '{"version": "1.0.0",   "name": "site"}',
        "docker-compose.yml": "services:\n    db:\n        image: postgres:16\n",
        "brazecfg.yml": (project / "brazecfg.yml").read_text() + "exclude: [drafts]\n",
    }
    for name, text in others.items():
        (project / name).write_text(text)
    (project / "drafts").mkdir()
    (project / "drafts" / "x.yml").write_text("name: x\nkind: model\nprimary_key: id\n")
    planned = cli("plan", str(project), "--now", NOW, "--out", str(project / "plan.json"))
    assert planned.exit_code == 0, planned.stdout + planned.stderr
    saved = (project / "plan.json").read_bytes()
    run = cli("fmt", str(project))
    assert run.exit_code == 0, run.stdout + run.stderr
    for name, text in others.items():
        assert (project / name).read_text() == text, name
    assert (project / "drafts" / "x.yml").read_text() == "name: x\nkind: model\nprimary_key: id\n"
    assert (project / "plan.json").read_bytes() == saved


def test_json_resource_files_are_put_in_order(tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    (project / "models" / "users.yml").unlink()
    model = project / "models" / "users.json"
    model.write_text('{"primary_key": "user_id", "name": "users", "kind": "model"}')
    run = cli("fmt", str(project))
    assert run.exit_code == 0, run.stdout + run.stderr
    assert model.read_text() == ('{\n  "kind": "model",\n  "name": "users",\n'
                                 '  "primary_key": "user_id"\n}\n')
    assert cli("validate", str(project)).exit_code == 0


def test_a_file_fmt_cannot_parse_is_reported_and_the_others_formatted(tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    dest = _misorder(project)
    broken = project / "groups" / "high_value.yml"
    broken.write_text("kind: group\nname: high_value\nrules: [unclosed\n")
    run = cli("fmt", str(project))
    assert run.exit_code == 1
    assert "Traceback" not in run.stdout + run.stderr
    assert f"{project.as_posix()}/groups/high_value.yml:4:1" in run.stderr, run.stderr
    assert "1 file not formatted" in run.stdout
    assert broken.read_text() == "kind: group\nname: high_value\nrules: [unclosed\n"
    assert dest.read_text().startswith("# yaml-language-server")
    assert "kind: destination\nname: braze_users" in dest.read_text()  # still formatted


def test_files_given_by_name_as_pre_commit_passes_them(tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    dest = _misorder(project)
    (project / "package.json").write_text('{"name":  "x", "version": "1.0.0"}')
    run = cli("fmt", str(dest), str(project / "package.json"), "--check")
    assert run.exit_code == 1
    assert "braze_users.yml" in run.stdout and "package.json" not in run.stdout


def test_no_project_is_one_clear_error(tmp_path: Path) -> None:
    run = cli("fmt", str(tmp_path))
    assert run.exit_code == 1
    assert "no brazecfg.yml" in run.stderr and "Traceback" not in run.stderr


def test_the_shipped_pre_commit_hooks_run(tmp_path: Path) -> None:
    """Each hook's entry, run as pre-commit runs it (fmt with the changed files, validate
    with none), passes on the example and fmt's fails on a misordered file."""
    import shlex

    import yaml

    from tests.helpers import ROOT

    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"brazecfg-fmt", "brazecfg-validate"}
    project = copy_example(tmp_path)
    files = [str(p) for p in sorted(project.rglob("*.yml"))]
    fmt = shlex.split(hooks["brazecfg-fmt"]["entry"])
    validate = shlex.split(hooks["brazecfg-validate"]["entry"])
    assert fmt[0] == validate[0] == "brazecfg"
    assert hooks["brazecfg-validate"]["pass_filenames"] is False
    assert cli(*fmt[1:], *files).exit_code == 0
    assert cli(*validate[1:], str(project)).exit_code == 0
    _misorder(project)
    failed = cli(*fmt[1:], *files)
    assert failed.exit_code == 1 and "braze_users.yml" in failed.stdout


def test_list_items_are_ordered_by_their_schema_and_keep_their_comments() -> None:
    from brazecfg.config.fmt import format_yaml

    text = ("kind: destination\nname: d\nevents:\n- type: purchase\n  # the stream's source\n"
            "  source: purchases\n  name: buys   # in plans\n- {type: event, name: x, source: s}\n"
            "---\n# second\nname: m\nkind: model\nprimary_key: id\n")
    out = format_yaml(text, "d.yml")
    assert out == ("kind: destination\nname: d\nevents:\n  - name: buys # in plans\n"
                   "    # the stream's source\n    source: purchases\n    type: purchase\n"
                   "  - {type: event, name: x, source: s}\n"
                   "---\n# second\nkind: model\nname: m\nprimary_key: id\n")
    assert format_yaml(out, "d.yml") == out


@pytest.mark.parametrize(("text", "want"), [
    ("# only a comment   \n\n", "# only a comment\n"),  # nothing to order: comments stay
    ("# top\n- name: m\n  # pk\n  primary_key: id\n  kind: model\n",
     "# top\n- kind: model\n  name: m\n  # pk\n  primary_key: id\n"),  # a list of resources
    ("name: m\r\nkind: model\r\ndescription: |+\r\n  text\r\n\r\nprimary_key: id\r\n",
     "kind: model\nname: m\ndescription: |+\n  text\n\nprimary_key: id\n"),
])
def test_edge_layouts_are_formatted_and_stay_formatted(text: str, want: str) -> None:
    from brazecfg.config.fmt import format_yaml

    assert format_yaml(text, "f.yml") == want
    assert format_yaml(want, "f.yml") == want


def test_a_reorder_that_would_move_an_alias_before_its_anchor_is_refused(tmp_path: Path
                                                                        ) -> None:
    project = copy_example(tmp_path)
    model = project / "models" / "users.yml"
    text = "primary_key: &pk user_id\nkind: model\nname: users\ndescription: *pk\n"
    model.write_text(text)
    run = cli("fmt", str(project))
    assert run.exit_code == 1
    assert "an alias would come before its anchor" in run.stderr
    assert "Traceback" not in run.stderr
    assert model.read_text() == text


def test_comments_of_a_four_space_file_follow_their_keys() -> None:
    from brazecfg.config.fmt import format_yaml

    text = ("kind: destination\nname: d\nmapping:\n    # the id\n    external_id: user_id\n"
            "    email: email\n    # first_name: first_name\n# about mode\nmode: sync\n")
    assert format_yaml(text, "d.yml") == (
        "kind: destination\nname: d\n# about mode\nmode: sync\nmapping:\n  # the id\n"
        "  external_id: user_id\n  email: email\n  # first_name: first_name\n")


def test_a_folder_inside_the_project_formats_the_resource_files_there(tmp_path: Path) -> None:
    project = copy_example(tmp_path)
    dest = _misorder(project)
    model = project / "models" / "users.yml"
    model.write_text("name: users\nkind: model\nprimary_key: user_id\n")
    run = cli("fmt", str(project / "destinations"), "--check")
    assert run.exit_code == 1, run.stdout + run.stderr
    assert "braze_users.yml" in run.stdout and "models/users.yml" not in run.stdout
    assert cli("fmt", str(project / "destinations")).exit_code == 0
    assert dest.read_text() != MISORDERED
    assert model.read_text() == "name: users\nkind: model\nprimary_key: user_id\n"
