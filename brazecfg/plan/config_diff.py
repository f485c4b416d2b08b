"""Config changes (+ ~ -): the project's resources against the lockfile of the last apply."""

from __future__ import annotations

import hashlib
from typing import Any

from brazecfg.model.resources import Project
from brazecfg.plan.definition import ConfigAction, ConfigChange
from brazecfg.state.hashing import canonical
from brazecfg.state.lockfile import Lockfile


def key_hashes(declared: dict[str, Any]) -> dict[str, str]:
    """A short hash per top-level key of a declared (unrendered) resource."""
    return {k: hashlib.sha256(canonical(v).encode()).hexdigest()[:12]
            for k, v in sorted(declared.items()) if k not in ("kind", "name")}


def diff_config(project: Project, fingerprints: dict[str, str], lock: Lockfile
                ) -> tuple[ConfigChange, ...]:
    changes: list[ConfigChange] = []
    current = {r.ref: r for r in project.all()}
    for ref in sorted(set(current) | set(lock.resources)):
        if ref not in lock.resources:
            changes.append(ConfigChange(ConfigAction.CREATE, ref))
        elif ref not in current:
            changes.append(ConfigChange(ConfigAction.DELETE, ref))
        elif fingerprints.get(ref) != lock.resources[ref]:
            new = key_hashes(dict(current[ref].declared))
            old = lock.declared.get(ref, {})
            keys = tuple(sorted(k for k in set(new) | set(old) if new.get(k) != old.get(k)))
            # An empty key list means only a parent changed (the fingerprint chains parents).
            changes.append(ConfigChange(ConfigAction.UPDATE, ref, keys))
    return tuple(changes)


def config_fingerprint(fingerprints: dict[str, str]) -> str:
    return hashlib.sha256(canonical(fingerprints).encode()).hexdigest()[:16]
