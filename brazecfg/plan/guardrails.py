"""Guardrails: limits a plan must stay within before apply sends anything.

They catch the plans that are true but almost certainly unwanted: an emptied source table
(a failed upstream load) planning the deletion of every user, a key whose type changed
planning a delete and a create of everyone, a budget blown by a new attribute. Each is on by
default, configurable in ``brazecfg.yml`` (``guardrails:``) and per destination, shown in
every plan, and overridden once with ``--allow NAME`` or for good by a reviewed config change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Name -> default. Shares trip only from MIN_COUNT records, so small projects stay usable.
DEFAULTS: dict[str, Any] = {
    "empty_source": True,
    "max_delete_share": 0.25,
    "max_deletes": None,
    "max_unsubscribe_share": 0.5,
    "max_data_points": None,
    "max_events": None,
}
NAMES = tuple(DEFAULTS)
MIN_COUNT = 10


@dataclass(frozen=True)
class Tripped:
    """A guardrail this plan trips, with what to do about it."""

    name: str
    message: str


def limits(project: Mapping[str, Any], destination: Mapping[str, Any]) -> dict[str, Any]:
    """The limits in force for a destination: defaults, then the project's, then its own."""
    return {**DEFAULTS, **dict(project), **dict(destination)}


def check(limits: Mapping[str, Any], *, confirmed: int, rows: int, deletes: int,
          members: Mapping[str, int], leaves: Mapping[str, int], data_points: int,
          events: int) -> list[Tripped]:
    """Every guardrail the numbers of one destination's plan trip."""
    out: list[Tripped] = []
    if limits["empty_source"] and confirmed and rows == 0:
        out.append(Tripped("empty_source", (
            f"the model returned no rows while the state holds {confirmed:,} users: a failed "
            "load? Check the source; if it is really empty, pass --allow empty_source")))
    share = limits["max_delete_share"]
    if out:
        pass  # an empty source explains its deletions: one guardrail, one override
    elif deletes >= MIN_COUNT and confirmed and deletes / confirmed > share:
        out.append(Tripped("max_delete_share", (
            f"{deletes:,} of {confirmed:,} synced users ({deletes / confirmed:.0%}) would be "
            f"deleted, over max_delete_share {share:.0%}: pass --allow max_delete_share if "
            "this is intended")))
    cap = limits["max_deletes"]
    if cap is not None and deletes > cap:
        out.append(Tripped("max_deletes", f"{deletes:,} deletions, over max_deletes {cap:,}"))
    share = limits["max_unsubscribe_share"]
    for group, n in sorted(leaves.items()):
        had = members.get(group, 0)
        if n >= MIN_COUNT and had and n / had > share:
            out.append(Tripped("max_unsubscribe_share", (
                f"{n:,} of {had:,} members of {group} ({n / had:.0%}) would be unsubscribed, "
                f"over max_unsubscribe_share {share:.0%}")))
    cap = limits["max_data_points"]
    if cap is not None and data_points > cap:
        out.append(Tripped("max_data_points",
                           f"about {data_points:,} data points, over max_data_points {cap:,}"))
    cap = limits["max_events"]
    if cap is not None and events > cap:
        out.append(Tripped("max_events", f"{events:,} events to send, over max_events {cap:,}"))
    return out
