"""The pull-request comment (cli/markdown.py), on Plan objects built directly: a million users
stays under GitHub's limit, hostile names render as text, the summary comes first."""

from __future__ import annotations

import re
from collections import Counter

from brazecfg.cli.markdown import BUDGET, GITHUB_LIMIT, md, size
from brazecfg.cli.render import render_plan_markdown
from brazecfg.plan.definition import (
    ConfigAction,
    ConfigChange,
    DestinationPlan,
    Issue,
    Plan,
)
from brazecfg.plan.guardrails import Tripped


def _destination(name: str, users: int, attributes: int, groups: int) -> DestinationPlan:
    d = DestinationPlan(name, "sync", "users")
    d.counts = Counter({"create": users // 2, "update": users // 4, "delete": users // 4})
    d.field_sets = Counter({f"attribute_{i:02d}": users // 2 + i for i in range(attributes)})
    d.field_removals = Counter({f"attribute_{i:02d}": i for i in range(attributes)})
    d.joins = Counter({f"group_{i:02d}": users // 3 for i in range(groups)})
    d.leaves = Counter({f"group_{i:02d}": users // 5 for i in range(groups)})
    d.issue_count = 120_000
    d.issues = [Issue(str(9_000_000 + i), "email", "not a valid email address")
                for i in range(50)]
    d.events_to_send = Counter({"purchase": users, "login": users * 3})
    d.failed_last_time = 12
    d.data_points = users * attributes
    d.guardrails = [Tripped("max_delete_share", "250,000 of 1,000,000 synced users (25%) would "
                            "be deleted")]
    d.full_read_reason = "first run"
    return d


def _plan(*destinations: DestinationPlan, config: int = 0) -> Plan:
    changes = tuple(ConfigChange(ConfigAction.UPDATE, f"property/p{i}", ("sql", "type"))
                    for i in range(config))
    return Plan(changes, destinations, "f" * 16, 3)


def test_a_million_users_50_attributes_20_groups_stays_under_the_limit() -> None:
    text = render_plan_markdown(_plan(_destination("braze_users", 1_000_000, 50, 20),
                                      config=70))
    assert size(text) < GITHUB_LIMIT and size(text) <= BUDGET
    # Summary first: headline and table before the first folded section.
    first_details = text.index("<details>")
    assert text.index("**Plan: 500,000 to create") < first_details
    assert text.index("| destination | mode | create |") < first_details
    assert text.index("Apply refuses this plan") < first_details
    assert text.count("<details>") == text.count("</details>") == 2
    assert "<code>attribute&#95;49</code> | 500,049 | 49 |" in text  # every attribute listed
    assert "<code>group&#95;19</code> | 333,333 | 200,000 |" in text  # every group listed
    assert "and 119,980 more" in text


def test_huge_plans_leave_details_out_and_say_so() -> None:
    dests = [_destination(f"dest_{i:03d}", 1_000_000, 50, 20) for i in range(300)]
    text = render_plan_markdown(_plan(*dests, config=5000))
    assert size(text) <= BUDGET < GITHUB_LIMIT
    assert "left out to stay under GitHub's comment limit" in text
    assert text.count("<details>") == text.count("</details>")  # never a half section
    assert "| and 250 more |" in text  # the summary table is capped too


def test_hostile_names_render_as_text() -> None:
    hostile = ("<script>alert(1)</script> @octocat | [x](https://evil.example) **b** `c` "
               "\u202egnp.exe\n# heading <!--")
    d = _destination(hostile, 100, 1, 1)
    d.field_sets = Counter({hostile: 3})
    d.joins = Counter({hostile: 2})
    d.issues = [Issue(hostile, hostile, hostile)]
    d.issue_count = 1
    d.guardrails = [Tripped("max_deletes", hostile)]
    d.binding_changes = [hostile]
    text = render_plan_markdown(_plan(d))
    for raw in ("<script", "@octocat", "](", "https://", "**b**", "`c`", "\u202e", "<!--",
                "\n# heading"):
        assert raw not in text, raw
    rows = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert all(ln.count("|") in (4, 5, 10) for ln in rows)  # no cell split by a name
    assert "U+202E" in text and "U+000A" in text  # shown, not obeyed


def test_md_keeps_plain_names_readable() -> None:
    assert md("braze users 2") == "braze users 2"
    assert md("café-crème") == "café-crème"
    assert md("x" * 100, limit=10) == "x" * 10 + "&#8230;"
    assert re.fullmatch(r"(&#\d+;)+", md("*_[]()<>|@:"))


def test_no_changes_is_one_line() -> None:
    d = DestinationPlan("braze_users", "sync", "users")
    d.counts = Counter({"unchanged": 1_000_000})
    text = render_plan_markdown(_plan(d))
    assert "**No changes.**" in text and "<details>" not in text


def test_a_plan_rebuilt_from_its_json_renders_the_same() -> None:
    """`show` renders a saved plan through the plan objects rebuilt from its JSON: every key
    survives the round trip, so `show` and `plan` print the same."""
    from brazecfg.plan.definition import RemovedDestination
    from brazecfg.plan.saved import plan_from_dict

    d = _destination("braze_users", 1_000, 5, 2)
    d.events_unknown = Counter({"purchase": 3})
    d.failed_samples = [Issue("7", "", "rejected")]
    d.read_since = "2026-10-01T00:00:00+00:00"
    d.late_records = 4
    d.moved_from = "moved from destination/old (declared in brazecfg.yml)"
    d.binding_changes = ["group g now syncs to another subscription group id"]
    d.stream_renames = {"purchase": "purchases:id:purchase"}
    d.reset_state = True
    d.guardrail_limits = {"max_delete_share": 0.25}
    plan = _plan(d, config=3)
    plan.removed_destinations = (RemovedDestination("gone", 10, 2),)
    plan.targets = ("braze_users",)
    plan.allowed = frozenset({"max_delete_share"})
    doc = plan.to_dict()
    again = plan_from_dict(doc)
    assert again.to_dict() == doc
    assert render_plan_markdown(again) == render_plan_markdown(plan)
