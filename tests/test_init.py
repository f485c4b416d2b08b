"""``brazecfg init`` (issue 11, item 4), through the CLI: each template gives a project that
validates and plans against the emulator at once, and applies; init never overwrites."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from brazecfg.emulator import Emulator, EmulatorConfig
from tests.helpers import NOW, cli, emulator_get


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(EmulatorConfig(port=0)) as emu:
        yield emu


@pytest.mark.parametrize("template", ["sqlite", "duckdb"])
def test_init_then_validate_then_plan(template: str, tmp_path: Path, emulator: Emulator,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", emulator.url)
    monkeypatch.delenv("BRAZE_API_KEY", raising=False)
    monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
    project = tmp_path / "crm"
    made = cli("init", str(project), "--template", template)
    assert made.exit_code == 0, made.stdout + made.stderr
    checked = cli("validate", str(project))
    assert checked.exit_code == 0, checked.stdout + checked.stderr
    planned = cli("plan", str(project), "--now", NOW, "--detailed-exitcode")
    assert planned.exit_code == 2, planned.stdout + planned.stderr  # changes planned
    assert "+ 3 to create" in planned.stdout, planned.stdout
    applied = cli("apply", str(project), "--now", NOW, "--auto-approve")
    assert applied.exit_code == 0, applied.stdout + applied.stderr
    users = emulator_get(emulator.url, "users")["users"]
    assert sorted(u["external_id"] for u in users) == ["1", "2", "3"]
    again = cli("plan", str(project), "--now", NOW, "--detailed-exitcode")
    assert again.exit_code == 0, again.stdout


def test_postgres_template_validates(tmp_path: Path) -> None:
    project = tmp_path / "pg"
    assert cli("init", str(project), "-t", "postgres").exit_code == 0
    checked = cli("validate", str(project))
    assert checked.exit_code == 0, checked.stdout + checked.stderr


def test_init_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "brazecfg.yml").write_text("name: mine\n")
    run = cli("init", str(tmp_path))
    assert run.exit_code == 1
    assert "brazecfg.yml" in run.stderr and "never overwrites" in run.stderr
    assert (tmp_path / "brazecfg.yml").read_text() == "name: mine\n"
    assert not (tmp_path / "apps").exists()
