"""Where a project's state lives: the lockfile at the root, the rest in the state folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from brazecfg.model.resources import ProjectSettings


@dataclass(frozen=True)
class StatePaths:
    root: Path
    lockfile: Path
    state_dir: Path
    ledger: Path
    apply_lock: Path

    @classmethod
    def of(cls, settings: ProjectSettings) -> StatePaths:
        root = Path(settings.root)
        state_dir = root / settings.state_dir
        return cls(root, root / settings.lockfile, state_dir, state_dir / "ledger.sqlite",
                   state_dir / "apply.lock")
