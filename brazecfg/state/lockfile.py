"""The lockfile: what the last apply made true, readable in a pull request.

Deterministic JSON (sorted keys, no timestamps), no secrets, no personal data: resource
fingerprints and, per destination, how many records Braze confirmed. Written atomically
after an apply; plan compares the config with it to show config changes (+ ~ -).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brazecfg import __version__
from brazecfg.errors import StateError
from brazecfg.state.atomic import write_atomic

LOCKFILE_VERSION = 1


@dataclass
class Lockfile:
    resources: dict[str, str] = field(default_factory=dict)  # "kind/name" -> fingerprint
    declared: dict[str, dict[str, Any]] = field(default_factory=dict)  # "kind/name" -> top-level key hashes
    destinations: dict[str, dict[str, int]] = field(default_factory=dict)
    # The state this lockfile was written with (backend, state id): a plan against another
    # state, or none, while the lockfile says records were confirmed is refused.
    state: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        doc = {
            "version": LOCKFILE_VERSION,
            "brazecfg": __version__,
            "resources": {k: {"fingerprint": v, "keys": self.declared.get(k, {})}
                          for k, v in sorted(self.resources.items())},
            "destinations": {k: dict(sorted(v.items()))
                             for k, v in sorted(self.destinations.items())},
            "state": dict(sorted(self.state.items())),
        }
        return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def read_lockfile(path: Path) -> Lockfile:
    if not path.exists():
        return Lockfile()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StateError(f"the lockfile {path} is unreadable ({exc}); restore it from git") from None
    version = doc.get("version") if isinstance(doc, dict) else None
    if not isinstance(version, int):
        raise StateError(f"the lockfile {path} has no version; restore it from git")
    if version > LOCKFILE_VERSION:
        raise StateError(f"the lockfile {path} was written by a newer brazecfg "
                         f"(version {version}); upgrade brazecfg")
    resources = doc.get("resources", {})
    return Lockfile(
        resources={k: str(v.get("fingerprint", "")) for k, v in resources.items()},
        declared={k: dict(v.get("keys", {})) for k, v in resources.items()},
        destinations={k: dict(v) for k, v in doc.get("destinations", {}).items()},
        state={k: str(v) for k, v in (doc.get("state") or {}).items()},
    )


def write_lockfile(path: Path, lock: Lockfile) -> None:
    write_atomic(path, lock.to_json())
