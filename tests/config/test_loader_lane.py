"""A loader that stays in its lane (issue 11, item 2), through the CLI: other tools' files,
saved plans and the state folder are never read as resources; ``paths:``/``exclude:`` in
brazecfg.yml say where resources live; the wrong folder is one clear error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from tests.helpers import NOW, cli, copy_example


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(port=0)) as emu:
        yield emu


@pytest.fixture
def project(tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", emulator.url)
    monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
    return copy_example(tmp_path)


def add_other_tools_files(project: Path) -> None:
    (project / "package.json").write_text(json.dumps(
        {"name": "site", "version": "1.0.0", "type": "module", "scripts": {"build": "vite"},
         "dependencies": {"vite": "^5"}}))
    (project / "docker-compose.yml").write_text(
        "version: '3'\nservices:\n  db:\n    image: postgres:16\n    ports: ['5432:5432']\n")
    docs = project / "docs"
    docs.mkdir()
    (docs / "mkdocs.yml").write_text("site_name: Our Braze setup\nnav:\n  - index.md\n")
    (docs / "glossary.yaml").write_text("terms:\n  - ltv: lifetime value\n---\nmore: yes\n")
    (docs / "playbook.yml").write_text("- hosts: all\n  tasks: []\n")


def test_a_project_with_a_saved_plan_and_other_tools_files_validates_and_plans(
        project: Path) -> None:
    saved = project / "plan.json"
    assert cli("plan", str(project), "--now", NOW, "--out", str(saved)).exit_code == 0
    assert saved.read_text().count("\n") > 1  # JSON Lines: not a JSON document
    (project / "plan-as-json.json").write_text(
        cli("plan", str(project), "--now", NOW, "--format", "json").stdout)
    add_other_tools_files(project)
    assert cli("apply", str(project), "--now", NOW, "--auto-approve").exit_code == 0
    assert (project / ".brazecfg").is_dir()

    checked = cli("validate", str(project))
    assert checked.exit_code == 0, checked.stdout + checked.stderr
    planned = cli("plan", str(project), "--now", NOW)
    assert planned.exit_code == 0, planned.stdout + planned.stderr
    assert "plan.json" not in planned.stdout + planned.stderr


def test_a_document_with_a_kind_is_still_checked(project: Path) -> None:
    add_other_tools_files(project)
    (project / "docs" / "broken.yml").write_text("kind: model\nname: accounts\n")
    run = cli("validate", str(project))
    assert run.exit_code != 0
    assert "docs/broken.yml" in run.stderr + run.stdout
    assert "primary_key" in run.stderr + run.stdout


def test_resources_written_as_a_list_or_a_scalar_are_still_errors(project: Path) -> None:
    (project / "models" / "listed.yml").write_text("- kind: model\n  name: a\n  primary_key: id\n")
    (project / "models" / "typo.yml").write_text("kind model\n")
    run = cli("validate", str(project))
    out = run.stdout + run.stderr
    assert run.exit_code != 0
    assert "models/listed.yml" in out and "models/typo.yml" in out


def test_a_resource_that_forgot_its_kind_is_still_an_error(project: Path) -> None:
    """Skipping it would silently drop a resource from the plan."""
    (project / "models" / "accounts.yml").write_text("name: accounts\nprimary_key: id\n")
    run = cli("validate", str(project))
    assert run.exit_code != 0
    assert "missing required key 'kind'" in run.stderr + run.stdout


def test_a_folder_without_brazecfg_yml_is_one_error(project: Path) -> None:
    (project / "brazecfg.yml").unlink()
    run = cli("validate", str(project))
    assert run.exit_code != 0
    out = run.stdout + run.stderr
    assert "no brazecfg.yml" in out
    assert out.count("missing required key") == 0
    assert "1 problem" in out or out.count("brazecfg.yml") == 1, out


def test_paths_and_exclude_choose_the_resource_files(project: Path) -> None:
    (project / "drafts").mkdir()
    (project / "drafts" / "half.yml").write_text("kind: model\nname: half\n")  # broken
    (project / "sources" / "wip.draft.yml").write_text("kind: source\n")  # broken
    assert cli("validate", str(project)).exit_code != 0
    settings = (project / "brazecfg.yml").read_text()
    (project / "brazecfg.yml").write_text(settings + "exclude: ['drafts/', '*.draft.yml']\n")
    run = cli("validate", str(project))
    assert run.exit_code == 0, run.stdout + run.stderr

    folders = sorted(p.name for p in project.iterdir() if p.is_dir() and p.name != "drafts")
    (project / "brazecfg.yml").write_text(settings + f"paths: {json.dumps(folders)}\n"
                                          "exclude: ['**/wip.*']\n")
    run = cli("validate", str(project))
    assert run.exit_code == 0, run.stdout + run.stderr

    (project / "brazecfg.yml").write_text(settings + "paths: [models, nowhere, ../x]\n")
    run = cli("validate", str(project))
    assert run.exit_code != 0
    out = run.stdout + run.stderr
    assert "'nowhere' does not exist" in out and "'../x' is outside the project folder" in out
