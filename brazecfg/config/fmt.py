"""``brazecfg fmt``: canonical key order and style for the project's resource files.

- The files are those the loader reads as resources (``loader.resource_files``): never
  brazecfg.yml, package.json, a saved plan or the state.
- Key order: ``kind``, ``name``, then the order of the kind's JSON Schema properties, at every
  level the schema describes (a destination's events, a property's filters); keys the schema
  does not name keep their order after those. Derived from the schemas, never a hand list.
- Style: 2-space indentation (lists indented under their key), no trailing spaces, one
  trailing newline; comments, quotes, flow style and document order kept.
- YAML goes through ruamel.yaml's round trip (which keeps comments) for the indentation; keys
  are then reordered as whole blocks of lines, so each key keeps its comments and a template
  (``{{ env('X') }}``) is never re-spelt. JSON is rewritten with ``json`` (2 spaces).
- The meaning never changes: every result is parsed again by the loader's own reader and must
  give the same values, else the file is left as it was and reported.
"""

from __future__ import annotations

import bisect
import io
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from brazecfg.config.yaml import parse_text
from brazecfg.errors import Diagnostic, Location
from brazecfg.schema.bundle import RESOURCE_KINDS, bundle

HEAD = ("kind", "name")  # first in every resource, before the schema's order
MAX_PASSES = 10_000  # one mapping is put in order per pass; a file has far fewer


class FormatProblem(Exception):
    """A file fmt cannot format; carries its diagnostic."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        self.diagnostic = diagnostic
        super().__init__(str(diagnostic))


# --- the canonical order, from the schemas --------------------------------------------------

@dataclass(frozen=True)
class _Schemas:
    roots: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls) -> _Schemas:
        return cls({kind: bundle(kind) for kind in RESOURCE_KINDS})


def _resolve(node: Any, root: dict[str, Any]) -> Any:
    for _ in range(32):  # $ref chains are short; a cycle of refs alone would never end
        ref = node.get("$ref") if isinstance(node, dict) else None
        if not (isinstance(ref, str) and ref.startswith("#/$defs/")):
            return node
        node = root.get("$defs", {}).get(ref[len("#/$defs/"):], {})
    return node


def _branches(node: Any, root: dict[str, Any]) -> list[dict[str, Any]]:
    """The schema and every schema it combines (allOf/anyOf/oneOf/if/then/else), resolved."""
    out: list[dict[str, Any]] = []
    todo = [node]
    while todo and len(out) < 256:
        n = _resolve(todo.pop(0), root)
        if not isinstance(n, dict):
            continue
        out.append(n)
        for key in ("allOf", "anyOf", "oneOf"):
            todo += [b for b in n.get(key) or [] if isinstance(b, dict)]
        todo += [n[k] for k in ("then", "else") if isinstance(n.get(k), dict)]
    return out


def key_order(schema: Any, root: dict[str, Any]) -> list[str]:
    """The property names a (sub)schema lists, in its order (branches after)."""
    names: list[str] = []
    for b in _branches(schema, root):
        for name in b.get("properties") or {}:
            if name not in names:
                names.append(name)
    return names


def _child(schema: Any, root: dict[str, Any], key: str | int) -> Any:
    """The subschema for one key (or list item) of a value ``schema`` describes."""
    for b in _branches(schema, root):
        if isinstance(key, int):
            if isinstance(b.get("items"), dict):
                return b["items"]
            continue
        props = b.get("properties") or {}
        if key in props:
            return props[key]
        if isinstance(b.get("additionalProperties"), dict):
            return b["additionalProperties"]
    return None


def canonical(keys: Sequence[str], order: Sequence[str], *, top: bool) -> list[str]:
    """``keys`` in canonical order: HEAD (top level), then ``order``, then the rest as they
    were."""
    rank = {k: i for i, k in enumerate([*HEAD, *order] if top else order)}
    known = sorted((k for k in keys if k in rank), key=lambda k: rank[k])
    return known + [k for k in keys if k not in rank]


# --- YAML -----------------------------------------------------------------------------------

def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 1_000_000  # never fold a long line
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def _problem(file: str, exc: YAMLError) -> FormatProblem:
    mark = getattr(exc, "problem_mark", None) if isinstance(exc, MarkedYAMLError) else None
    what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = Location(file, mark.line + 1, mark.column + 1) if mark is not None else Location(file)
    return FormatProblem(Diagnostic(where, f"fmt cannot parse this YAML: {what}",
                                    hint="fix the file (`brazecfg validate` says more); the "
                                         "other files are formatted"))


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_comment(line: str) -> bool:
    return line.lstrip(" ").startswith("#")


class _Reorder:
    """Finds the first mapping (outermost first, in file order) whose keys are out of order and
    rewrites its lines in order. None when every mapping is in order."""

    def __init__(self, text: str, schemas: _Schemas) -> None:
        self.text = text
        self.lines = text.split("\n")
        self.schemas = schemas

    def run(self) -> str | None:
        for doc in _yaml().compose_all(self.text):
            # a resource per document, or a list of resources in one
            items = doc.value if isinstance(doc, SequenceNode) else [doc]
            for item in items:
                if not isinstance(item, MappingNode):
                    continue
                root = self.schemas.roots.get(_scalar_value(item, "kind") or "")
                if root is None:
                    continue  # an unknown kind: validate reports it; its order is unknown
                out = self.walk(item, root, root, top=True)
                if out is not None:
                    return out
        return None

    def walk(self, node: Node, schema: Any, root: dict[str, Any], *, top: bool) -> str | None:
        if isinstance(node, MappingNode):
            keys = [k.value if isinstance(k, ScalarNode) else None for k, _ in node.value]
            if all(isinstance(k, str) for k in keys):
                names = [str(k) for k in keys]
                want = canonical(names, key_order(schema, root), top=top)
                if want != names and not node.flow_style:
                    out = self.rewrite(node, names, want)
                    if out is not None:
                        return out
                for (k, v) in node.value:
                    out = self.walk(v, _child(schema, root, str(k.value)), root, top=False)
                    if out is not None:
                        return out
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                out = self.walk(item, _child(schema, root, i), root, top=False)
                if out is not None:
                    return out
        return None

    def rewrite(self, node: MappingNode, names: list[str], want: list[str]) -> str | None:
        """The text with this mapping's keys in ``want`` order, each key moving with its value
        and the comments just above it. None when the mapping is not laid out one key a line
        at one indentation (then it is left as it is)."""
        lines = self.lines
        starts = [k.start_mark.line for k, _ in node.value]
        col = node.value[0][0].start_mark.column
        if (len(set(starts)) != len(starts) or starts != sorted(starts)
                or any(k.start_mark.column != col for k, _ in node.value)):
            return None
        prefix = lines[starts[0]][:col]
        if prefix.strip() not in ("", "-"):
            return None  # "- - key:", "--- key:": left alone
        # where the mapping ends: the lines after its last key indented deeper (its value)
        end = starts[-1] + 1
        while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > col):
            end += 1
        while end - 1 > starts[-1] and not lines[end - 1].strip():
            end -= 1
        # each key's block starts at the comments (and blank lines) just above it
        bounds = [starts[0]]
        for i in range(1, len(starts)):
            j = starts[i]
            while j - 1 > starts[i - 1] and (not lines[j - 1].strip() or (
                    _is_comment(lines[j - 1]) and _indent(lines[j - 1]) <= col)):
                j -= 1
            bounds.append(j)
        bounds.append(end)
        body = lines[starts[0]:end]
        if prefix.strip():
            body[0] = " " * col + body[0][col:]
        blocks = {name: body[bounds[i] - starts[0]:bounds[i + 1] - starts[0]]
                  for i, name in enumerate(names)}
        key_at = {name: starts[i] - bounds[i] for i, name in enumerate(names)}
        new: list[str] = []
        for n, name in enumerate(want):
            # the comments above a key move with it, at its indentation
            block = [" " * col + line.lstrip(" ") if i < key_at[name] and _is_comment(line)
                     else line for i, line in enumerate(blocks[name])]
            if n == 0:
                skip = 0
                while skip < key_at[name] and not block[skip].strip():
                    skip += 1  # no blank line between the mapping's start and its first key
                block = block[skip:]
                if prefix.strip():  # a list item: its dash goes on its new first key
                    at = key_at[name] - skip
                    block[at] = prefix + block[at][col:]
            new += block
        return "\n".join([*lines[:starts[0]], *new, *lines[end:]])


def _scalar_value(node: MappingNode, key: str) -> str | None:
    for k, v in node.value:
        if isinstance(k, ScalarNode) and k.value == key and isinstance(v, ScalarNode):
            return str(v.value)
    return None


def _tidy(text: str) -> str:
    """No trailing spaces, no blank lines at either end, one trailing newline."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return "\n".join(lines) + "\n" if lines else ""


def _comments(text: str) -> list[str]:
    """The full-line comments of a text, as written (without their indentation)."""
    return sorted(line.strip() for line in text.splitlines() if line.lstrip().startswith("#"))


def _dedent_root_list(text: str) -> str:
    """ruamel indents a top-level list like a nested one; a file that is one list of
    resources starts at column 0."""
    lines = text.split("\n")
    first = next((line for line in lines if line.strip() and not _is_comment(line)), "")
    if not first.startswith("  - ") or any(
            line.strip() and not line.startswith("  ") and not line.lstrip().startswith("#")
            for line in lines):
        return text
    # comments keep the column they were written at (ruamel does not move them either)
    return "\n".join(line[2:] if line.startswith("  ") and not _is_comment(line) else line
                     for line in lines)


def _realign_comments(text: str) -> str:
    """ruamel re-indents keys but leaves full-line comments at the column they were written
    at, so a comment of a 4-space file ends up deeper than the lines around it: such a
    comment gets the indentation of the deeper of its neighbours."""
    lines = text.split("\n")
    content = [i for i, line in enumerate(lines) if line.strip() and not _is_comment(line)]
    for i, line in enumerate(lines):
        if not _is_comment(line):
            continue
        k = bisect.bisect_left(content, i)
        around = max(_indent(lines[content[k - 1]]) if k else 0,
                     _indent(lines[content[k]]) if k < len(content) else 0)
        if _indent(line) > around:
            lines[i] = " " * around + line.lstrip(" ")
    return "\n".join(lines)


def format_yaml(text: str, file: str, schemas: _Schemas | None = None) -> str:
    """``text`` (one YAML file, any number of documents) formatted; raises FormatProblem."""
    schemas = schemas or _Schemas.load()
    y = _yaml()
    try:
        docs = list(y.load_all(text))
    except YAMLError as exc:
        raise _problem(file, exc) from None
    if all(d is None for d in docs):
        return _tidy(text)  # nothing but comments (or nothing): only the whitespace
    buf = io.StringIO()
    y.dump_all(docs, buf)
    out = _realign_comments(_tidy(buf.getvalue()))
    if len(docs) == 1 and isinstance(docs[0], list):
        out = _dedent_root_list(out)
    try:
        for _ in range(MAX_PASSES):
            again = _Reorder(out, schemas).run()
            if again is None or again == out:
                break
            out = again
    except YAMLError:
        raise FormatProblem(Diagnostic(
            Location(file), "fmt cannot put this file's keys in order without breaking it "
            "(an alias would come before its anchor)",
            hint="order the keys by hand, or write the value out instead of the alias")
            ) from None
    out = _tidy(out)
    if _comments(out) != _comments(text):
        raise FormatProblem(Diagnostic(
            Location(file), "fmt would lose or change a comment here, so it leaves the file "
            "as it is", hint="this is a bug in brazecfg fmt: please report it with the file"))
    return out


# --- JSON -----------------------------------------------------------------------------------

def _order_value(value: Any, schema: Any, root: dict[str, Any], *, top: bool) -> Any:
    if isinstance(value, dict):
        want = canonical(list(value), key_order(schema, root), top=top)
        return {k: _order_value(value[k], _child(schema, root, k), root, top=False)
                for k in want}
    if isinstance(value, list):
        return [_order_value(v, _child(schema, root, i), root, top=False)
                for i, v in enumerate(value)]
    return value


def format_json(text: str, file: str, schemas: _Schemas | None = None) -> str:
    """A JSON resource file (one object or a list of them) rewritten in canonical order."""
    schemas = schemas or _Schemas.load()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatProblem(Diagnostic(Location(file, exc.lineno, exc.colno),
                                       f"fmt cannot parse this JSON: {exc.msg}",
                                       hint="fix the file; the other files are formatted")
                            ) from None

    def one(v: Any) -> Any:
        root = schemas.roots.get(str(v.get("kind"))) if isinstance(v, dict) else None
        return _order_value(v, root, root, top=True) if root is not None else v

    items = value if isinstance(value, list) else [value]
    if not any(isinstance(v, dict) and v.get("kind") in schemas.roots for v in items):
        return text  # no resource of a known kind here: validate reports it, fmt leaves it
    ordered = [one(v) for v in value] if isinstance(value, list) else one(value)
    return json.dumps(ordered, indent=2, ensure_ascii=False) + "\n"


# --- files ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FileResult:
    path: Path
    file: str  # as shown
    changed: bool
    problem: Diagnostic | None = None


def _same_meaning(before: str, after: str, file: str, as_json: bool) -> bool:
    old, old_diags = parse_text(before, file, as_json=as_json)
    new, new_diags = parse_text(after, file, as_json=as_json)
    return not old_diags and not new_diags and [d.value for d in old] == [d.value for d in new]


def format_file(path: Path, file: str, *, check: bool, schemas: _Schemas) -> FileResult:
    """Format one file in place (``check``: only say whether it would change)."""
    try:
        before = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return FileResult(path, file, False, Diagnostic(
            Location(file), f"fmt cannot read the file: {exc}", hint="check the file"))
    as_json = path.suffix.lower() == ".json"
    try:
        after = (format_json if as_json else format_yaml)(before, file, schemas)
    except FormatProblem as exc:
        return FileResult(path, file, False, exc.diagnostic)
    except Exception as exc:  # noqa: BLE001 - one file's surprise must not stop the others
        return FileResult(path, file, False, Diagnostic(
            Location(file), f"fmt failed on this file ({type(exc).__name__}) and left it as "
            "it is", hint="this is a bug in brazecfg fmt: please report it with the file"))
    if after == before:
        return FileResult(path, file, False)
    if not _same_meaning(before, after, file, as_json):
        return FileResult(path, file, False, Diagnostic(
            Location(file), "fmt would change what this file means, so it is left as it is",
            hint="this is a bug in brazecfg fmt: please report it with the file"))
    if not check:
        tmp = path.with_name(f".{path.name}.fmt-tmp")
        tmp.write_text(after, encoding="utf-8", newline="")
        shutil.copymode(path, tmp)
        tmp.replace(path)
    return FileResult(path, file, True)


def _is_project(folder: Path) -> bool:
    from brazecfg.config.loader import PROJECT_FILES

    return any((folder / n).is_file() for n in PROJECT_FILES)


def _project_of(path: Path) -> Path | None:
    """The nearest folder at or above ``path`` that holds brazecfg.yml."""
    here = path.resolve()
    for folder in (here, *here.parents) if here.is_dir() else here.parents:
        if _is_project(folder):
            return folder
    return None


def format_paths(paths: Sequence[Path], *, check: bool) -> list[FileResult]:
    """Format project folders (every resource file in each), folders inside a project (its
    resource files there) and single files (pre-commit passes file names): only files the
    project's loader reads as resources. Raises ProjectError for a folder in no project."""
    from brazecfg.config.loader import resource_files

    schemas = _Schemas.load()
    out: list[FileResult] = []
    seen: set[Path] = set()
    lanes: dict[Path, list[tuple[Path, str, list[Diagnostic]]]] = {}

    def lane(root: Path) -> list[tuple[Path, str, list[Diagnostic]]]:
        if root not in lanes:
            lanes[root] = resource_files(root)
        return lanes[root]

    for given in paths:
        if given.is_dir() and _is_project(given):
            files = resource_files(given)
        else:
            root = _project_of(given)
            if root is None:
                if given.is_dir():
                    resource_files(given)  # raises: no brazecfg.yml, said as the loader says it
                continue  # a file in no brazecfg project: not ours
            here = given.resolve()
            files = [(p, f, d) for p, f, d in lane(root)
                     if p.resolve() == here or p.resolve().is_relative_to(here)]
        for path, file, diags in files:
            if path.resolve() in seen:
                continue
            seen.add(path.resolve())
            out.append(FileResult(path, file, False, diags[0]) if diags
                       else format_file(path, file, check=check, schemas=schemas))
    return out
