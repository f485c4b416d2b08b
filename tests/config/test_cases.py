"""Acceptance cases: each folder under cases/ is a project; expected.txt holds the exact
diagnostics `brazecfg validate` prints for it (empty: the project is valid)."""

from __future__ import annotations

from pathlib import Path

import pytest

from brazecfg.config.loader import load_project
from brazecfg.errors import ProjectError

CASES = Path(__file__).parent / "cases"
SECRETS = {"BRAZE_API_KEY": "s3cr3t-api-key-value", "PG_PASSWORD": "hunter2-password"}


def diagnostics_of(folder: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.chdir(folder)
    try:
        load_project(".", env=SECRETS)
    except ProjectError as e:
        return [str(d) for d in e.diagnostics]
    return []


@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_case(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = (CASES / case / "expected.txt").read_text(encoding="utf-8").splitlines()
    got = diagnostics_of(CASES / case, monkeypatch)
    assert got == expected
    for secret in SECRETS.values():
        assert not any(secret in line for line in got)


def test_paths_are_shown_under_the_root_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CASES)
    with pytest.raises(ProjectError) as info:
        load_project("unknown_kind", env={})
    assert str(info.value.diagnostics[0]).startswith("unknown_kind/more.yml:1:7: ")
    assert str(info.value) == "2 problems found in the project"


def test_missing_project_folder(tmp_path: Path) -> None:
    with pytest.raises(ProjectError) as info:
        load_project(tmp_path / "nope")
    assert info.value.diagnostics[0].message == "project folder not found"


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    project = load_project(CASES / "valid")
    assert project.apps["braze"].options["api_key"] == SECRETS["BRAZE_API_KEY"]


def test_example_project_loads() -> None:
    project = load_project(Path(__file__).parents[2] / "examples" / "project", env={})
    assert project.settings.name == "example"
    assert project.destinations["braze_users"].mapping["external_id"] == "user_id"
