"""One error tree. Every error a user can cause is a BrazecfgError whose message says what
happened, where, and what to do next. The CLI maps them to exit codes; anything else is a bug."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Location:
    """A place in a project file; line and column are 1-based."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}"
        return self.file


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a project, with where it is and what to do."""

    location: Location
    message: str
    resource: str = ""  # "kind/name", when known
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.location}: "
        what = f"[{self.resource}] " if self.resource else ""
        nxt = f" ({self.hint})" if self.hint else ""
        return f"{where}{what}{self.message}{nxt}"


class BrazecfgError(Exception):
    """Root of every error brazecfg raises on purpose. Exit code 1 unless a subclass says."""

    exit_code = 1


class ProjectError(BrazecfgError):
    """The project files are invalid; carries every diagnostic found, not just the first."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.location, d.message))
        n = len(self.diagnostics)
        super().__init__(f"{n} problem{'s' if n != 1 else ''} found in the project")


class TemplateError(BrazecfgError):
    """A Jinja expression in a project file could not be rendered."""


class WarehouseError(BrazecfgError):
    """A warehouse could not be reached or a query failed. Never carries a password."""


class StateError(BrazecfgError):
    """The lockfile or ledger is unreadable, locked, from a newer brazecfg, or keyed differently."""


class StalePlanError(BrazecfgError):
    """A saved plan no longer matches the config, the ledger or the data."""


class BrazeError(BrazecfgError):
    """Braze answered with an error that stops the run (auth, permission, not found, exhausted retries)."""

    def __init__(self, message: str, status: int | None = None, app: str = "") -> None:
        self.status = status
        self.app = app
        super().__init__(message)


class AbortedError(BrazecfgError):
    """The user declined the plan."""

    exit_code = 1


class GuardrailError(BrazecfgError):
    """A plan trips a guardrail (plan/guardrails.py); nothing was sent."""
