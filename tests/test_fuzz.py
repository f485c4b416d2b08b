"""Property-based: broken projects never crash, hang, blow up or point to the wrong place.

Hypothesis mutates the example project (types, keys, references, YAML syntax, aliases, depth,
sizes, numbers, unicode, templates) and runs ``validate`` (and, for some cases, ``plan``)
through the CLI. On every case:

- no traceback and no "unexpected error" (every failure is one the user can act on);
- exit code 0 or 1;
- under 10 seconds, and the process under 500 MB;
- every diagnostic is located: a file of the project, and a line:column that exists in it
  (only file-level problems, such as "not UTF-8 text", may go without a line).

CI runs a fixed seed and a modest number of cases; ``BRAZECFG_FUZZ_EXAMPLES=2000`` runs more,
``BRAZECFG_FUZZ_SEED=N`` another sequence.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from brazecfg import redact
from brazecfg.cli.render import visible
from brazecfg.emulator import Emulator, EmulatorConfig
from tests.helpers import NOW, cli, copy_example, sql

EXAMPLES = int(os.environ.get("BRAZECFG_FUZZ_EXAMPLES", "150"))
SEED = int(os.environ.get("BRAZECFG_FUZZ_SEED", "20261201"))
MAX_SECONDS = 10.0
MAX_RSS_MB = 500
ERROR_LINE = re.compile(r"^error (?P<file>.+?)(?::(?P<line>\d+):(?P<col>\d+))?: ", re.M)
FILE_LEVEL = ("not UTF-8 text", "not a text file", "not a regular file", "larger than",
              "cannot read the file", "no project file", "cannot read the folder",
              "project folder not found")

# --- the pieces mutations are made of ---------------------------------------------------------

NAMES = ["users", "users_table", "purchases", "warehouse", "braze", "ltv", "high_value",
         "braze_users", "user_id", "email", "nope", "Users", "usres", ""]
HOSTILE_TEXT = ["[/x]", "[bold]", "\u2028", "\u0085", "\u2029", "\x1b[31m", "\u202e", "\ufeff",
                "`", "\n# h\n", "'", '"', "\\", "{{", "{%", "}}", "&a", "*a", "<<", "!!python/object",
                "%", "@", "\t", "\x00", "\x7f", "é", "𝔘", "\u0301", ":", "- ", "#", "|", ">"]
TEMPLATES = ["{{ 'a' * 10**9 }}", "{{ 3 ** 100000000 }}", "{{ 'a'|center(1e9) }}",
             "{{ '%0999999999d'|format(1) }}", "{% for a in 'x'*999 %}{% for b in 'x'*999 %}"
             "{% endfor %}{% endfor %}", "{{ vars.update({'paid_status': 1}) }}",
             "{{ env('HOME') }}", "{{ env('BRAZECFG_NOPE') }}", "{{ var('nope') }}", "{{ ",
             "{{ ''.__class__ }}", "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
             "{{ var('paid_status') }}", "{{ 1/0 }}", "{{ [1]*99999 + [1]*99999 }}",
             "{{ env('BRAZECFG_X', 5) * 10**4000 }}"]
NUMBERS = [0, -1, 1, 10**20, 1e308, float("nan"), float("inf"), -0.5, 2**63, 65536, 3.5]
SCALARS = st.one_of(st.sampled_from(NUMBERS), st.sampled_from(NAMES), st.booleans(), st.none(),
                    st.text(max_size=20), st.sampled_from(HOSTILE_TEXT + TEMPLATES))


def _values(depth: int = 2) -> st.SearchStrategy[object]:
    return st.recursive(SCALARS, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(NAMES + ["kind", "name"]),
                                                     inner, max_size=3)), max_leaves=6)


def _yaml_scalar(value: object) -> str:
    if isinstance(value, float):
        if value != value:
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True,
                          width=10**6).strip().removesuffix("...").strip()


# --- mutations: each edits the project folder in place ------------------------------------------

Mutation = Callable[[Path], None]


def _files(project: Path) -> list[Path]:
    return sorted(p for p in project.rglob("*") if p.suffix in (".yml", ".json") and p.is_file()
                  and ".brazecfg" not in p.parts)


@st.composite
def set_value(draw: st.DrawFn) -> Mutation:
    """Replace the value of one key in one document (types, numbers, references, templates)."""
    pick = draw(st.integers(0, 10_000))
    value = draw(_values())
    as_text = draw(st.booleans())

    def apply(project: Path) -> None:
        files = [f for f in _files(project) if f.suffix == ".yml"]
        f = files[pick % len(files)]
        lines = f.read_text(encoding="utf-8").splitlines()
        keyed = [i for i, ln in enumerate(lines) if re.match(r"^\s*[A-Za-z_/]+:", ln)]
        if not keyed:
            return
        i = keyed[pick % len(keyed)]
        key, _, _ = lines[i].partition(":")
        text = _yaml_scalar(value) if not as_text else '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines[i] = f"{key}: {text}"
        f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return apply


@st.composite
def rename_key(draw: st.DrawFn) -> Mutation:
    pick = draw(st.integers(0, 10_000))
    new = draw(st.sampled_from(["kind", "nmae", "model", "tabel", " key", "name ", "x" * 1500,
                                "", "<<", "rules", "kind\u2028"]))

    def apply(project: Path) -> None:
        files = _files(project)
        f = files[pick % len(files)]
        text = f.read_text(encoding="utf-8")
        keys = list(re.finditer(r"(?m)^(\s*)([A-Za-z_]+):", text))
        if keys:
            m = keys[pick % len(keys)]
            key = yaml.safe_dump(new).strip().removesuffix("...").strip() if new else '""'
            text = text[:m.start(2)] + key + text[m.end(2):]
            f.write_text(text, encoding="utf-8")
    return apply


@st.composite
def insert_text(draw: st.DrawFn) -> Mutation:
    """YAML syntax and unicode: a hostile piece of text at a random place of a random file."""
    pick = draw(st.integers(0, 10**6))
    piece = draw(st.one_of(st.sampled_from(HOSTILE_TEXT + TEMPLATES), st.text(max_size=5)))

    def apply(project: Path) -> None:
        files = _files(project)
        f = files[pick % len(files)]
        text = f.read_text(encoding="utf-8")
        at = pick % (len(text) + 1)
        f.write_text(text[:at] + piece + text[at:], encoding="utf-8")
    return apply


@st.composite
def add_document(draw: st.DrawFn) -> Mutation:
    """A new file: alias bombs, deep nesting, huge sizes, JSON oddities, or random resources."""
    kind = draw(st.sampled_from(["aliases", "merge", "deep_yaml", "deep_json", "big", "json_nan",
                                 "long_json_key", "random", "chain", "dag", "bytes", "template",
                                 "separator"]))
    # sizes around the limits and far past them, not only the small ones hypothesis prefers
    n = draw(st.sampled_from([1, 3, 7, 15, 20, 24, 40]))
    value = draw(_values())
    template = draw(st.sampled_from(TEMPLATES))
    sep = draw(st.sampled_from(["\u2028", "\u0085", "\u2029", "\x1b", "\u202e"]))

    def apply(project: Path) -> None:
        f = project / "fuzz" / "x.yml"
        f.parent.mkdir(exist_ok=True)
        if kind == "aliases":
            lines = ["kind: app", "name: bomb", "type: braze", "description:",
                     "  l0: &l0 [a, a, a, a, a, a, a, a, a]"]
            lines += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, n % 12 + 1)]
            f.write_text("\n".join(lines) + "\n")
        elif kind == "merge":
            lines = ["a0: &a0 {x: 1}"] + [
                f"a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}], y{i}: 1}}" for i in range(1, n)]
            f.write_text("\n".join(lines) + "\nkind: app\nname: m\ntype: braze\n")
        elif kind == "deep_yaml":
            f.write_text("kind: app\nname: d\nx: " + "[" * (n * 25) + "]" * (n * 25) + "\n")
        elif kind == "deep_json":
            f.with_suffix(".json").write_text('{"kind": "app", "name": "d", "x": '
                                              + "[" * (n * 25) + "]" * (n * 25) + "}")
        elif kind == "big":
            f.write_text("kind: model\nname: big\nprimary_key: user_id\ndescription: "
                         + "x" * (n * 5000) + "\n")
        elif kind == "json_nan":
            f.with_suffix(".json").write_text('{"kind": "app", "name": "j", "type": "braze",\n'
                                              '"options": {"api_key": "k", "rest_endpoint": '
                                              '"http://x", "timeout_seconds": NaN}}')
        elif kind == "long_json_key":
            f.with_suffix(".json").write_text('{"kind": "model",\n "name": "lk",\n "'
                                              + "k" * (n * 100) + '": 1,\n "x": 2}\n')
        elif kind == "chain":
            docs = ["kind: group\nname: c0\nmodel: users\nrules: [{property: ltv, op: gte, value: 1}]"]
            docs += [f"kind: group\nname: c{i}\nmodel: users\nrules: [{{group: c{i - 1}, op: member}}]"
                     for i in range(1, n * 25)]
            f.write_text("\n---\n".join(docs) + "\n")
        elif kind == "dag":
            docs = ["kind: group\nname: c0\nmodel: users\nrules: [{property: ltv, op: gte, value: 1}]"]
            docs += [f"kind: group\nname: c{i}\nmodel: users\nmatch: any\nrules: "
                     f"[{{group: c{i - 1}, op: member}}, {{group: c{i - 1}, op: not_member}}]"
                     for i in range(1, n)]
            f.write_text("\n---\n".join(docs) + "\n")
        elif kind == "template":
            f.write_text("kind: model\nname: t\nprimary_key: user_id\ndescription: "
                         + json.dumps(template) + "\n", encoding="utf-8")
        elif kind == "separator":
            f.write_text(f"kind: model\nname: s\ndescription: \"a{sep}b\"\nprimary_key: user_id\n"
                         "colour: 1\n", encoding="utf-8")
            f.with_suffix(".json").write_text(
                '{"kind": "model", "name": "sj", "description": "a' + sep + 'b",\n'
                ' "primary_key": "user_id",\n "colour": 1}\n', encoding="utf-8")
        elif kind == "bytes":
            f.write_bytes(bytes(range(256))[n:n + 40] * 3)
        else:
            f.write_text(yaml.safe_dump(value, allow_unicode=True) if value is not None else "")
    return apply


MUTATIONS = st.lists(st.one_of(set_value(), rename_key(), insert_text(), add_document()),
                     min_size=1, max_size=3)

# --- the properties -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    """The example project with its warehouse built once (each case copies it)."""
    with tempfile.TemporaryDirectory() as tmp:
        project = copy_example(Path(tmp))
        sql(project, "SELECT 1")
        yield project


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    emu = Emulator(EmulatorConfig(port=0))
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


class _Hung(BaseException):  # not Exception: nothing in brazecfg may swallow it
    pass


def _hung(signum: int, frame: object) -> None:
    raise _Hung("a run went on past 3x the time limit")


def check_run(project: Path, args: list[str]) -> None:
    started = time.monotonic()
    # A hang fails the case (and hypothesis shrinks it) instead of stalling CI.
    previous = signal.signal(signal.SIGALRM, _hung)
    signal.setitimer(signal.ITIMER_REAL, MAX_SECONDS * 3)
    try:
        out = cli(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    took = time.monotonic() - started
    assert "Traceback" not in out.output, out.output
    assert "unexpected error" not in out.output, out.output
    assert out.exit_code in (0, 1), (out.exit_code, out.output)
    assert "\x1b" not in out.output, "a raw terminal escape reached the output"
    assert took < MAX_SECONDS, f"{args[0]} took {took:.1f} s"
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert rss_mb < MAX_RSS_MB, f"{rss_mb:.0f} MB"
    if args[0] != "validate":
        return
    for m in ERROR_LINE.finditer(out.stderr):
        rest = out.stderr[m.end():].split("\n", 1)[0]
        prefix = visible(str(project), lines=False)  # the folder as the console shows it
        assert m.group("file").startswith(prefix), m.group(0)
        shown = project / m.group("file")[len(prefix):].lstrip("/")
        if m.group("line") is None:
            assert any(w in rest for w in FILE_LEVEL) or shown.is_dir(), m.group(0) + rest
            continue
        line, col = int(m.group("line")), int(m.group("col"))
        assert line >= 1 and col >= 1, m.group(0)
        if shown.is_file():
            text = shown.read_bytes().decode("utf-8", "replace").replace("\r\n", "\n")
            lines = text.split("\n")
            assert line <= len(lines), (m.group(0), rest, len(lines))
            assert col <= len(lines[line - 1]) + 1, (m.group(0), rest)
            key = re.match(r"(?:\[[^\]]*\] )?unknown key '([A-Za-z_]{3,40})'", rest)
            if key:  # the line shown holds the key reported
                assert key.group(1) in lines[line - 1], (m.group(0), rest, lines[line - 1])


@seed(SEED)
@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(mutations=MUTATIONS, do_plan=st.integers(0, 2),
       folder=st.sampled_from(["p", "p", "p", "proj[bold]", "d[/x]", "p\x1b[31m", "p `x`"]))
def test_broken_projects_fail_cleanly(base: Path, emulator: Emulator,
                                      monkeypatch: pytest.MonkeyPatch,
                                      mutations: list[Mutation], do_plan: int,
                                      folder: str) -> None:
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", emulator.url)
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / folder
        shutil.copytree(base, project)
        for mutate in mutations:
            mutate(project)
        redact.forget_all()
        check_run(project, ["validate", str(project)])
        if do_plan == 0:
            check_run(project, ["plan", str(project), "--now", NOW])
