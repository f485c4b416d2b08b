from __future__ import annotations

import pytest

from brazecfg.config.templating import Renderer, TemplateProblem, render_document
from brazecfg.config.yaml import parse_yaml

SECRET = "s3cr3t-value"


def render(text: str, env: dict[str, str] | None = None) -> str:
    return Renderer(env if env is not None else {"KEY": SECRET}, {"region": "eu"}).render(text)


def problem(text: str) -> TemplateProblem:
    with pytest.raises(TemplateProblem) as info:
        render(text)
    return info.value


def test_env_var_and_vars() -> None:
    assert render("{{ env('KEY') }}") == SECRET
    assert render("{{ env('NOPE', 'dflt') }}-{{ env('NOPE', 5) }}") == "dflt-5"
    assert render("{{ var('region') }}/{{ vars.region }}") == "eu/eu"


def test_missing_env_var_names_it_and_suggests_a_default() -> None:
    p = problem("{{ env('BRAZE_API_KEY') }}")
    assert p.message == ("environment variable BRAZE_API_KEY is not set; set it or give env() "
                         "a default")


def test_unknown_variable() -> None:
    assert problem("{{ var('regoin') }}").message == "unknown variable 'regoin'; did you mean 'region'?"
    assert "is undefined" in problem("{{ nothing }}").message
    assert "has no attribute 'x'" in problem("{{ vars.x }}").message


def test_syntax_error() -> None:
    assert problem("{{ x").message.startswith("template syntax error")


@pytest.mark.parametrize("text", [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ env.__globals__ }}",
    "{{ range(3) }}",
    "{{ lipsum() }}",
])
def test_sandbox_blocks_attribute_access_and_builtins(text: str) -> None:
    p = problem(text)
    assert p.message.startswith("template error")


def test_errors_never_show_an_env_value() -> None:
    p = problem("{{ vars[env('KEY')] }}")
    assert SECRET not in p.message and "***" in p.message


def test_render_document_locates_failures_and_keeps_the_declared_text() -> None:
    docs, _ = parse_yaml("a: plain {x}\nb:\n  - \"{{ env('GONE') }}\"\n  - \"{{ 1 + 1 }}\"\n", "f.yml")
    out = render_document(docs[0], Renderer({}, {}), resource="app/x")
    assert out.value == {"a": "plain {x}", "b": ["{{ env('GONE') }}", "2"]}
    assert out.failed == {("b", 0)}
    assert [str(d) for d in out.diagnostics] == [
        "f.yml:3:5: [app/x] environment variable GONE is not set; set it or give env() a "
        "default (for example {{ env('GONE', 'fallback') }})"]
    assert docs[0].value["b"][1] == "{{ 1 + 1 }}"  # the document itself is not changed
