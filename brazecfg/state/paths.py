"""Where a project's local files live: the lockfile at the root; the state folder holds the
local hash key and, with the local backend, the ledger (backends.py chooses the backend)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from brazecfg.model.resources import ProjectSettings


@dataclass(frozen=True)
class StatePaths:
    root: Path
    lockfile: Path
    state_dir: Path
    ledger: Path  # the local backend's file

    @classmethod
    def of(cls, settings: ProjectSettings) -> StatePaths:
        root = Path(settings.root)
        state_dir = root / settings.state_dir
        return cls(root, root / settings.lockfile, state_dir, state_dir / "ledger.sqlite")
