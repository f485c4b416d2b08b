"""Help text shared by the command modules (kept apart so importing it costs nothing)."""

from __future__ import annotations


def _example(command: str) -> str:
    """A command's help epilog: one short example, as people copy it from ``--help``."""
    return f"Example:  {command}"
