"""Shared test helpers: run the CLI in-process, copy the example project, talk to the emulator."""

from __future__ import annotations

import json
import shutil
import sqlite3
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from brazecfg.cli.main import app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "project"
NOW = "2026-11-01T00:00:00Z"  # fixed anchor for relative dates


@dataclass
class Run:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def cli(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> Run:
    runner = CliRunner()
    result = runner.invoke(app, ["--no-color", *args], env=env, input=input,
                           catch_exceptions=False)
    return Run(result.exit_code, result.stdout, result.stderr)


def copy_example(dest: Path) -> Path:
    """The example project as committed: without what a run of scripts/demo.sh leaves in
    it (its state, warehouse file and lockfile, all gitignored), which made the tests that
    copy it fail after the demo ("the lockfile says Braze confirmed 12 records")."""
    target = dest / "project"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(
        ".brazecfg", "warehouse.db", "brazecfg.lock.json"))
    return target


def sql(project: Path, statement: str, params: tuple[Any, ...] = ()) -> None:
    """Change the example warehouse (built from warehouse.sql on first use)."""
    db = project / "warehouse.db"
    if not db.exists():
        con = sqlite3.connect(db)
        con.executescript((project / "warehouse.sql").read_text())
        con.close()
    con = sqlite3.connect(db)
    with con:
        con.execute(statement, params)
    con.close()


def emulator_get(url: str, what: str) -> Any:
    with urllib.request.urlopen(f"{url}/_emulator/{what}", timeout=10) as r:
        return json.load(r)


def emulator_post(url: str, what: str) -> Any:
    req = urllib.request.Request(f"{url}/_emulator/{what}", data=b"{}", method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def settle_stamps(project: Path) -> None:
    """Make the example's updated_at stamps look like a real warehouse's: distinct, with one
    newest row (user 12, untouched by the tests). The incremental watermark is the warehouse's
    own newest stamp minus an overlap, so rows at that stamp are read again on the next run
    (the safe side); the example's shared stamps would make every row "newest". Drops the
    stamping triggers: later changes choose their own stamps."""
    for statement in ("DROP TRIGGER IF EXISTS users_touch", "DROP TRIGGER IF EXISTS purchases_touch",
                      "DROP TRIGGER IF EXISTS purchases_stamp",
                      "UPDATE purchases SET updated_at = '2026-01-05 09:00:00'",
                      "UPDATE users SET updated_at = '2026-01-06 00:00:00' WHERE id = 12"):
        sql(project, statement)


def unhashed(project: Path) -> set[str]:
    """Ids of the records whose state (the local ledger) holds no record hash: a plan that
    compares record hashes reads each of them by key."""
    import sqlite3

    con = sqlite3.connect(project / ".brazecfg" / "ledger.sqlite")
    try:
        return {r[0] for r in con.execute(
            "SELECT external_id FROM records WHERE row_hash IS NULL")}
    finally:
        con.close()


def emulated_example(tmp_path: Path, monkeypatch: Any) -> Iterator[Path]:
    """A copy of the example project with a running emulator its braze app points at, and
    no hash key from the environment (the project makes its own): the body of the
    ``project`` fixture of the incremental-read tests."""
    from brazecfg.emulator import Emulator, EmulatorConfig

    with Emulator(EmulatorConfig(port=0)) as emu:
        monkeypatch.setenv("BRAZE_REST_ENDPOINT", emu.url)
        monkeypatch.delenv("BRAZECFG_HASH_KEY", raising=False)
        yield copy_example(tmp_path)


def plan_json(project: Path, *extra: str) -> dict[str, Any]:
    """The first destination's plan, as ``plan --format json`` gives it at ``NOW``; the plan
    must succeed."""
    out = cli("plan", str(project), "--now", NOW, "--format", "json", *extra)
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)["destinations"][0]  # type: ignore[no-any-return]


def count_split_reads(monkeypatch: Any) -> list[int]:
    """SQLite's full reads with every row sampled for their range bounds, and the number of
    ranges of each read that was split (engine.SQLITE_SPLIT_ROWS decides whether one is)."""
    from brazecfg.warehouse import engine

    seen: list[int] = []
    real = engine.read_ahead

    def spy(makers: Any, **kw: Any) -> Iterator[Any]:
        seen.append(len(makers))
        return real(makers, **kw)

    monkeypatch.setattr(engine, "read_ahead", spy)
    monkeypatch.setattr(engine, "SQLITE_SPLIT_SAMPLE", 1)
    return seen
