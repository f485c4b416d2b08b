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

import bisect
import hashlib
import json
import math
import re
import stat
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
MAX_DEPTH = 64  # nesting of mappings and lists; real configs use fewer than ten
MAX_VALUES = 100_000  # values in a document once aliases and merges are expanded
MAX_FILE_BYTES = 16 * 1024 * 1024
_LONG = 1000  # PyYAML cannot read implicit keys over 1024 characters: see _shorten


class Lines:
    """Character index -> (line, column), counting only ``\\n`` as a line break.

    PyYAML also breaks lines at U+0085, U+2028 and U+2029, which editors and ``json`` do not
    (inside a string they are just characters), so its own line numbers drift after one.
    ``shifts`` maps indexes in a rewritten text back to the original (see _shorten)."""

    def __init__(self, text: str, shifts: Sequence[tuple[int, int]] = ()) -> None:
        self._breaks = [i for i, c in enumerate(text) if c == "\n"]
        self._shift_at = [a for a, _ in shifts]
        self._shift_by = [b for _, b in shifts]

    def at(self, index: int) -> tuple[int, int]:
        k = bisect.bisect_right(self._shift_at, index)
        if k:
            index += self._shift_by[k - 1]
        n = bisect.bisect_left(self._breaks, index)
        start = self._breaks[n - 1] + 1 if n else 0
        return n + 1, index - start + 1

    def location(self, file: str, mark: Any) -> Location:
        line, col = self.at(mark.index)
        return Location(file, line, col)


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
    lines: Lines | None = field(default=None, repr=False)

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
        if self.lines is not None:
            return self.lines.location(self.file, mark)
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
    """The node's own key/value pairs, then those merged in with ``<<`` (in YAML's order of
    precedence). Each merged mapping is visited once, however many times it is merged, and
    without recursion: no exponential walk for a merge-key bomb."""
    seen: set[int] = {id(node)}
    todo: list[MappingNode] = [node]  # a stack: the next mapping to list is on top
    while todo:
        current = todo.pop()
        sources: list[MappingNode] = []
        for key, value in current.value:
            if key.tag == _MERGE:
                for src in value.value if isinstance(value, SequenceNode) else [value]:
                    if isinstance(src, MappingNode) and id(src) not in seen:
                        seen.add(id(src))
                        sources.append(src)
            else:
                yield key, value
        todo.extend(reversed(sources))


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

    def __init__(self, file: str, lines: Lines | None = None) -> None:
        self.file = file
        self.lines = lines
        self.diagnostics: list[Diagnostic] = []
        self._done: dict[int, Any] = {}  # aliases share one value (no billion laughs)
        self._active: set[int] = set()
        self.failed = False  # a value was replaced by None

    def diag(self, node: Node, message: str, hint: str = "") -> None:
        m = node.start_mark
        where = (self.lines.location(self.file, m) if self.lines is not None
                 else Location(self.file, m.line + 1, m.column + 1))
        self.diagnostics.append(Diagnostic(where, message, hint=hint))

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
            number = float(text.lower().replace(".inf", "inf").replace(".nan", "nan"))
            if not math.isfinite(number):
                raise _Problem(node, f"{text!r} is not a finite number",
                               "write a number such as 30 or 2.5")
            return number
    except ValueError:
        raise _Problem(node, f"{text!r} is not a valid {tag.rsplit(':', 1)[-1]}") from None
    raise _Problem(node, f"unsupported tag {tag!r}",
                   "only plain strings, numbers, booleans, null, lists and mappings are allowed")


def _mark_diag(file: str, err: yaml.MarkedYAMLError, lines: Lines) -> Diagnostic:
    context, problem = err.context or "", err.problem or ""
    # A quote (or bracket) left open is found at the end of the file; where it opened is
    # where the mistake is.
    opened = err.context_mark is not None and (
        "end of stream" in problem or "quoted scalar" in context)
    if ("simple key" in context and err.context_mark is not None
            and err.problem_mark is not None
            and err.problem_mark.index - err.context_mark.index >= 1024):
        return Diagnostic(lines.location(file, err.context_mark),
                          "invalid YAML: a key longer than 1024 characters (YAML's limit)",
                          hint="shorten the key")
    mark = err.context_mark if opened else (err.problem_mark or err.context_mark)
    where = lines.location(file, mark) if mark else Location(file, 1, 1)
    what = problem or context or "invalid YAML"
    if context and problem:
        what = f"{context}, {problem}"
    hint = ("this is where it starts; close it" if opened else
            "fix the syntax at this position")
    return Diagnostic(where, f"invalid YAML: {what}", hint=hint)


def _structure_problem(text: str, file: str, lines: Lines, what: str = "YAML",
                       ) -> Diagnostic | None:
    """Nesting deeper than MAX_DEPTH, found from the event stream (no recursion), so JSON and
    YAML too deep to compose get a located error rather than a RecursionError."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    return Diagnostic(lines.location(file, event.start_mark),
                                      f"invalid {what}: nested more than {MAX_DEPTH} "
                                      "levels deep",
                                      hint="flatten the structure")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
    except yaml.YAMLError:
        return None  # composing reports it, with its position
    return None


def _amplified(node: Node) -> Node | None:
    """The node where aliases and merges expand a document beyond MAX_VALUES values, or
    None. Sizes are memoised per node, so this is linear in the written document even when
    its expansion is exponential (billion laughs, merge-key bombs)."""
    size: dict[int, int] = {}

    def children(n: Node) -> list[Node]:
        if isinstance(n, SequenceNode):
            return list(n.value)
        if isinstance(n, MappingNode):
            return [x for pair in n.value for x in pair]
        return []

    visiting: set[int] = set()
    stack: list[tuple[Node, bool]] = [(node, False)]
    while stack:  # post-order, without recursion
        n, done = stack.pop()
        if done:
            visiting.discard(id(n))
            size[id(n)] = min(MAX_VALUES + 1,
                              1 + sum(size.get(id(c), 0) for c in children(n)))
            continue
        if id(n) in size or id(n) in visiting:
            continue  # shared (counted when done) or recursive (the builder reports it)
        visiting.add(id(n))
        stack.append((n, True))
        stack.extend((c, False) for c in children(n))
    if size.get(id(node), 0) <= MAX_VALUES:
        return None
    current = node
    while True:  # down to the smallest part that is still too big
        big = [c for c in children(current) if size.get(id(c), 0) > MAX_VALUES]
        if not big:
            return current
        current = big[0]


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


def _amplification(file: str, node: Node, lines: Lines) -> Diagnostic | None:
    where = _amplified(node)
    if where is None:
        return None
    return Diagnostic(lines.location(file, where.start_mark),
                      f"aliases and merges expand this to more than {MAX_VALUES:,} values",
                      hint="write the values out, or share fewer of them with &anchor/*alias")


def parse_yaml(text: str, file: str) -> tuple[list[Document], list[Diagnostic]]:
    """Every non-empty document of a YAML stream. Documents before a syntax error are kept."""
    docs: list[Document] = []
    lines = Lines(text)
    builder = _Builder(file, lines)
    deep = _structure_problem(text, file, lines)
    if deep is not None:
        return [], [deep]
    try:
        for node in yaml.compose_all(text, Loader=_Loader):
            if node is None:
                continue
            bomb = _amplification(file, node, lines)
            if bomb is not None:
                builder.diagnostics.append(bomb)
                continue
            builder.failed = False
            value = builder.build(node)
            if value is not None:
                docs.append(Document(file, value, node, ok=not builder.failed, lines=lines))
    except yaml.MarkedYAMLError as e:
        builder.diagnostics.append(_mark_diag(file, e, lines))
    except yaml.reader.ReaderError as e:
        line, col = lines.at(e.position)
        code = ord(e.character) if isinstance(e.character, str) else int(e.character)
        builder.diagnostics.append(Diagnostic(
            Location(file, line, col), f"invalid YAML: character U+{code:04X} is not allowed",
            hint="remove the control character"))
    except (yaml.YAMLError, RecursionError) as e:
        kind = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        builder.diagnostics.append(Diagnostic(Location(file, 1, 1), f"invalid YAML: {kind}"))
    return docs, builder.diagnostics


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def _shorten(text: str) -> tuple[str, list[tuple[int, int]], dict[str, str]]:
    """JSON text with every string over _LONG characters replaced by a short placeholder
    (PyYAML refuses keys over 1024 characters), the index shifts back to the original, and
    placeholder -> original string (unquoted JSON source)."""
    out: list[str] = []
    shifts: list[tuple[int, int]] = []
    originals: dict[str, str] = {}
    last, delta = 0, 0
    for m in _JSON_STRING.finditer(text):
        if m.end() - m.start() <= _LONG:
            continue
        token = "~" + hashlib.sha1(m.group().encode(), usedforsecurity=False).hexdigest()
        originals[token] = m.group()
        out += [text[last:m.start()], f'"{token}"']
        new_end = m.start() - delta + len(token) + 2  # where the placeholder ends, rewritten
        delta += (m.end() - m.start()) - (len(token) + 2)
        shifts.append((new_end, delta))
        last = m.end()
    out.append(text[last:])
    return "".join(out), shifts, originals


def _restore(node: Node, originals: dict[str, str]) -> None:
    stack = [node]
    seen: set[int] = set()
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if isinstance(n, ScalarNode) and n.value in originals:
            n.value = json.loads(originals[n.value])
        elif isinstance(n, SequenceNode):
            stack += n.value
        elif isinstance(n, MappingNode):
            stack += [x for pair in n.value for x in pair]


class _NonFinite:
    """Stands in for NaN, Infinity or a number too large for a float, until it is located."""

    def __init__(self, text: str) -> None:
        self.text = text


def _finite(text: str) -> float | _NonFinite:
    number = float(text)
    return number if math.isfinite(number) else _NonFinite(text)


def _non_finite(value: Any) -> list[tuple[tuple[PathElem, ...], str]]:
    """Paths (and written text) of every _NonFinite in ``value``, without recursion."""
    out: list[tuple[tuple[PathElem, ...], str]] = []
    stack: list[tuple[tuple[PathElem, ...], Any]] = [((), value)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, _NonFinite):
            out.append((path, v.text))
        elif isinstance(v, dict):
            stack += [((*path, k), x) for k, x in v.items()]
        elif isinstance(v, list):
            stack += [((*path, i), x) for i, x in enumerate(v)]
    return sorted(out, key=lambda pair: [str(p) for p in pair[0]])


def parse_json(text: str, file: str) -> tuple[list[Document], list[Diagnostic]]:
    """A JSON file: one document per object, whether the file holds one object or an array
    of objects. Lines and columns come from composing the same text as YAML."""
    short, shifts, originals = _shorten(text)
    lines = Lines(text, shifts)
    deep = _structure_problem(short.replace("\t", " "), file, lines, "JSON")
    if deep is not None:
        return [], [deep]
    try:
        value = json.loads(text, parse_constant=_NonFinite, parse_float=_finite)
    except json.JSONDecodeError as e:
        line, col = Lines(text).at(e.pos)
        return [], [Diagnostic(Location(file, line, col), f"invalid JSON: {e.msg}",
                               hint="fix the syntax at this position")]
    except RecursionError:
        return [], [Diagnostic(Location(file, 1, 1), "invalid JSON: nested too deeply")]
    node: Node | None = None
    diags: list[Diagnostic] = []
    try:
        # JSON is YAML apart from tabs as whitespace; raw tabs cannot occur inside JSON strings.
        node = yaml.compose(short.replace("\t", " "), Loader=_Loader)
    except (yaml.YAMLError, RecursionError):
        node = None  # locations fall back to the start of the file
    if node is not None:
        _restore(node, originals)
        builder = _Builder(file, lines)
        builder.build(node)  # for its duplicate-key diagnostics only
        diags = builder.diagnostics
    bad = _non_finite(value)
    if bad:  # NaN, Infinity, -Infinity, 1e999: located through the node tree
        whole = Document(file, value, node, lines=lines)
        return [], diags + [Diagnostic(whole.location(path), f"invalid JSON: {written} is not "
                                       "a finite number", hint="write a finite number")
                            for path, written in bad]
    if isinstance(value, list):
        items = node.value if isinstance(node, SequenceNode) else []
        nodes = items if len(items) == len(value) else [None] * len(value)
        return [Document(file, v, n, lines=lines)
                for v, n in zip(value, nodes, strict=True)], diags
    return [Document(file, value, node, lines=lines)], diags


def parse_text(text: str, file: str, *, as_json: bool = False,
               ) -> tuple[list[Document], list[Diagnostic]]:
    return parse_json(text, file) if as_json else parse_yaml(text, file)


def load_file(path: Path, file: str) -> tuple[list[Document], list[Diagnostic]]:
    """Read and parse one file (``file`` is its name in diagnostics); never raises."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            return [], [Diagnostic(Location(file), "not a regular file (a device, FIFO or "
                                   "socket)", hint="move it out of the project folder")]
        if info.st_size > MAX_FILE_BYTES:
            return [], [Diagnostic(Location(file), f"larger than {MAX_FILE_BYTES // 2**20} MiB",
                                   hint="split it, or move it out of the project folder")]
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        return [], [Diagnostic(Location(file), f"cannot read the file: {e.strerror or e}",
                               hint="check that it exists and is readable")]
    text, diags = decode(data, file)
    if text is None:
        return [], diags
    return parse_text(text, file, as_json=path.suffix.lower() == ".json")
