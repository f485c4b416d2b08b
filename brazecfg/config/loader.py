"""Project files -> a validated, typed Project, or a ProjectError listing every problem.

The steps, each collecting diagnostics instead of stopping at the first:

1. read ``brazecfg.yml`` (or .yaml/.json): project settings and vars; without one, stop with
   that one error (the wrong folder, not hundreds of knock-ons);
2. find every other ``*.yml``/``*.yaml``/``*.json`` below ``paths:`` (default: the root) that
   no ``exclude:`` pattern matches (hidden folders, the state folder, the lockfile,
   ``node_modules``, ``target`` and saved plans always skipped) and parse each into documents;
3. a file none of whose documents has a ``kind`` key, and none of which looks like a resource
   (a ``name`` and only keys some kind has), is another tool's file (package.json,
   docker-compose.yml, a plan written with ``--format json``) and is skipped;
4. per document: check ``kind``, render templates, validate against ``schemas/<kind>.json``;
5. build frozen resources from the documents that passed, then run the cross-reference checks.

This module is the only one that reads project files.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from brazecfg.config.templating import Renderer, env_allowed, is_template, render_document
from brazecfg.config.yaml import Document, PathElem, load_file
from brazecfg.errors import Diagnostic, Location, ProjectError
from brazecfg.model.build import build_resource, build_settings
from brazecfg.model.checks import ANY_KIND, check_resources
from brazecfg.model.resources import KINDS, Project, ProjectSettings, Resource
from brazecfg.schema import load_schema, validate
from brazecfg.schema.diagnostics import did_you_mean, path_text

PROJECT_FILES: tuple[str, ...] = ("brazecfg.yml", "brazecfg.yaml", "brazecfg.json")
EXTENSIONS: frozenset[str] = frozenset({".yml", ".yaml", ".json"})
SKIP_DIRS: frozenset[str] = frozenset({".brazecfg", "node_modules", "target", "__pycache__"})
SAVED_PLAN_KIND = "brazecfg-saved-plan"  # plan/saved.py's header kind (not imported: no cycle)
SNIFF_BYTES = 1024 * 1024  # how far into a .json file to look for a saved plan's header


def load_project(root: str | Path, *, env: Mapping[str, str] | None = None) -> Project:
    """Load and validate the project at ``root``.

    ``env`` is the environment templates read with ``env()`` (default: ``os.environ``).
    Raises ProjectError with every problem found (schema, references, templates).
    Diagnostics name files as ``root/relative/path``, with ``root`` as given.
    """
    return _Loader(Path(root), os.environ if env is None else env).load()


def resource_files(root: str | Path) -> list[tuple[Path, str, list[Diagnostic]]]:
    """The files ``load_project`` reads as resources, each with its display name and the
    problems found reading it (for ``brazecfg fmt``: the same lane, so it never touches
    package.json, a saved plan or the state). Raises ProjectError without a brazecfg.yml."""
    loader = _Loader(Path(root), os.environ)
    _, skip = loader.load_settings()
    if not any((loader.root / n).is_file() for n in PROJECT_FILES):
        raise ProjectError(loader.diagnostics)
    loader.diagnostics = []  # the settings' own problems are `validate`'s to report
    out: list[tuple[Path, str, list[Diagnostic]]] = []
    for path in loader.resource_files(skip):
        if _is_saved_plan(path):
            continue
        docs, diags = load_file(path, loader.display(path))
        if diags or not _not_resources(docs):
            out.append((path, loader.display(path), diags))
    if loader.diagnostics:  # paths: that do not exist, unreadable folders
        raise ProjectError(loader.diagnostics)
    return out


class _Loader:
    def __init__(self, root: Path, env: Mapping[str, str]) -> None:
        self.root = root
        self.env = env
        self.env_names: frozenset[str] = frozenset()  # brazecfg.yml's env: allow-list
        self.raw_vars: dict[str, Any] = {}
        self.diagnostics: list[Diagnostic] = []
        self.docs: dict[int, Document] = {}  # id(resource) -> its document, for locations
        self.paths: list[tuple[str, Location | None]] = [(".", None)]  # brazecfg.yml's paths:
        self.exclude: list[re.Pattern[str]] = []  # brazecfg.yml's exclude:, compiled

    def display(self, path: Path) -> str:
        return (self.root / path.relative_to(self.root)).as_posix()

    def load(self) -> Project:
        if not self.root.is_dir():
            raise ProjectError([Diagnostic(Location(self.root.as_posix()),
                                           "project folder not found",
                                           hint="pass the folder that holds brazecfg.yml")])
        settings, skip = self.load_settings()
        if settings is None and not any((self.root / n).is_file() for n in PROJECT_FILES):
            # The wrong folder: one error, not a problem per file that happens to be here.
            raise ProjectError(self.diagnostics)
        # With invalid settings, resources still render with the vars as written, so a
        # declared var is not called "unknown" (a knock-on of the real error).
        renderer = Renderer(self.env, settings.vars if settings else self.raw_vars,
                            allow=self.allow)
        resources: list[Resource] = []
        known: dict[str, set[str]] = defaultdict(set)
        for path in self.resource_files(skip):
            if _is_saved_plan(path):
                continue
            docs, diags = load_file(path, self.display(path))
            self.diagnostics += diags
            if diags:
                known[ANY_KIND] |= _names_in(path)  # what the broken part declares
            elif _not_resources(docs):
                continue
            for doc in docs:
                resource = self.load_document(doc, renderer, known)
                if resource is not None:
                    self.docs[id(resource)] = doc
                    resources.append(resource)
        self.diagnostics += check_resources(resources, known=known, locate=self.locate)
        if self.diagnostics or settings is None:
            raise ProjectError(self.diagnostics)
        return _project(settings, resources)

    def allow(self, name: str) -> bool:
        return env_allowed(name, self.env_names)

    def locate(self, resource: Resource, path: Sequence[PathElem]) -> Location:
        doc = self.docs.get(id(resource))
        if doc is None:
            return resource.where(str(path[0])) if path else resource.location
        return doc.location(path, at="key")

    # --- project settings -----------------------------------------------------------------

    def load_settings(self) -> tuple[ProjectSettings | None, set[Path]]:
        """The settings (None when invalid) and the files that are not resource files."""
        found = [self.root / n for n in PROJECT_FILES if (self.root / n).is_file()]
        # Never resource files, even when the settings are invalid (else the lockfile would be
        # read as a resource: a knock-on error).
        skip = {*found, self.root / "brazecfg.lock.json"}
        if not found:
            self.diagnostics.append(Diagnostic(
                Location(self.display(self.root / "brazecfg.yml")),
                "no project file: this folder has no brazecfg.yml",
                hint="create brazecfg.yml with at least `name: my_project`"))
            return None, skip
        path = found[0]
        for extra in found[1:]:
            self.diagnostics.append(Diagnostic(
                Location(self.display(extra)), f"a second project file next to {path.name}",
                hint="keep one project file"))
        docs, diags = load_file(path, self.display(path))
        self.diagnostics += diags
        if diags:
            return None, skip
        if len(docs) != 1 or not isinstance(docs[0].value, dict):
            where = docs[1].location() if len(docs) > 1 else (
                docs[0].location() if docs else Location(self.display(path)))
            self.diagnostics.append(Diagnostic(
                where, "the project file must hold one mapping (name, vars, state)",
                hint="write `name: my_project` and, optionally, vars: and state:"))
            return None, skip
        doc = docs[0]
        listed = doc.value.get("env")
        if isinstance(listed, list):
            self.env_names = frozenset(n for n in listed if isinstance(n, str))
        raw_vars = doc.value.get("vars")
        self.raw_vars = dict(raw_vars) if isinstance(raw_vars, dict) else {}
        state = doc.value.get("state")
        if isinstance(state, dict) and isinstance(state.get("lockfile"), str):
            skip.add(self.root / state["lockfile"])
        if isinstance(state, dict) and isinstance(state.get("dir"), str):
            skip.add(self.root / state["dir"])
        self.read_paths(doc)
        # vars may read the environment (env()), not other vars
        rendered = render_document(doc, Renderer(self.env, {}, allow=self.allow))
        problems = rendered.diagnostics + validate(doc, rendered.value, "project",
                                                   skip=rendered.failed)
        if not problems:
            problems = self.check_state_paths(doc, rendered.value)
        self.diagnostics += problems
        if problems:
            return None, skip
        settings = build_settings(rendered.value, self.root)
        skip.add(self.root / settings.lockfile)
        skip.add(self.root / settings.state_dir)
        return settings, skip

    def check_state_paths(self, doc: Document, value: dict[str, Any]) -> list[Diagnostic]:
        """state.dir must be a folder (or not exist yet), state.lockfile a file: found here
        with a location, not as FileExistsError in the middle of an apply."""
        state = value.get("state") or {}
        out: list[Diagnostic] = []
        for key, want_dir in (("dir", True), ("lockfile", False)):
            if not isinstance(state.get(key), str):
                continue
            try:
                path = self.root / state[key]
                bad = (path.exists() and not path.is_dir()) if want_dir else path.is_dir()
                inside = path.resolve().is_relative_to(self.root.resolve())
            except OSError as e:
                out.append(Diagnostic(doc.location(["state", key]),
                                      f"state.{key} cannot be used: {e.strerror or e}",
                                      hint="give a short path inside the project folder"))
                continue
            if bad:
                what = "a file" if want_dir else "a folder"
                out.append(Diagnostic(doc.location(["state", key]),
                                      f"state.{key} {state[key]!r} is {what}",
                                      hint="point it at a folder" if want_dir
                                      else "point it at a file"))
            elif not inside:
                out.append(Diagnostic(doc.location(["state", key]),
                                      f"state.{key} {state[key]!r} is outside the project "
                                      "folder", hint="keep the state inside the project"))
        return out

    def read_paths(self, doc: Document) -> None:
        """paths: and exclude: as written (used even when other settings are invalid, so a
        typo elsewhere does not bring excluded files back as knock-on errors)."""
        paths, exclude = doc.value.get("paths"), doc.value.get("exclude")
        if isinstance(paths, list) and paths and all(isinstance(p, str) and p for p in paths):
            self.paths = [(p, doc.location(["paths", i])) for i, p in enumerate(paths)]
        if isinstance(exclude, list):
            self.exclude = [_glob(p) for p in exclude if isinstance(p, str) and p.strip("/")]

    # --- resource files -------------------------------------------------------------------

    def excluded(self, path: Path) -> bool:
        rel = path.relative_to(self.root).as_posix()
        return any(p.fullmatch(rel) for p in self.exclude)

    def resource_files(self, skip: set[Path]) -> list[Path]:
        out: list[Path] = []
        seen: set[Path] = set()
        for written, where in self.paths:
            start = self.root / written
            try:
                inside = start.resolve().is_relative_to(self.root.resolve())
                exists = start.exists()
            except OSError:
                inside = exists = False
            if not inside or not exists:
                self.diagnostics.append(Diagnostic(
                    where or Location(self.display(self.root)),
                    f"paths: {written!r} " + ("is outside the project folder" if not inside
                                               else "does not exist"),
                    hint="list folders or files inside the project folder, relative to it"))
                continue
            for path in self.files_under(start.resolve().relative_to(self.root.resolve()),
                                         skip):
                if path not in seen:
                    seen.add(path)
                    out.append(path)
        return out

    def files_under(self, rel: Path, skip: set[Path]) -> list[Path]:
        """The resource files at or below ``root/rel``."""
        out: list[Path] = []
        start = self.root / rel
        if start.is_file():
            return [] if start in skip or self.excluded(start) else [start]

        def on_error(e: OSError) -> None:
            where = Path(e.filename) if e.filename else self.root
            self.diagnostics.append(Diagnostic(
                Location(self.display(where) if where.is_relative_to(self.root) else str(where)),
                f"cannot read the folder: {e.strerror or e}", hint="check its permissions"))

        for folder, dirs, files in os.walk(start, onerror=on_error):
            here = Path(folder)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS
                             and here / d not in skip and not self.excluded(here / d))
            for name in sorted(files):
                path = here / name
                if (not name.startswith(".") and path.suffix.lower() in EXTENSIONS
                        and path not in skip and not self.excluded(path)):
                    out.append(path)
        return out

    def load_document(self, doc: Document, renderer: Renderer,
                      known: dict[str, set[str]]) -> Resource | None:
        """One document -> a resource, or None after adding its diagnostics."""
        value = doc.value
        if not isinstance(value, dict):
            what = "a list" if isinstance(value, list) else "a single value"
            self.diagnostics.append(Diagnostic(
                doc.location(), f"a resource must be a mapping with kind and name, not {what}",
                hint="write one resource per YAML document (separate them with ---) or per "
                     "JSON object"))
            return None
        kind, name = value.get("kind"), value.get("name")
        label = f"{kind}/{name}" if isinstance(kind, str) and isinstance(name, str) else ""
        if kind is None or kind == "":
            there = "kind" in value
            self.diagnostics.append(Diagnostic(
                doc.location(["kind"], at="key") if there else doc.location(),
                "kind is empty" if there else "missing required key 'kind'", resource=label,
                hint=f"{'write' if there else 'add'} kind: one of {', '.join(KINDS)}"))
            if isinstance(name, str):
                known[ANY_KIND].add(name)
            return None
        if not isinstance(kind, str) or kind not in KINDS:
            self.diagnostics.append(Diagnostic(
                doc.location(["kind"]),
                f"unknown kind {kind!r}{did_you_mean(str(kind), KINDS)}",
                hint=f"kind is one of {', '.join(KINDS)}"))
            if isinstance(name, str):  # references to it are knock-ons of the misspelt kind
                known[ANY_KIND].add(name)
            return None
        if isinstance(name, str):
            known[kind].add(name)  # even if invalid below: no "unknown" noise for references
        if not doc.ok:
            return None
        fixed = [Diagnostic(doc.location(path), f"{path_text(path)} cannot be a template",
                            resource=label,
                            hint="names and references are written out, so they never depend "
                                 "on the environment")
                 for path in _name_paths(value) if is_template(doc.at(path))]
        if fixed:
            self.diagnostics += fixed
            return None
        rendered = render_document(doc, renderer, resource=label)
        problems = rendered.diagnostics + validate(doc, rendered.value, kind, resource=label,
                                                   skip=rendered.failed)
        self.diagnostics += problems
        if problems:
            return None
        key_locations = {k: doc.location([k], at="key") for k in value}
        return build_resource(rendered.value, rendered.public, doc.location(), key_locations)


def _glob(pattern: str) -> re.Pattern[str]:
    """An exclude pattern as a regex over root-relative POSIX paths, gitignore-like: ``*``
    and ``?`` stay within one name, ``**`` spans folders, a pattern without ``/`` matches a
    name at any depth, and a match on a folder excludes everything below it."""
    pattern = pattern.strip("/")
    if pattern.startswith("./"):
        pattern = pattern[2:]
    anywhere = "/" not in pattern
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out, i = out + re.escape("["), i + 1
            else:
                out, i = out + fnmatch.translate(pattern[i:end + 1])[4:-3], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(("(?:.*/)?" if anywhere else "") + out)


def _is_saved_plan(path: Path) -> bool:
    """A saved plan (``plan --out FILE``, JSON Lines) is never a resource file. Its first line
    is a JSON object whose ``kind`` is the saved-plan kind; only a bounded prefix is read."""
    if path.suffix.lower() != ".json":
        return False
    try:
        with path.open("rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError:
        return False  # load_file reports it
    first = head.split(b"\n", 1)[0].decode("utf-8", "replace")
    return first.lstrip().startswith("{") and f'"kind":"{SAVED_PLAN_KIND}"' in first


_SPECIFIC: dict[str, frozenset[str]] = {}


def _kind_keys() -> dict[str, frozenset[str]]:
    """Each kind's top-level keys, from its schema (read once)."""
    if not _SPECIFIC:
        for kind in KINDS:
            _SPECIFIC[kind] = frozenset(load_schema(f"{kind}.json").get("properties", {}))
    return _SPECIFIC


def _not_resources(docs: list[Document]) -> bool:
    """True for a file that is clearly another tool's: no document has a ``kind`` key, and
    none looks like a resource that forgot it (a string ``name`` and only keys some kind
    has). A resource file with a forgotten kind is still reported, so a resource never
    silently drops out of the plan."""
    if not docs:
        return False
    for doc in docs:
        items = doc.value if isinstance(doc.value, list) else [doc.value]
        if not all(isinstance(v, (dict, list)) for v in items):
            return False  # a scalar: perhaps a resource mistyped ("kind model"), so reported
        for value in items:
            if not isinstance(value, dict):
                continue
            if "kind" in value:
                return False  # a list of resources, or a resource: checked and reported
            if isinstance(value.get("name"), str) and any(
                    set(value) <= keys for keys in _kind_keys().values()):
                return False
    return True


_NAME = re.compile(r"""^\s*(?:-\s*)?["']?name["']?\s*:\s*["']?([A-Za-z0-9_.\-]+)""", re.M)


def _names_in(path: Path) -> set[str]:
    """Names a file that could not be parsed (or not fully) seems to declare, found by a
    plain text scan: references to them are knock-ons, not errors of their own."""
    try:
        with path.open("rb") as f:
            text = f.read(1024 * 1024).decode("utf-8", "replace")
    except OSError:
        return set()
    return set(_NAME.findall(text))


def _name_paths(value: dict[str, Any]) -> list[tuple[PathElem, ...]]:
    """Where a resource holds a name or a reference to another resource."""
    paths: list[tuple[PathElem, ...]] = [
        (k,) for k in ("kind", "name", "app", "model", "source", "primary_key")]
    for key, fields in (("rules", ("property", "group")), ("events", ("source",))):
        items = value.get(key)
        for i, _ in enumerate(items if isinstance(items, list) else []):
            paths += [(key, i, f) for f in fields]
    for key in ("mapping", "custom_attributes"):
        section = value.get(key)
        paths += [(key, k) for k in (section if isinstance(section, dict) else {})]
    return paths


def _project(settings: ProjectSettings, resources: list[Resource]) -> Project:
    by_kind: dict[str, dict[str, Any]] = {k: {} for k in KINDS}
    for r in resources:
        by_kind[r.kind][r.name] = r
    return Project(settings=settings, apps=by_kind["app"], models=by_kind["model"],
                   sources=by_kind["source"], properties=by_kind["property"],
                   groups=by_kind["group"], destinations=by_kind["destination"])
