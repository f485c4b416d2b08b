from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from brazecfg.config.loader import load_project
from brazecfg.model.graph import dependency_order, find_cycle, fingerprints

VALID = Path(__file__).parent / "cases" / "valid"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    shutil.copytree(VALID, tmp_path / "p")
    return tmp_path / "p"


def test_dependency_order_puts_parents_first() -> None:
    order = dependency_order(load_project(VALID, env={"BRAZE_API_KEY": "k"}))
    pos = {ref: i for i, ref in enumerate(order)}
    assert pos["app/warehouse"] < pos["source/purchases"] < pos["property/ltv"]
    assert pos["group/high_value"] < pos["group/recent_big"] < pos["destination/braze_users"]
    assert order[0] == "app/braze"  # ties by kind, then name


def test_fingerprints_ignore_rendered_secrets_and_follow_parents(copy: Path) -> None:
    before = fingerprints(load_project(copy, env={"BRAZE_API_KEY": "one"}))
    assert all(len(fp) == 16 for fp in before.values())
    assert fingerprints(load_project(copy, env={"BRAZE_API_KEY": "two"})) == before
    src = copy / "sources" / "sources.yml"
    src.write_text(src.read_text().replace("key: user_id", "key: customer_id"))
    after = fingerprints(load_project(copy, env={"BRAZE_API_KEY": "one"}))
    changed = {ref for ref in before if before[ref] != after[ref]}
    assert changed == {"source/purchases", "property/ltv", "property/orders", "group/high_value",
                       "group/recent_big", "destination/braze_users"}


def test_find_cycle() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle({"a": ["b"], "b": []}) is None
