"""Jinja templates inside string values, rendered after parsing so line numbers survive.

Only strings containing ``{{`` or ``{%`` are rendered, in a sandbox with ``StrictUndefined`` and
three helpers: ``env(name, default=None)``, ``var(name)`` and ``vars``. Rendered values may be
secrets: callers keep the unrendered text for fingerprints and diagnostics, and error messages
here never quote an environment variable's value.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from brazecfg import redact
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


MAX_TEXT = 100_000  # characters of a template's output, or items/characters of any value
MAX_STEPS = 100_000  # loop iterations, calls and operators per template string
MAX_SECONDS = 2.0  # per template string
MAX_INT_BITS = 4096  # about 1,200 digits
_LOOP_GUARD = "_brazecfg_steps"
_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\d+|\*)?(?:\.(\d+|\*))?")
_DIGITS = re.compile(r"\d+")
ENV_PREFIXES: tuple[str, ...] = ("BRAZECFG_", "BRAZE_")


def env_allowed(name: str, listed: Collection[str] = ()) -> bool:
    """Which environment variables a project may read: ``BRAZECFG_*``, ``BRAZE_*`` and the
    names listed under ``env:`` in brazecfg.yml. A pull request that adds
    ``env('SOME_CI_SECRET')`` to a description gets an error, not the secret."""
    return name.startswith(ENV_PREFIXES) or name in listed


class _TooMuch(Exception):
    """A template exceeded a resource bound; the message says which."""


class _Budget:
    """Steps and time one template string may use."""

    def __init__(self) -> None:
        self.steps = 0
        self.deadline = time.monotonic() + MAX_SECONDS

    def step(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > MAX_STEPS:
            raise _TooMuch(f"it takes more than {MAX_STEPS:,} steps (loops, calls, operators)")
        if time.monotonic() > self.deadline:
            raise _TooMuch(f"it takes more than {MAX_SECONDS:g} seconds to render")


def _size_ok(value: Any) -> Any:
    if isinstance(value, (str, list, tuple, dict, set, frozenset, bytes)) and (
            len(value) > MAX_TEXT):
        raise _TooMuch(f"it builds a value of more than {MAX_TEXT:,} characters or items")
    if isinstance(value, int) and not isinstance(value, bool) and (
            value.bit_length() > MAX_INT_BITS):
        raise _TooMuch(f"it builds a number of more than {MAX_INT_BITS:,} bits")
    return value


def _want(size: int) -> None:
    if size > MAX_TEXT:
        raise _TooMuch(f"it would build a value of more than {MAX_TEXT:,} characters or items")


def _check_numbers(args: Sequence[Any]) -> None:
    """Widths, counts and repeats passed to a filter or method: each at most MAX_TEXT."""
    for a in args:
        if isinstance(a, (int, float)) and not isinstance(a, bool) and not abs(a) <= MAX_TEXT:
            raise _TooMuch(f"{a!r} is over the limit of {MAX_TEXT:,} for a width or count")


def _check_format(spec: Any, args: Sequence[Any]) -> None:
    if not isinstance(spec, str):
        return
    for m in _SPEC.finditer(spec):
        for part in m.groups():
            if part and part != "*" and int(part) > MAX_TEXT:
                raise _TooMuch(f"the format width {part} is over {MAX_TEXT:,}")
    _check_numbers(args)


def _estimate(name: str, obj: Any, args: Sequence[Any]) -> None:
    """Refuse before the work when a string operation would be too big."""
    _check_numbers([a for a in args if not isinstance(a, str)])
    if not isinstance(obj, str):
        return
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str):
        n = len(obj) + 1 if args[0] == "" else obj.count(args[0])
        _want(len(obj) + n * len(str(args[1])))
    elif name == "indent" and args and isinstance(args[0], (int, str)):
        width = args[0] if isinstance(args[0], int) else len(args[0])
        _want(len(obj) + (obj.count("\n") + 1) * width)
    elif name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        _want(args[0])
    elif name == "expandtabs":
        tab = args[0] if args and isinstance(args[0], int) else 8
        _want(len(obj) + obj.count("\t") * tab)
    elif name in ("format", "format_map"):
        for digits in _DIGITS.findall(obj):
            if int(digits) > MAX_TEXT:
                raise _TooMuch(f"the format width {digits} is over {MAX_TEXT:,}")


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox (templates cannot change vars or lists they are given),
    with every operator, call, filter and loop counted and bounded in size and time."""

    intercepted_binops = frozenset({"*", "**", "+", "%", "//"})

    def __init__(self) -> None:
        super().__init__(undefined=jinja2.StrictUndefined, autoescape=False,
                         keep_trailing_newline=True)
        self.budget = _Budget()
        for name, fn in list(self.filters.items()):
            self.filters[name] = self._bounded_filter(name, fn)

    def _bounded_filter(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            self.budget.step()
            values = [a for a in args if not isinstance(a, (Context, EvalContext))]
            obj, rest = (values[0], values[1:]) if values else (None, [])
            if name == "format":
                _check_format(obj, [*rest, *kwargs.values()])
            elif name == "join":
                items = list(obj) if isinstance(obj, (list, tuple, str)) else None
                if items is not None:
                    sep = str(rest[0]) if rest else str(kwargs.get("d", ""))
                    _want(sum(len(str(x)) for x in items) + len(sep) * len(items))
            else:
                _estimate(name, obj, [*rest, *kwargs.values()])
            return _size_ok(fn(*args, **kwargs))
        # Jinja passes the context/environment to filters marked for it: keep the marks.
        for attr in ("jinja_pass_arg",):
            if hasattr(fn, attr):
                setattr(run, attr, getattr(fn, attr))
        return run

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        self.budget.step()
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                    _want(len(seq) * n)
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS + 1:
                    raise _TooMuch(f"it builds a number of more than {MAX_INT_BITS:,} bits")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and abs(left) > 1 and right * left.bit_length() > MAX_INT_BITS + 1:
                raise _TooMuch(f"it builds a number of more than {MAX_INT_BITS:,} bits")
        elif operator == "+" and isinstance(left, (str, list, tuple)) and hasattr(right, "__len__"):
            _want(len(left) + len(right))
        elif operator == "%" and isinstance(left, str):
            _check_format(left, right if isinstance(right, tuple) else [right])
        return _size_ok(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any,  # noqa: N805 - Jinja's signature
             *args: Any, **kwargs: Any) -> Any:
        __self.budget.step()
        name = getattr(__obj, "__name__", "")
        owner = getattr(__obj, "__self__", None)
        if owner is None:  # Jinja wraps str.format (wrap_str_format); look through it
            owner = getattr(getattr(__obj, "__wrapped__", None), "__self__", None)
        if owner is not None and name:
            if name == "join" and isinstance(owner, str) and args:
                items = list(args[0])
                _want(sum(len(str(x)) for x in items) + len(owner) * len(items))
                args = (items, *args[1:])
            else:
                _estimate(name, owner, [*args, *kwargs.values()])
        return _size_ok(super().call(__context, __obj, *args, **kwargs))

    def steps(self, iterable: Any) -> Iterator[Any]:
        """Every ``{% for %}`` loop iterates through this (see _bound_loops)."""
        for item in iterable:
            self.budget.step()
            yield item


def _bound_loops(tree: nodes.Template) -> nodes.Template:
    """Route every for loop's iterable through the sandbox's step counter: a loop with no
    output and no call would otherwise run unbounded."""
    for loop in tree.find_all(nodes.For):
        guard = nodes.Call(nodes.Name(_LOOP_GUARD, "load"), [loop.iter], [], None, None)
        loop.iter = guard.set_lineno(loop.lineno)
    return tree


class Renderer:
    """Renders template strings with the project's vars and an environment mapping.

    ``allow`` says which environment variables may be read (default: all; the loader passes
    ``env_allowed`` with the project's ``env:`` list). Every value read is remembered by
    brazecfg.redact, so no message can show it.
    """

    def __init__(self, env: Mapping[str, str], vars: Mapping[str, Any],
                 allow: Callable[[str], bool] | None = None) -> None:
        self._environ = env
        self._vars = dict(vars)
        self._allow = allow
        self._jinja = _Sandbox()
        self._jinja.globals.clear()  # no range/dict/lipsum/cycler/joiner/namespace
        self._jinja.globals.update({"env": self._env, "var": self._var, "vars": self._vars,
                                    _LOOP_GUARD: self._jinja.steps})
        self._seen: list[str] = []  # env values read while rendering, redacted from errors
        self._env_used = False

    def _env(self, name: str, default: Any = None) -> Any:
        if not isinstance(name, str):
            raise TemplateProblem("env() takes the name of an environment variable as text")
        self._env_used = True
        if self._allow is not None and not self._allow(name):
            raise TemplateProblem(
                f"env({name!r}) is not allowed: a project reads only BRAZECFG_* and BRAZE_* "
                "variables and those listed under env: in brazecfg.yml",
                f"if this variable is meant for the project, add `env: [{name}]` to "
                "brazecfg.yml")
        if name in self._environ:
            value = self._environ[name]
            self._seen.append(value)
            redact.remember(value)
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
        self._jinja.budget = _Budget()
        try:
            if len(text) > MAX_TEXT:
                raise _TooMuch(f"the template is longer than {MAX_TEXT:,} characters")
            template = self._jinja.from_string(_bound_loops(self._jinja.parse(text)))
            out: list[str] = []
            size = 0
            for chunk in template.generate():
                size += len(chunk)
                if size > MAX_TEXT:
                    raise _TooMuch(f"its output is longer than {MAX_TEXT:,} characters")
                self._jinja.budget.step(0)
                out.append(chunk)
            return "".join(out)
        except TemplateProblem:
            raise
        except _TooMuch as e:
            raise TemplateProblem(f"template stopped: {e.args[0]}",
                                  "templates are for short values (names, URLs, keys); "
                                  "compute big values in the warehouse") from None
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
        return redact.scrub(message or "unknown error",
                            tuple(v for v in self._seen if len(v) >= 3))


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
