"""The one YAML (and JSON) reader: text -> plain values plus the node tree, for line numbers.

- Safe: only plain mappings, lists, strings, numbers, booleans and null; any other tag is an error.
- YAML 1.2 core scalars: ``2024-01-01`` stays a string (so JSON Schema formats still apply), and
  so do ``yes``/``no``/``on``/``off`` (no Norway problem); only true/false are booleans.
- Duplicate keys are errors, reported at the second occurrence.
- Mapping keys are always strings: the text as written (``on:`` is the key "on").
- JSON files are parsed by ``json`` (strict) and composed by YAML for their line numbers.
- Never raises for bad input: every problem becomes a Diagnostic with file:line:column.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from brazecfg.errors import Diagnostic, Location

PathElem = str | int
TAG = "tag:yaml.org,2002:"
_MERGE = TAG + "merge"


class _Loader(yaml.SafeLoader):
    """SafeLoader's reader, scanner, parser and composer with YAML 1.2 core scalar resolution."""

    yaml_implicit_resolvers: dict[str | None, list[tuple[str, re.Pattern[str]]]] = {}


for _tag, _regex, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
              r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789."),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("merge", r"^(?:<<)$", "<"),
):
    _Loader.add_implicit_resolver(TAG + _tag, re.compile(_regex), list(_first))


@dataclass
class Document:
    """One parsed document (a resource candidate): its plain value and its node tree."""

    file: str  # the path as shown in diagnostics
    value: Any
    node: Node | None = field(default=None, repr=False)
    ok: bool = True  # False when part of it could not be read (its diagnostics say why)

    def location(self, path: Sequence[PathElem] = (), *, at: Literal["key", "value"] = "value",
                 ) -> Location:
        """Where ``path`` is in the file. ``at="key"`` points at the last key rather than its
        value. A path that does not exist (a missing key) resolves to its deepest existing
        parent, which is where a missing required key belongs."""
        if self.node is None:
            return Location(self.file, 1, 1)
        node, key_node = _walk(self.node, path)
        target = key_node if at == "key" and key_node is not None else node
        mark = target.start_mark
        return Location(self.file, mark.line + 1, mark.column + 1)

    def at(self, path: Sequence[PathElem]) -> Any:
        """The value at ``path``, or None when it is not there."""
        value = self.value
        for elem in path:
            if isinstance(value, dict) and isinstance(elem, str) and elem in value:
                value = value[elem]
            elif isinstance(value, list) and isinstance(elem, int) and 0 <= elem < len(value):
                value = value[elem]
            else:
                return None
        return value


def mapping_pairs(node: MappingNode) -> Iterator[tuple[Node, Node]]:
    """The node's own key/value pairs, then those merged in with ``<<``."""
    merged: list[tuple[Node, Node]] = []
    for key, value in node.value:
        if key.tag == _MERGE:
            for src in value.value if isinstance(value, SequenceNode) else [value]:
                if isinstance(src, MappingNode):
                    merged.extend(mapping_pairs(src))
        else:
            yield key, value
    yield from merged


def _walk(node: Node, path: Sequence[PathElem]) -> tuple[Node, Node | None]:
    key_node: Node | None = None
    for elem in path:
        if isinstance(node, MappingNode):
            for k, v in mapping_pairs(node):
                if isinstance(k, ScalarNode) and k.value == str(elem):
                    key_node, node = k, v
                    break
            else:
                return node, None
        elif isinstance(node, SequenceNode) and isinstance(elem, int) and elem < len(node.value):
            key_node, node = None, node.value[elem]
        else:
            return node, None
    return node, key_node


class _Problem(Exception):
    def __init__(self, node: Node, message: str, hint: str = "") -> None:
        self.node, self.message, self.hint = node, message, hint


class _Builder:
    """Node tree -> plain values, collecting duplicate keys instead of stopping at the first."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.diagnostics: list[Diagnostic] = []
        self._done: dict[int, Any] = {}  # aliases share one value (no billion laughs)
        self._active: set[int] = set()
        self.failed = False  # a value was replaced by None

    def diag(self, node: Node, message: str, hint: str = "") -> None:
        m = node.start_mark
        self.diagnostics.append(Diagnostic(Location(self.file, m.line + 1, m.column + 1),
                                           message, hint=hint))

    def build(self, node: Node) -> Any:
        if id(node) in self._done:
            return self._done[id(node)]
        if id(node) in self._active:
            raise _Problem(node, "an alias refers to the value that contains it",
                           "remove the recursive alias")
        self._active.add(id(node))
        try:
            value = self._build(node)
        except _Problem as p:
            self.diag(p.node, p.message, p.hint)
            self.failed = True
            value = None
        finally:
            self._active.discard(id(node))
        self._done[id(node)] = value
        return value

    def _build(self, node: Node) -> Any:
        if isinstance(node, ScalarNode):
            return _scalar(node)
        if isinstance(node, SequenceNode):
            if node.tag != TAG + "seq":
                raise _Problem(node, f"unsupported tag {node.tag!r}", "remove the tag")
            return [self.build(item) for item in node.value]
        assert isinstance(node, MappingNode)
        return self._mapping(node)

    def _mapping(self, node: MappingNode) -> dict[str, Any]:
        if node.tag != TAG + "map":
            raise _Problem(node, f"unsupported tag {node.tag!r}", "remove the tag")
        out: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key, value in node.value:
            if key.tag == _MERGE:
                for src in value.value if isinstance(value, SequenceNode) else [value]:
                    built = self.build(src)
                    if not isinstance(built, dict):
                        raise _Problem(src, "<< can only merge mappings")
                    merged.update({k: v for k, v in built.items() if k not in merged})
                continue
            if not isinstance(key, ScalarNode):
                raise _Problem(key, "a key must be plain text, not a list or mapping")
            name = key.value
            if name in out:
                self.diag(key, f"duplicate key {name!r}",
                          "each key may appear once in a mapping; remove or rename one")
                continue
            out[name] = self.build(value)
        for k, v in merged.items():
            out.setdefault(k, v)
        return out


def _scalar(node: ScalarNode) -> Any:
    tag, text = node.tag, node.value
    try:
        if tag == TAG + "str":
            return text
        if tag == TAG + "null":
            if text not in ("~", "null", "Null", "NULL", ""):
                raise ValueError
            return None
        if tag == TAG + "bool":
            if text.lower() not in ("true", "false"):
                raise ValueError
            return text.lower() == "true"
        if tag == TAG + "int":
            if text[:2].lower() in ("0x", "0o"):
                return int(text, 0)
            return int(text, 10)
        if tag == TAG + "float":
            low = text.lower().lstrip("+")
            if low in (".inf", "-.inf"):
                return -math.inf if low.startswith("-") else math.inf
            if low == ".nan":
                return math.nan
            return float(text)
    except ValueError:
        raise _Problem(node, f"{text!r} is not a valid {tag.rsplit(':', 1)[-1]}") from None
    raise _Problem(node, f"unsupported tag {tag!r}",
                   "only plain strings, numbers, booleans, null, lists and mappings are allowed")


def _mark_diag(file: str, err: yaml.MarkedYAMLError) -> Diagnostic:
    mark = err.problem_mark or err.context_mark
    where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
    what = err.problem or err.context or "invalid YAML"
    if err.context and err.problem:
        what = f"{err.context}, {err.problem}"
    return Diagnostic(where, f"invalid YAML: {what}", hint="fix the syntax at this position")


def _line_col(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def decode(data: bytes, file: str) -> tuple[str | None, list[Diagnostic]]:
    """Bytes -> text, or a diagnostic for binary or non-UTF-8 content."""
    if b"\x00" in data:
        return None, [Diagnostic(Location(file), "not a text file (it holds binary data)",
                                 hint="move it out of the project folder")]
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        return None, [Diagnostic(Location(file, line, col),
                                 f"not UTF-8 text (byte 0x{data[e.start]:02x})",
                                 hint="save the file as UTF-8")]


def parse_yaml(text: str, file: str) -> tuple[list[Document], list[Diagnostic]]:
    """Every non-empty document of a YAML stream. Documents before a syntax error are kept."""
    docs: list[Document] = []
    builder = _Builder(file)
    try:
        for node in yaml.compose_all(text, Loader=_Loader):
            if node is None:
                continue
            builder.failed = False
            value = builder.build(node)
            if value is not None:
                docs.append(Document(file, value, node, ok=not builder.failed))
    except yaml.MarkedYAMLError as e:
        builder.diagnostics.append(_mark_diag(file, e))
    except yaml.reader.ReaderError as e:
        line, col = _line_col(text, e.position)
        code = ord(e.character) if isinstance(e.character, str) else int(e.character)
        builder.diagnostics.append(Diagnostic(
            Location(file, line, col), f"invalid YAML: character U+{code:04X} is not allowed",
            hint="remove the control character"))
    except (yaml.YAMLError, RecursionError) as e:
        kind = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        builder.diagnostics.append(Diagnostic(Location(file, 1, 1), f"invalid YAML: {kind}"))
    return docs, builder.diagnostics


def parse_json(text: str, file: str) -> tuple[list[Document], list[Diagnostic]]:
    """A JSON file: one document per object, whether the file holds one object or an array
    of objects. Lines and columns come from composing the same text as YAML."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        return [], [Diagnostic(Location(file, e.lineno, e.colno), f"invalid JSON: {e.msg}",
                               hint="fix the syntax at this position")]
    except RecursionError:
        return [], [Diagnostic(Location(file, 1, 1), "invalid JSON: nested too deeply")]
    node: Node | None = None
    diags: list[Diagnostic] = []
    try:
        # JSON is YAML apart from tabs as whitespace; raw tabs cannot occur inside JSON strings.
        node = yaml.compose(text.replace("\t", " "), Loader=_Loader)
    except (yaml.YAMLError, RecursionError):
        node = None  # locations fall back to the start of the file
    if node is not None:
        builder = _Builder(file)
        builder.build(node)  # for its duplicate-key diagnostics only
        diags = builder.diagnostics
    if isinstance(value, list):
        items = node.value if isinstance(node, SequenceNode) else []
        nodes = items if len(items) == len(value) else [None] * len(value)
        return [Document(file, v, n) for v, n in zip(value, nodes, strict=True)], diags
    return [Document(file, value, node)], diags


def parse_text(text: str, file: str, *, as_json: bool = False,
               ) -> tuple[list[Document], list[Diagnostic]]:
    return parse_json(text, file) if as_json else parse_yaml(text, file)


def load_file(path: Path, file: str) -> tuple[list[Document], list[Diagnostic]]:
    """Read and parse one file (``file`` is its name in diagnostics); never raises."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return [], [Diagnostic(Location(file), f"cannot read the file: {e.strerror or e}",
                               hint="check that it exists and is readable")]
    text, diags = decode(data, file)
    if text is None:
        return [], diags
    return parse_text(text, file, as_json=path.suffix.lower() == ".json")
