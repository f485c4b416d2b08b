"""Broken and hostile input (issue 14), through the CLI: no crash, no hang, no leak.

Each test is an example of a class of input; the fix it proves is a mechanism (one console
that escapes, one scrubber, one set of resource bounds), not the one case shown.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from brazecfg import redact
from brazecfg.emulator import Emulator, EmulatorConfig
from tests.helpers import NOW, Run, cli, copy_example

LOCATED = re.compile(r"^error \S+:\d+:\d+: ", re.M)


@pytest.fixture(autouse=True)
def _fresh_scrubber() -> Iterator[None]:
    redact.forget_all()
    yield
    redact.forget_all()


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    emu = Emulator(EmulatorConfig(port=0))
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def project(tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", emulator.url)
    return copy_example(tmp_path)


def clean(run: Run) -> None:
    """No traceback, no 'unexpected error': every failure is one the user can act on."""
    assert "Traceback" not in run.output, run.output
    assert "unexpected error" not in run.output, run.output


def write(project: Path, rel: str, text: str) -> Path:
    path = project / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (old, path)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


# --- crashes: rich markup -------------------------------------------------------------------


def test_markup_in_a_folder_name_prints_as_written(tmp_path: Path) -> None:
    src = copy_example(tmp_path)
    target = tmp_path / "proj[bold]"
    shutil.move(src, target)
    out = cli("validate", str(target))
    assert out.exit_code == 0, out.output
    assert "proj[bold]" in out.stdout


@pytest.mark.parametrize("value", ["[/x]", "[bold]t[/bold]", "[link=http://x]t"])
def test_markup_in_error_text_never_crashes(project: Path, value: str) -> None:
    edit(project / "sources" / "users.yml", "table: users\n", f"table: {json.dumps(value)}\n")
    out = cli("plan", str(project), "--now", NOW)
    clean(out)
    assert out.exit_code == 1
    assert value in out.stderr  # shown as written, not interpreted
    out = cli("plan", str(project), "--now", value)
    clean(out)
    assert value in out.stderr


def test_control_characters_in_dynamic_text_are_shown_escaped(tmp_path: Path) -> None:
    src = copy_example(tmp_path)
    target = tmp_path / "p\x1b[31m[/x]"
    shutil.move(src, target)
    out = cli("validate", str(target))
    clean(out)
    assert out.exit_code == 0, out.output
    assert "\x1b" not in out.output and "p\\x1b[31m[/x]" in out.stdout, out.stdout


# --- crashes: numbers -----------------------------------------------------------------------


@pytest.mark.parametrize("line", [
    "timeout_seconds: 0", "timeout_seconds: -1", "timeout_seconds: .nan",
    "timeout_seconds: .inf", "timeout_seconds: 1e308", "timeout_seconds: \"0\"",
    "concurrency: 100000000000000000000", "concurrency: 0", "max_retries: 1000",
    "timeout_seconds: 1e999",
])
def test_numbers_out_of_range_are_located_errors(project: Path, line: str) -> None:
    edit(project / "apps" / "braze.yml", "  rest_endpoint:", f"  {line}\n  rest_endpoint:")
    started = time.monotonic()
    out = cli("validate", str(project))
    clean(out)
    assert out.exit_code == 1, out.output
    assert LOCATED.search(out.stderr), out.stderr
    assert "braze.yml:" in out.stderr
    assert time.monotonic() - started < 10


def test_a_number_from_a_template_is_range_checked(project: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAZECFG_CONCURRENCY", "100000000000000000000")
    edit(project / "apps" / "braze.yml", "  rest_endpoint:",
         "  concurrency: \"{{ env('BRAZECFG_CONCURRENCY') }}\"\n  rest_endpoint:")
    out = cli("validate", str(project))
    clean(out)
    assert out.exit_code == 1 and "out of range" in out.stderr
    assert "100000000000000000000" not in out.output  # a rendered value is never quoted


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_json_non_finite_numbers_are_rejected(project: Path, number: str) -> None:
    write(project, "groups/j.json", json.dumps({
        "kind": "group", "name": "j", "model": "users",
        "rules": [{"property": "ltv", "op": "gte", "value": 1}]}).replace("1}]", number + "}]"))
    out = cli("validate", str(project))
    clean(out)
    assert out.exit_code == 1 and re.search(r"j\.json:1:\d+: invalid JSON: .* is not a finite "
                                            r"number", out.stderr), out.stderr
    column = int(re.search(r"j\.json:1:(\d+)", out.stderr).group(1))  # type: ignore[union-attr]
    text = (project / "groups" / "j.json").read_text()
    assert text[column - 1:].startswith(number), (text, column)


# --- crashes: depth -------------------------------------------------------------------------


def test_json_nested_400_deep_is_a_located_error(project: Path) -> None:
    write(project, "deep.json", '{"kind": "app", "name": "d", "x": ' + "[" * 400 + "]" * 400 + "}")
    out = cli("validate", str(project))
    clean(out)
    assert out.exit_code == 1 and "nested more than" in out.stderr
    assert re.search(r"deep\.json:1:\d+", out.stderr)


def _chain(n: int, twice: bool = False) -> str:
    docs = ["kind: group\nname: g0\nmodel: users\nrules:\n  - {property: ltv, op: gte, value: 1}"]
    for i in range(1, n):
        rules = f"  - {{group: g{i - 1}, op: member}}\n"
        if twice:
            rules += f"  - {{group: g{i - 1}, op: not_member}}\n"
        docs.append(f"kind: group\nname: g{i}\nmodel: users\nmatch: any\nrules:\n{rules}")
    return "\n---\n".join(docs) + "\n"


def test_400_chained_member_rules_are_a_located_error(project: Path) -> None:
    write(project, "groups/chain.yml", _chain(400))
    for command in ("validate", "plan"):
        out = cli(command, str(project), *(["--now", NOW] if command == "plan" else []))
        clean(out)
        assert out.exit_code == 1 and "nests groups more than" in out.stderr, out.output
        assert re.search(r"chain\.yml:\d+:\d+", out.stderr)


def test_group_dag_using_the_previous_twice_fails_fast(project: Path) -> None:
    write(project, "groups/dag.yml", _chain(20, twice=True))
    started = time.monotonic()
    out = cli("plan", str(project), "--now", NOW)
    clean(out)
    assert time.monotonic() - started < 10
    assert out.exit_code == 1 and "expands to more than" in out.stderr
    assert re.search(r"dag\.yml:\d+:\d+", out.stderr)


def test_a_small_group_dag_still_plans(project: Path) -> None:
    write(project, "groups/dag.yml", _chain(6, twice=True))
    out = cli("plan", str(project), "--now", NOW)
    clean(out)
    assert out.exit_code == 0, out.output


# --- crashes: paths and a project with no destination ---------------------------------------


def test_state_dir_that_is_a_file_is_a_located_error(project: Path) -> None:
    (project / "statefile").write_text("x")
    edit(project / "brazecfg.yml", "name: example\n", "name: example\nstate: {dir: statefile}\n")
    for command in ("plan", "apply"):
        out = cli(command, str(project), "--now", NOW, *(["--auto-approve"] if command == "apply" else []))
        clean(out)
        assert out.exit_code == 1 and re.search(r"brazecfg\.yml:\d+:\d+: state\.dir", out.stderr)


def test_sqlite_path_too_long_names_the_app(project: Path) -> None:
    edit(project / "apps" / "warehouse.yml", "path: warehouse.db", "path: " + "a" * 300 + ".db")
    out = cli("plan", str(project), "--now", NOW)
    clean(out)
    assert out.exit_code == 1 and "app/warehouse" in out.stderr


@pytest.mark.parametrize("endpoint", ["http://rest braze.example", "http://[::1",
                                      "https://rest.iad-01.braze.com?token=abcd1234"])
def test_a_malformed_rest_endpoint_is_a_clear_error(project: Path, endpoint: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: "unexpected error (InvalidURL). This is a bug in brazecfg" for the first two;
    the value, rendered from the environment, is never quoted."""
    monkeypatch.setenv("BRAZE_REST_ENDPOINT", endpoint)
    out = cli("plan", str(project), "--now", NOW)
    clean(out)
    assert out.exit_code == 1, out.output
    assert "app/braze: rest_endpoint must be an http(s) URL" in out.stderr, out.output
    assert "abcd1234" not in out.output and "rest braze" not in out.output


@pytest.mark.parametrize("seed", ["/dev/zero", "/etc/passwd", "../outside.sql"])
def test_seed_must_be_a_regular_file_in_the_project(project: Path, seed: str) -> None:
    (project.parent / "outside.sql").write_text("CREATE TABLE t (x);")
    edit(project / "apps" / "warehouse.yml", "seed: warehouse.sql", f"seed: {seed}")
    out = cli("plan", str(project), "--now", NOW)
    clean(out)
    assert out.exit_code == 1 and "options.seed" in out.stderr
    assert "root" not in out.stderr.replace("project root", "")  # no line of /etc/passwd


def test_plan_out_to_a_folder_is_a_clear_error(project: Path) -> None:
    out = cli("plan", str(project), "--now", NOW, "--out", str(project))
    clean(out)
    assert out.exit_code == 1 and "is a folder" in out.stderr


def test_a_project_with_no_destination_plans_and_applies(project: Path) -> None:
    (project / "destinations" / "braze_users.yml").unlink()
    for args in (("plan", "--now", NOW), ("apply", "--auto-approve", "--now", NOW)):
        out = cli(args[0], str(project), *args[1:])
        clean(out)
        assert out.exit_code == 0, out.output


# --- hangs and blow-ups ---------------------------------------------------------------------


def test_yaml_merge_key_bomb_is_rejected_quickly(project: Path) -> None:
    lines = ["a0: &a0 {x: 1}"]
    for i in range(1, 30):
        lines.append(f"a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}], y{i}: 1}}")
    write(project, "bomb.yml", "\n".join(lines) + "\nkind: app\nname: b\ntype: braze\n")
    started = time.monotonic()
    out = cli("validate", str(project))
    clean(out)
    assert time.monotonic() - started < 10
    assert out.exit_code == 1 and LOCATED.search(out.stderr)


def test_billion_laughs_vars_is_rejected(project: Path) -> None:
    lines = ["name: example", "vars:", "  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        prev = f"*l{i - 1}"
        lines.append(f"  l{i}: &l{i} [{', '.join([prev] * 9)}]")
    (project / "brazecfg.yml").write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    out = cli("validate", str(project))
    clean(out)
    assert time.monotonic() - started < 10
    assert out.exit_code == 1 and "aliases and merges expand" in out.stderr
    assert re.search(r"brazecfg\.yml:\d+:\d+", out.stderr)


@pytest.mark.parametrize("template", [
    "{{ 'a' * 10**9 }}",
    "{% for a in 'x'*1000 %}{% for b in 'x'*1000 %}{% for c in 'x'*1000 %}{% endfor %}"
    "{% endfor %}{% endfor %}",
    "{{ 3 ** 100000000 }}",
    "{{ 'a'|center(1e9) }}",
    "{{ '%0999999999d'|format(1) }}",
    "{{ '{:999999999}'.format(1) }}",
    "{{ ('x'*90000).replace('x', 'x'*90000) }}",
])
def test_template_resource_bombs_are_located_errors(project: Path, template: str) -> None:
    edit(project / "apps" / "warehouse.yml", "description: The example",
         f"description: \"{template}\"\nsummary_was: The example")
    edit(project / "apps" / "warehouse.yml", "summary_was: ", "# ")
    started = time.monotonic()
    out = cli("validate", str(project))
    clean(out)
    assert time.monotonic() - started < 10
    assert out.exit_code == 1 and "template stopped" in out.stderr, out.output
    assert re.search(r"warehouse\.yml:\d+:\d+", out.stderr)


def test_templates_cannot_change_vars_for_later_files(project: Path) -> None:
    write(project, "a_first.yml", "kind: app\nname: aa\ntype: braze\ndescription: "
          "\"{{ vars.update({'paid_status': 'HACKED'}) }}\"\noptions: {api_key: k, "
          "rest_endpoint: 'http://x'}\n")
    write(project, "z_later.yml", "kind: app\nname: zz\ntype: braze\ndescription: "
          "\"{{ var('paid_status') }}\"\noptions: {api_key: k, rest_endpoint: 'http://x'}\n")
    out = cli("validate", str(project))
    clean(out)
    assert out.exit_code == 1 and "unsafe" in out.stderr and "a_first.yml:4" in out.stderr
    assert "z_later.yml" not in out.stderr


# --- leaks ----------------------------------------------------------------------------------

CANARY = "Zq7CanaryS3cret"


def everything(project: Path, run: Run, *extra: Path) -> str:
    """stdout, stderr and every file brazecfg wrote (state, lockfile, saved plans)."""
    text = run.output
    for path in [*project.rglob("*"), *extra]:
        if path.is_file() and (".brazecfg" in path.parts or path.suffix == ".json"):
            text += path.read_bytes().decode("utf-8", "replace")
    return text


def _canary_cases() -> list[tuple[str, str, str, str]]:
    """(id, file, old text, new text), each embedding env('BRAZECFG_SECRET')."""
    secret = "{{ env('BRAZECFG_SECRET') }}"
    return [
        ("query", "sources/users.yml", "table: users\n",
         f"query: \"SELECT * FROM users WHERE coalesce(email, '') <> '' {secret}\"\n"),
        ("table", "sources/users.yml", "table: users\n", f"table: \"{secret}\"\n"),
        ("column", "properties/users.yml", "column: first_name\n", f"column: \"{secret}\"\n"),
        ("endpoint", "apps/braze.yml",
         "rest_endpoint: \"{{ env('BRAZE_REST_ENDPOINT', 'http://127.0.0.1:4567') }}\"",
         f"rest_endpoint: \"http://127.0.0.1:9/{secret}\"\n  max_retries: 0"),
        ("description", "models/users.yml", "primary_key: user_id\n",
         f"primary_key: user_id\ndescription: \"{secret}\"\ncolour: 1\n"),
    ]


@pytest.mark.parametrize("case", _canary_cases(), ids=lambda c: c[0])
def test_secret_canary_never_leaks(project: Path, monkeypatch: pytest.MonkeyPatch,
                                   case: tuple[str, str, str, str]) -> None:
    monkeypatch.setenv("BRAZECFG_SECRET", CANARY)
    _, rel, old, new = case
    edit(project / rel, old, new)
    saved = project.parent / "plan.json"
    runs = [cli("validate", str(project)),
            cli("plan", str(project), "--now", NOW, "--out", str(saved)),
            cli("plan", str(project), "--now", NOW, "--format", "markdown"),
            cli("plan", str(project), "--now", NOW, "--format", "json"),
            cli("apply", str(project), "--now", NOW, "--auto-approve")]
    for run in runs:
        clean(run)
        assert CANARY not in everything(project, run, saved), run.output


@pytest.mark.parametrize("password", ["p@ss:w/rd" + CANARY, CANARY + "@x:1/y", "a:b@" + CANARY])
def test_url_password_with_unencoded_characters_never_leaks(
        project: Path, monkeypatch: pytest.MonkeyPatch, password: str) -> None:
    monkeypatch.setenv("BRAZECFG_PG_PASSWORD", password)
    (project / "apps" / "warehouse.yml").write_text(
        "kind: app\nname: warehouse\ntype: postgres\noptions:\n"
        "  url: \"postgresql://user:{{ env('BRAZECFG_PG_PASSWORD') }}@127.0.0.1:9/db\"\n")
    out = cli("plan", str(project), "--now", NOW)
    clean(out)
    assert out.exit_code == 1 and "app/warehouse" in out.stderr
    for piece in re.split(r"[@:/]", password):
        if len(piece) >= 4:
            assert piece not in out.output, out.output


def test_seed_file_content_never_leaks(project: Path) -> None:
    (project / "warehouse.sql").write_text(f"{CANARY} is not SQL;\n")
    out = cli("plan", str(project), "--now", NOW)
    clean(out)
    assert out.exit_code == 1 and "options.seed" in out.stderr
    assert CANARY not in out.output


def test_env_outside_the_allow_list_is_refused(project: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_CI_SECRET", CANARY)
    edit(project / "models" / "users.yml", "primary_key: user_id\n",
         "primary_key: user_id\ndescription: \"{{ env('SOME_CI_SECRET') }}\"\n")
    out = cli("validate", str(project))
    clean(out)
    assert out.exit_code == 1 and "env('SOME_CI_SECRET') is not allowed" in out.stderr
    assert re.search(r"users\.yml:\d+:\d+", out.stderr) and CANARY not in out.output
    edit(project / "brazecfg.yml", "name: example\n", "name: example\nenv: [SOME_CI_SECRET]\n")
    out = cli("validate", str(project))
    assert out.exit_code == 0, out.output


# --- output that can be abused --------------------------------------------------------------


def test_hostile_ids_are_escaped_in_markdown_and_text(project: Path) -> None:
    from tests.helpers import sql

    hostile = "x`\n\n# Fake heading\n![beacon](http://evil/p.png)\x1b[31m"
    edit(project / "warehouse.sql", "id INTEGER PRIMARY KEY", "id TEXT PRIMARY KEY")
    sql(project, "INSERT INTO users (id, email, first_name, last_name, country, updated_at) "
                 "VALUES (?, 'not-an-email', 'a', 'b', 'GB', '2026-01-01')", (hostile,))
    md = cli("plan", str(project), "--now", NOW, "--format", "markdown")
    clean(md)
    lines = md.stdout.splitlines()
    # no heading, image or HTML of the data's making (the comment's own folds aside)
    assert not [x for x in lines if x.startswith(("# ", "![", "<"))
                and not x.startswith(("<details>", "</details>"))]
    # the id is there, shown as text: no image or link syntax survives it
    assert "![beacon](" not in md.stdout and "](http" not in md.stdout
    assert "Fake heading" in md.stdout
    assert "\x1b" not in md.stdout
    text = cli("plan", str(project), "--now", NOW)
    clean(text)
    assert "\x1b" not in text.stdout and "\\x1b[31m" in text.stdout
    assert "\n# Fake heading" not in text.stdout


def test_keys_with_whitespace_or_controls_are_reported_not_sent(
        project: Path, emulator: Emulator) -> None:
    from tests.helpers import emulator_get, sql

    edit(project / "warehouse.sql", "id INTEGER PRIMARY KEY", "id TEXT PRIMARY KEY")
    for key in (" 1", "1 ", "1\t", "1\n", "a\x1bb"):
        sql(project, "INSERT INTO users (id, email, first_name, last_name, country, updated_at) "
                     "VALUES (?, NULL, 'a', 'b', 'GB', '2026-01-01')", (key,))
    out = cli("apply", str(project), "--now", NOW, "--auto-approve")
    clean(out)
    assert "values will not be sent" in out.stdout and "whitespace" in out.stdout, out.stdout
    plan = cli("plan", str(project), "--now", NOW, "--format", "json", "--full-refresh")
    dests = json.loads(plan.stdout)["destinations"]
    issues = [i for d in (dests.values() if isinstance(dests, dict) else dests)
              for i in d["issues"]["first"]]
    assert sum("whitespace" in i["reason"] or "control" in i["reason"] for i in issues) == 5, issues
    ids = {u["external_id"] for u in emulator_get(emulator.url, "users")["users"]}
    assert not ids & {" 1", "1 ", "1\t", "1\n", "a\x1bb"}


# --- diagnostics pointing to the right place ------------------------------------------------


@pytest.mark.parametrize("sep", ["\u2028", "\u0085", "\u2029"])
def test_line_separators_do_not_shift_lines(project: Path, sep: str) -> None:
    write(project, "ls.yml", f"kind: model\nname: ls\ndescription: \"a{sep}b\"\nprimary_key: nope\n"
                             "colour: 1\n")
    write(project, "ls.json", '{"kind": "model", "name": "lj", "description": "a' + sep
          + 'b",\n "primary_key": "nope",\n "colour": 1}\n')
    out = cli("validate", str(project))
    clean(out)
    assert "ls.yml:5:1: [model/ls] unknown key 'colour'" in out.stderr, out.stderr
    assert "ls.json:3:2: [model/lj] unknown key 'colour'" in out.stderr, out.stderr


def test_long_json_keys_keep_locations(project: Path) -> None:
    key = "k" * 2000
    write(project, "long.json", '{"kind": "model", "name": "lj",\n "primary_key": "user_id",\n'
          f' "{key}": 1,\n "colour": 2}}\n')
    out = cli("validate", str(project))
    clean(out)
    assert re.search(r"long\.json:3:2: \[model/lj\] unknown key 'k+", out.stderr), out.stderr
    assert "long.json:4:2: [model/lj] unknown key 'colour'" in out.stderr, out.stderr


@pytest.mark.parametrize("kind", ["kind: null", "kind:", "kind: ''"])
def test_empty_kind_is_reported_at_the_key(project: Path, kind: str) -> None:
    write(project, "k.yml", f"name: k\n{kind}\nmodel: users\n")
    out = cli("validate", str(project))
    clean(out)
    assert "k.yml:2:1: " in out.stderr, out.stderr


def test_unclosed_quote_is_reported_where_it_opens(project: Path) -> None:
    write(project, "q.yml", "kind: model\nname: \"q\nprimary_key: user_id\n" + "x: 1\n" * 20)
    out = cli("validate", str(project))
    clean(out)
    assert "q.yml:2:7: invalid YAML" in out.stderr, out.stderr


def test_invalid_project_file_has_no_knock_on_errors(project: Path) -> None:
    edit(project / "brazecfg.yml", "name: example\n", "name: example\nextra: 1\n")
    out = cli("validate", str(project))
    clean(out)
    assert "1 problem found." in out.stderr, out.stderr
    assert "brazecfg.lock.json" not in out.stderr


def test_a_yaml_typo_or_misspelt_kind_has_no_cascade(project: Path) -> None:
    edit(project / "models" / "users.yml", "kind: model", "kind: modle")
    out = cli("validate", str(project))
    clean(out)
    assert "1 problem found." in out.stderr, out.stderr
    edit(project / "models" / "users.yml", "kind: modle", "kind: model")
    edit(project / "apps" / "warehouse.yml", "type: sqlite", "type: [sqlite")
    out = cli("validate", str(project))
    clean(out)
    assert "unknown app" not in out.stderr and "1 problem found." in out.stderr, out.stderr


def test_missing_column_at_plan_time_names_the_file_and_line(project: Path) -> None:
    edit(project / "properties" / "users.yml", "column: first_name", "column: first_nam")
    out = cli("plan", str(project), "--now", NOW)
    clean(out)
    assert out.exit_code == 1
    assert re.search(r"properties/users\.yml:\d+:\d+", out.stderr), out.stderr
    edit(project / "properties" / "users.yml", "column: first_nam", "column: first_name")
    edit(project / "sources" / "users.yml", "table: users\n", "table: usres\n")
    out = cli("plan", str(project), "--now", NOW)
    clean(out)
    line = (project / "sources" / "users.yml").read_text().splitlines().index("table: usres") + 1
    assert re.search(rf"sources/users\.yml:{line}:\d+: app/warehouse: source/users_table "
                     r"cannot be read", out.stderr), out.stderr


def test_op_in_without_a_list_shows_its_hint(project: Path) -> None:
    edit(project / "groups" / "high_value.yml", "{property: ltv, op: gte, value: 100}",
         "{property: ltv, op: in, value: 100}")
    out = cli("validate", str(project))
    clean(out)
    assert "op in needs value: a list such as [a, b]" in out.stderr, out.stderr


def test_a_yaml_key_over_1024_characters_is_named_as_such(project: Path) -> None:
    write(project, "long.yml", "kind: model\nname: ly\n" + "k" * 1100 + ": 1\n")
    out = cli("validate", str(project))
    clean(out)
    assert "long.yml:3:1: invalid YAML: a key longer than 1024 characters" in out.stderr
