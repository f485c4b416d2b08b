"""The drift report as text (ids as examples), JSON and Markdown (counts and names only)."""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape

from brazecfg.drift.check import DestinationDrift


def _n(n: int, what: str) -> str:
    return f"{n:,} {what}{'' if n == 1 else 's'}"


def render_drift_text(console: Any, reports: list[DestinationDrift], repair: bool) -> None:
    for r in reports:
        console.print(f"[heading]Drift of {escape(r.destination)}[/]: "
                      f"{_n(r.sampled, 'synced user')} compared with Braze")
        if r.not_in_state:
            console.print(f"  [warn]{_n(r.not_in_state, 'id')} given are not in the state[/]")
        if not r.drifted:
            console.print("  [ok]no drift[/]: Braze holds what brazecfg last confirmed for "
                          "every user compared")
            continue
        if r.missing_in_braze:
            console.print(f"  [delete]{_n(r.missing_in_braze, 'user')} no longer in Braze[/]")
        for f, n in sorted(r.fields.items()):
            eg = ", ".join(r.example_ids.get(f, []))
            console.print(f"  {escape(f)}  differs for {_n(n, 'user')} [muted](e.g. "
                          f"{escape(eg)})[/]")
        for g, n in sorted(r.unsubscribed_in_braze.items()):
            console.print(f"  {escape(g)}  [warn]{_n(n, 'member')} unsubscribed in Braze[/] "
                          "(never subscribed again with respect_opt_outs)")
        for g, n in sorted(r.subscribed_in_braze.items()):
            console.print(f"  {escape(g)}  {_n(n, 'non-member')} subscribed in Braze")
        if repair:
            console.print(f"  [update]marked {_n(r.repaired_fields, 'field')} to be written "
                          f"again and forgot {_n(r.forgotten, 'user')} gone from Braze[/]: "
                          "run `brazecfg plan` to see it")
        elif r.fields or r.missing_in_braze:
            console.print("  [muted]`brazecfg drift --repair` plans these fields (and users) to "
                          "be written again[/]")


def render_drift_json(reports: list[DestinationDrift]) -> str:
    return json.dumps({"destinations": [r.to_dict() for r in reports]}, indent=2,
                      sort_keys=True) + "\n"


def render_drift_markdown(reports: list[DestinationDrift]) -> str:
    out = ["## brazecfg drift", ""]
    for r in reports:
        out.append(f"### `{r.destination}`: {r.sampled:,} users compared")
        out.append("")
        if not r.drifted:
            out += ["No drift: Braze holds what brazecfg last confirmed.", ""]
            continue
        out += ["| what | users |", "|---|---:|"]
        if r.missing_in_braze:
            out.append(f"| no longer in Braze | {r.missing_in_braze:,} |")
        out += [f"| field `{f}` differs | {n:,} |" for f, n in sorted(r.fields.items())]
        out += [f"| group `{g}`: unsubscribed in Braze | {n:,} |"
                for g, n in sorted(r.unsubscribed_in_braze.items())]
        out += [f"| group `{g}`: subscribed in Braze | {n:,} |"
                for g, n in sorted(r.subscribed_in_braze.items())]
        out.append("")
    return "\n".join(out)
