"""The valid case loads into exactly these dataclasses."""

from __future__ import annotations

from pathlib import Path

import pytest

from brazecfg.config.loader import load_project
from brazecfg.errors import Location
from brazecfg.model.resources import (
    App,
    Destination,
    EventSpec,
    Filter,
    Group,
    Model,
    Project,
    Property,
    Rule,
    Source,
    SubscriptionMapping,
)

ROOT = Path(__file__).parent / "cases" / "valid"


@pytest.fixture
def project(monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.chdir(ROOT)
    return load_project(".", env={"BRAZE_API_KEY": "key-from-env"})


def test_settings(project: Project) -> None:
    s = project.settings
    assert (s.name, s.root, s.state_dir, s.lockfile) == (
        "shop", str(ROOT.resolve()), ".state", "brazecfg.lock.json")
    assert s.vars == {"paid": "paid", "threshold": 100}


def test_resources(project: Project) -> None:
    loc = Location
    assert sorted(r.ref for r in project.all()) == sorted([
        "app/braze", "app/warehouse", "model/users", "source/users_table", "source/purchases",
        "property/user_id", "property/email", "property/signup", "property/ltv",
        "property/orders", "group/high_value", "group/recent_big", "destination/braze_users"])
    assert project.apps["warehouse"] == App(
        kind="app", name="warehouse", location=loc("apps/apps.yml", 1, 1), type="sqlite",
        options={"path": "warehouse.db"})
    braze = project.apps["braze"]
    assert braze.options == {"api_key": "key-from-env",
                             "rest_endpoint": "https://rest.iad-01.braze.com",
                             "timeout_seconds": 10}
    assert braze.declared["options"]["api_key"] == "{{ env('BRAZE_API_KEY') }}"
    assert braze.where("options") == loc("apps/apps.yml", 9, 1)
    assert project.models["users"] == Model(
        kind="model", name="users", location=loc("models.json", 2, 3),
        description="People who bought something", primary_key="user_id")
    assert project.sources["purchases"] == Source(
        kind="source", name="purchases", location=loc("sources/sources.yml", 10, 1),
        app="warehouse", model="users",
        query="SELECT * FROM purchases WHERE created_at >= '2024-01-01'", key="user_id")
    assert project.sources["users_table"].schedule == "@hourly"
    assert project.properties["ltv"] == Property(
        kind="property", name="ltv", location=loc("props/props.yml", 19, 1), source="purchases",
        type="float", column="amount", aggregate="sum",
        filters=(Filter("status", "eq", "paid"), Filter("created_at", "within", "1 year")))
    # Fingerprints see what a var rendered to (committed, not secret), so changing a var
    # changes the fingerprint; an env() value (a possible secret) stays unrendered there.
    assert project.properties["ltv"].declared["filters"][0]["value"] == "paid"
    assert project.apps["braze"].declared["options"]["api_key"] == "{{ env('BRAZE_API_KEY') }}"
    assert project.properties["orders"].column is None
    assert project.groups["recent_big"] == Group(
        kind="group", name="recent_big", location=loc("props/props.yml", 41, 1), model="users",
        match="any", rules=(Rule(group="high_value", op="member"),
                            Rule(property="signup", op="within", value="30 days")))
    assert project.groups["high_value"].match == "all"
    assert project.destinations["braze_users"] == Destination(
        kind="destination", name="braze_users", location=loc("props/props.yml", 49, 1),
        app="braze", model="users", mode="additive",
        mapping={"external_id": "user_id", "email": "email", "dob": "signup"},
        custom_attributes={"lifetime_value": "ltv", "on": "orders"},
        subscription_groups=(
            SubscriptionMapping("high_value", "8f9e1c2a-0000-4000-8000-000000000001"),
            SubscriptionMapping("recent_big", "8f9e1c2a-0000-4000-8000-000000000002")),
        unsubscribe_on_leave=True, groups_attribute="brazecfg_groups",
        events=(EventSpec(name="purchase", source="purchases", type="purchase", key="id",
                          time="created_at", product_id="sku", price="amount",
                          currency_code="USD"),))


def test_project_helpers_work_on_the_loaded_project(project: Project) -> None:
    assert project.primary_source("users").name == "users_table"
    assert [p.name for p in project.model_properties("users")] == [
        "email", "ltv", "orders", "signup", "user_id"]
