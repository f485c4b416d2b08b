"""Jinja templates inside string values, rendered after parsing so line numbers survive.

Only strings containing ``{{`` or ``{%`` are rendered, in a sandbox with ``StrictUndefined`` and
three helpers: ``env(name, default=None)``, ``var(name)`` and ``vars``. Rendered values may be
secrets: callers keep the unrendered text for fingerprints and diagnostics, and error messages
here never quote an environment variable's value.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from brazecfg.config.yaml import Document, PathElem
from brazecfg.errors import Diagnostic

VARS_HINT = "declare it under vars: in brazecfg.yml"


def is_template(value: object) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


class TemplateProblem(Exception):
    """A template could not be rendered; the message is safe to show."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


class _MissingEnv(Exception):
    pass


class _UnknownVar(Exception):
    pass


class Renderer:
    """Renders template strings with the project's vars and an environment mapping."""

    def __init__(self, env: Mapping[str, str], vars: Mapping[str, Any]) -> None:
        self._environ = env
        self._vars = dict(vars)
        self._jinja = SandboxedEnvironment(
            undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
        self._jinja.globals.clear()  # no range/dict/lipsum/cycler/joiner/namespace
        self._jinja.globals.update(env=self._env, var=self._var, vars=self._vars)
        self._seen: list[str] = []  # env values read while rendering, redacted from errors
        self._env_used = False

    def _env(self, name: str, default: Any = None) -> Any:
        if not isinstance(name, str):
            raise TemplateProblem("env() takes the name of an environment variable as text")
        self._env_used = True
        if name in self._environ:
            value = self._environ[name]
            self._seen.append(value)
            return value
        if default is None:
            raise _MissingEnv(name)
        return default

    def _var(self, name: str) -> Any:
        if isinstance(name, str) and name in self._vars:
            return self._vars[name]
        raise _UnknownVar(name)

    @property
    def read_env(self) -> bool:
        """Whether the last render read an environment variable (its value may be a secret)."""
        return bool(self._env_used)

    def render(self, text: str) -> str:
        """Render one template string. Raises TemplateProblem."""
        self._seen = []
        self._env_used = False
        try:
            return self._jinja.from_string(text).render()
        except TemplateProblem:
            raise
        except _MissingEnv as e:
            raise TemplateProblem(
                f"environment variable {e.args[0]} is not set; set it or give env() a default",
                f"for example {{{{ env('{e.args[0]}', 'fallback') }}}}") from None
        except _UnknownVar as e:
            name = e.args[0]
            close = difflib.get_close_matches(str(name), list(self._vars), n=1)
            maybe = f"; did you mean {close[0]!r}?" if close else ""
            raise TemplateProblem(f"unknown variable {name!r}{maybe}", VARS_HINT) from None
        except jinja2.TemplateSyntaxError as e:
            line = f" (line {e.lineno} of the template)" if "\n" in text.strip() else ""
            raise TemplateProblem(f"template syntax error{line}: {self._safe(e.message)}",
                                  "fix the Jinja expression") from None
        except jinja2.UndefinedError as e:
            raise TemplateProblem(
                f"template error: {self._safe(e.message)}",
                "templates can use env('NAME', default), var('name') and vars.name; "
                + VARS_HINT.replace("it", "variables")) from None
        except jinja2.TemplateError as e:  # SecurityError and the rest
            raise TemplateProblem(f"template error: {self._safe(e.message)}",
                                  "fix the Jinja expression") from None
        except Exception as e:  # a template author's mistake: never a traceback
            raise TemplateProblem(
                f"template error: {type(e).__name__}: {self._safe(str(e))}",
                "fix the Jinja expression") from None

    def _safe(self, message: str | None) -> str:
        text = message or "unknown error"
        for secret in sorted(set(self._seen), key=len, reverse=True):
            if len(secret) >= 3:
                text = text.replace(secret, "***")
        return text


@dataclass
class Rendered:
    value: Any
    diagnostics: list[Diagnostic] = field(default_factory=list)
    failed: set[tuple[PathElem, ...]] = field(default_factory=set)  # paths left unrendered
    # The value with only the templates that read no environment variable rendered (vars and
    # literals are committed, so not secret): what fingerprints and config diffs see, so a
    # changed var changes the fingerprint while an env() value (a possible secret) never does.
    public: Any = None


def render_document(doc: Document, renderer: Renderer, *, resource: str = "",
                    value: Any = None, base: tuple[PathElem, ...] = ()) -> Rendered:
    """A copy of the document's value (or of ``value`` found at ``base``) with every template
    string rendered; a string that fails keeps its text and gets a diagnostic at its location."""
    out = Rendered(None)
    public: dict[tuple[PathElem, ...], Any] = {}

    def walk(v: Any, path: tuple[PathElem, ...]) -> Any:
        if isinstance(v, dict):
            return {k: walk(x, (*path, k)) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x, (*path, i)) for i, x in enumerate(v)]
        if is_template(v):
            try:
                rendered = renderer.render(v)
                if not renderer.read_env:
                    public[path] = rendered
                return rendered
            except TemplateProblem as p:
                out.diagnostics.append(
                    Diagnostic(doc.location(path), p.message, resource=resource, hint=p.hint))
                out.failed.add(path)
        return v

    def keep(v: Any, path: tuple[PathElem, ...]) -> Any:
        if isinstance(v, dict):
            return {k: keep(x, (*path, k)) for k, x in v.items()}
        if isinstance(v, list):
            return [keep(x, (*path, i)) for i, x in enumerate(v)]
        return public.get(path, v)

    start = doc.value if value is None and not base else value
    out.value = walk(start, base)
    out.public = keep(start, base)
    return out
