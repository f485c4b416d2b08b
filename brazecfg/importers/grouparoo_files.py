"""Reading a Grouparoo code-config directory: every ``**/*.json`` file (JSON5: comments and
trailing commas allowed) into one flat list of objects, each with the file and line it came
from, so every translation problem can be reported where the user will look for it.

Grouparoo also reads ``**/*.js`` files (modules that export objects); brazecfg does not run
JavaScript, so those are reported at their file, never skipped in silence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brazecfg.config.yaml import Document, PathElem, decode, parse_json
from brazecfg.errors import Diagnostic, Location

CLASSES = ("app", "model", "source", "schedule", "property", "group", "destination",
           "setting", "apikey", "team", "teammember", "record", "profile")


@dataclass(frozen=True)
class GObject:
    """One Grouparoo config object: its class (lower case), id, data and where it was read."""

    cls: str
    id: str
    data: dict[str, Any]
    doc: Document = field(repr=False, compare=False)

    def loc(self, *path: PathElem) -> Location:
        return self.doc.location(path)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    @property
    def options(self) -> dict[str, Any]:
        opts = self.data.get("options")
        return opts if isinstance(opts, dict) else {}


@dataclass
class ConfigDir:
    """What was read: the objects, JS files that could not be read, and hard errors."""

    root: Path  # the folder locations are relative to
    objects: list[GObject] = field(default_factory=list)
    js_files: list[Location] = field(default_factory=list)
    errors: list[Diagnostic] = field(default_factory=list)

    def of(self, cls: str) -> list[GObject]:
        return [o for o in self.objects if o.cls == cls]

    def by_id(self, cls: str) -> dict[str, GObject]:
        return {o.id: o for o in self.of(cls)}


def strip_json5(text: str) -> str:
    """JSON5's comments and trailing commas replaced by spaces (newlines kept), so the strict
    JSON parser reads the rest and every line and column stays where it was."""
    out = list(text)
    i, n = 0, len(text)
    last_comma: int | None = None
    while i < n:
        c = text[i]
        if c == '"':
            last_comma = None
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            continue
        if c == "/" and i + 1 < n and text[i + 1] == "/":
            while i < n and text[i] != "\n":
                out[i] = " "
                i += 1
            continue
        if c == "/" and i + 1 < n and text[i + 1] == "*":
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            for j in range(i, end):
                if out[j] != "\n":
                    out[j] = " "
            i = end
            continue
        if c == ",":
            last_comma = i
        elif c in "}]":
            if last_comma is not None:
                out[last_comma] = " "
            last_comma = None
        elif not c.isspace():
            last_comma = None
        i += 1
    return "".join(out)


def config_root(directory: Path) -> Path:
    """A Grouparoo project keeps its config in ``config/``; the folder itself is accepted too."""
    inner = directory / "config"
    return inner if inner.is_dir() else directory


_ID = re.compile(r"^[A-Za-z0-9_\-]+$")


def read_config_dir(directory: Path) -> ConfigDir:
    """Every object of the directory, in file order. Never raises for bad input: problems
    become diagnostics at their file:line:column."""
    root = directory
    result = ConfigDir(root)
    base = config_root(directory)
    files = sorted(p for p in base.rglob("*") if p.is_file() and p.suffix.lower() in (".json", ".js")
                   and "node_modules" not in p.parts)
    for path in files:
        shown = str(path.relative_to(root))
        if path.suffix.lower() == ".js":
            result.js_files.append(Location(shown, 1, 1))
            continue
        try:
            data = path.read_bytes()
        except OSError as e:
            result.errors.append(Diagnostic(Location(shown), f"cannot read the file: {e.strerror}"))
            continue
        text, diags = decode(data, shown)
        result.errors.extend(diags)
        if text is None:
            continue
        docs, diags = parse_json(strip_json5(text), shown)
        result.errors.extend(diags)
        for doc in docs:
            _add(result, doc)
    seen: dict[tuple[str, str], GObject] = {}
    for obj in result.objects:
        key = (obj.cls, obj.id)
        if obj.id and key in seen:
            result.errors.append(Diagnostic(
                obj.loc("id"), f"duplicate {obj.cls} id {obj.id!r}: also at {seen[key].loc('id')}",
                hint="Grouparoo ids are unique per class; rename one"))
        seen.setdefault(key, obj)
    return result


def _add(result: ConfigDir, doc: Document) -> None:
    value = doc.value
    if not isinstance(value, dict):
        result.errors.append(Diagnostic(doc.location(), "not a Grouparoo config object",
                                        hint="a file holds one object or an array of objects"))
        return
    cls = value.get("class")
    if not isinstance(cls, str) or cls.lower() not in CLASSES:
        result.errors.append(Diagnostic(
            doc.location(["class"]), f"unknown or missing class {cls!r}",
            hint="class is one of App, Model, Source, Schedule, Property, Group, Destination, "
                 "Setting, ApiKey, Team, TeamMember, Record"))
        return
    oid = value.get("id")
    if cls.lower() not in ("record", "profile", "setting") and (
            not isinstance(oid, str) or not _ID.match(oid)):
        result.errors.append(Diagnostic(doc.location(["id"]), f"{cls} needs an id (letters, "
                                        "digits and _)", hint="add \"id\": \"...\""))
        return
    result.objects.append(GObject(cls.lower(), oid if isinstance(oid, str) else "", value, doc))

