"""open_state: the one way plan, apply and the state commands reach a project's state."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from brazecfg.model.resources import Project
from brazecfg.state.backends import Backend, backend_of
from brazecfg.state.ledger import Ledger
from brazecfg.state.lock import lease


def open_state(project: Project, *, writable: bool, backend: Backend | None = None) -> Ledger:
    """The state brazecfg.yml chooses. Read-only: a missing state reads as empty and nothing
    is created. Writable: created (and migrated) as needed; take the lease before writing
    (``locked_state``)."""
    return Ledger(backend=backend or backend_of(project), writable=writable)


@contextmanager
def locked_state(project: Project, command: str, *, timeout: float = 0.0,
                 on_wait: Callable[[str], None] | None = None,
                 backend: Backend | None = None) -> Iterator[Ledger]:
    """The state opened for writing, under its lease, for the block."""
    with open_state(project, writable=True, backend=backend) as ledger, \
            lease(ledger, command, timeout=timeout, on_wait=on_wait):
        yield ledger
