"""Rendering plans and results: rich text for terminals, Markdown for pull requests, JSON for CI.

Only the text renderer shows sample values (the person at the terminal may see their data);
Markdown and JSON show counts, field names, group names and record ids, never values.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.theme import Theme

from brazecfg.apply.applier import DestinationResult
from brazecfg.errors import Diagnostic
from brazecfg.plan.definition import Action, DestinationPlan, Plan

THEME = Theme({
    "create": "green", "update": "yellow", "delete": "red", "unchanged": "dim",
    "enrich": "cyan", "warn": "yellow", "error": "bold red", "ok": "green", "heading": "bold",
    "muted": "dim",
})
SIGN = {"create": "+", "update": "~", "delete": "-", "enrich": "~"}


def make_console(*, stderr: bool = False, no_color: bool = False) -> Console:
    return Console(theme=THEME, stderr=stderr, no_color=no_color or None, highlight=False,
                   emoji=False,  # ":id:" in a stream identity is text, not an emoji
                   soft_wrap=True)


def _n(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def render_diagnostics(console: Console, diagnostics: list[Diagnostic]) -> None:
    for d in diagnostics:
        console.print(f"[error]error[/] {escape(str(d))}")
    console.print(f"\n[error]{_n(len(diagnostics), 'problem')}[/] found.")


def render_plan_text(console: Console, plan: Plan) -> None:
    if plan.config_changes:
        console.print("[heading]Config changes[/]")
        for c in plan.config_changes:
            keys = f" [muted]({', '.join(c.keys)})[/]" if c.keys else ""
            console.print(f"  [{c.action.value}]{SIGN[c.action.value]} {c.ref}[/]{keys}")
        console.print()
    if plan.targets:
        console.print("[warn]Partial plan[/]: only " + ", ".join(
            f"destination/{escape(t)}" for t in plan.targets) + " [muted](--target); the "
            "rest of the project is not planned[/]")
    for d in plan.destinations:
        _render_destination(console, d, plan.allowed)
    for r in plan.removed_destinations:
        console.print(f"[heading]Destination {escape(r.name)}[/] [warn]removed from the config[/]")
        console.print(f"  its {_n(r.records, 'user')} stay in Braze as they are; its state "
                      f"({_n(r.records, 'record')}, {_n(r.event_rows, 'event row')}) is kept "
                      f"until `brazecfg state rm destination/{escape(r.name)}` [muted](renamed? "
                      f"declare it under moved: in brazecfg.yml)[/]")
    console.print(plan_headline(plan))


def _render_destination(console: Console, d: DestinationPlan,
                        allowed: frozenset[str] = frozenset()) -> None:
    c = d.counts
    console.print(f"[heading]Destination {d.destination}[/] [muted]({d.mode} mode, model "
                  f"{d.model})[/]")
    parts = []
    for action, label in (("create", "to create"), ("enrich", "to enrich"), ("update", "to update"),
                          ("delete", "to delete")):
        if c[action]:
            parts.append(f"[{action}]{SIGN[action]} {c[action]:,} {label}[/]")
    parts.append(f"[unchanged]= {c['unchanged']:,} unchanged[/]")
    if c["kept"]:
        parts.append(f"[muted]{c['kept']:,} gone from the warehouse, kept in Braze ({d.mode})[/]")
    if c["skipped"]:
        parts.append(f"[warn]{c['skipped']:,} skipped[/]")
    console.print("  " + "   ".join(parts))
    if d.moved_from:
        console.print(f"  [update]~ state {escape(d.moved_from)}[/] [muted](nothing is resent)[/]")
    for old, new in sorted(d.stream_renames.items()):
        console.print(f"  [update]~ event stream {escape(old)} is now {escape(new)}[/] "
                      "[muted](its rows keep their delivery state)[/]")
    for why in d.binding_changes:
        console.print(f"  [warn]! {escape(why)}[/]")
    console.print(f"  [muted]{escape(read_line(d))}[/]")
    console.print(f"  [muted]cost: about {d.data_points:,} Braze data points "
                  "(deletions and subscription changes are free)[/]")
    for t in d.guardrails:
        if t.name in allowed:
            console.print(f"  [warn]guardrail {t.name} overridden (--allow):[/] {escape(t.message)}")
        else:
            console.print(f"  [error]guardrail {t.name}:[/] {escape(t.message)} "
                          "[muted](apply refuses this plan)[/]")
    fields = sorted(set(d.field_sets) | set(d.field_removals))
    if fields:
        console.print("  [heading]Attributes[/]")
        width = max(len(f) for f in fields)
        for f in fields:
            bits = []
            if d.field_sets[f]:
                bits.append(f"set for {_n(d.field_sets[f], 'user')}")
            if d.field_removals[f]:
                bits.append(f"[delete]removed for {_n(d.field_removals[f], 'user')}[/]")
            console.print(f"    {f.ljust(width)}  {', '.join(bits)}")
    groups = sorted(set(d.joins) | set(d.leaves))
    if groups:
        console.print("  [heading]Groups[/]")
        for g in groups:
            console.print(f"    {g}  [create]+{d.joins[g]:,} join[/]  [delete]-{d.leaves[g]:,} leave[/]")
    streams = sorted(set(d.events_to_send) | set(d.events_unknown))
    if streams:
        console.print("  [heading]Events and purchases[/]")
        for st in streams:
            line = f"    {st}  [create]+{d.events_to_send[st]:,} to send[/]"
            if d.events_unknown[st]:
                line += (f"  [warn]{d.events_unknown[st]:,} delivery unknown[/] [muted](not resent;"
                         " check Braze, then `apply --resend-unknown` to send them again)[/]")
            console.print(line)
    if d.samples:
        console.print("  [heading]Samples[/]")
        for s in d.samples:
            sign = SIGN[s.action.value]
            if s.action is Action.DELETE:
                console.print(f"    [delete]- {escape(s.external_id)}[/]")
                continue
            attrs = ", ".join(f"{k}={_short(v)}" for k, v in sorted(s.attributes.items()))
            extra = "".join(f" +{g}" for g in s.joins) + "".join(f" -{g}" for g in s.leaves)
            console.print(f"    [{s.action.value}]{sign} {escape(s.external_id)}[/] "
                          f"{escape(attrs)}{escape(extra)}")
    if d.issue_count:
        console.print(f"  [warn]{_n(d.issue_count, 'value')} will not be sent[/] "
                      "[muted](the rest of each record still syncs)[/]")
        for i in d.issues[:10]:
            console.print(f"    {escape(i.external_id)} · {i.field}: {escape(i.reason)}")
        if d.issue_count > 10:
            console.print(f"    [muted]... and {d.issue_count - 10:,} more (--format json lists up to 50)[/]")
    if d.failed_last_time:
        console.print(f"  [warn]{_n(d.failed_last_time, 'record')} failed last time[/] "
                      "[muted](sent again by this apply)[/]")
        for i in d.failed_samples[:10]:
            console.print(f"    {escape(i.external_id)}: {escape(i.reason)}")
    console.print()


def read_line(d: DestinationPlan) -> str:
    """How the warehouse was read, and why (every plan says it)."""
    if d.read_since:
        late = f"; {_n(d.late_records, 'record')} read by key (not in the state, or failed " \
               "last time)" if d.late_records else ""
        return (f"incremental read: records changed since {d.read_since}{late} "
                "(--full-refresh reads everything)")
    return f"full read: {d.full_read_reason or 'every record'}"


def plan_headline(plan: Plan) -> str:
    if not plan.has_changes:
        return ("[ok]No changes.[/] Braze matches what brazecfg last confirmed, the warehouse "
                "and the config.")
    c: dict[str, int] = dict.fromkeys(("create", "enrich", "update", "delete"), 0)
    events = sum(sum(d.events_to_send.values()) for d in plan.destinations)
    for d in plan.destinations:
        for k in ("create", "enrich", "update", "delete"):
            c[k] = c.get(k, 0) + d.counts[k]
    text = (f"Plan: [create]{c['create']:,} to create[/], [update]{c['update']:,} to update[/], "
            f"[delete]{c['delete']:,} to delete[/]")
    if c["enrich"]:
        text += f", [enrich]{c['enrich']:,} to enrich[/]"
    if events:
        text += f", {events:,} events to send"
    text += f"; about {plan.data_points:,} data points"
    moves = sum(bool(d.moved_from) + len(d.stream_renames) for d in plan.destinations)
    if moves:
        text += f"; {_n(moves, 'move')} in the state"
    if plan.config_changes:
        text += f"; {_n(len(plan.config_changes), 'config change')}"
    blocked = plan.blocked(plan.allowed)
    if blocked:
        text += (f". [error]Apply refuses it: {_n(len(blocked), 'guardrail')} tripped[/] "
                 "(see above; --allow NAME overrides one)")
    return text + "."


def render_plan_markdown(plan: Plan) -> str:
    """The pull-request comment: summary first, folded details, escaped, under GitHub's limit
    (cli/markdown.py)."""
    from brazecfg.cli.markdown import render_plan_markdown as render

    return render(plan)


def render_plan_json(plan: Plan) -> str:
    return json.dumps(plan.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_results(console: Console, results: list[DestinationResult]) -> None:
    for r in results:
        bits = [f"[create]{r.created:,} created[/]", f"[update]{r.updated:,} updated[/]"]
        if r.enriched:
            bits.append(f"[enrich]{r.enriched:,} enriched[/]")
        bits.append(f"[delete]{r.deleted:,} deleted[/]")
        if r.subscribed or r.unsubscribed:
            bits.append(f"{r.subscribed:,} subscribed, {r.unsubscribed:,} unsubscribed")
        if r.failed:
            bits.append(f"[error]{r.failed:,} failed[/]")
        if r.events_sent or r.events_failed or r.events_unknown:
            bits.append(f"{r.events_sent:,} events sent")
            if r.events_failed:
                bits.append(f"[error]{r.events_failed:,} events rejected[/]")
            if r.events_unknown:
                bits.append(f"[warn]{r.events_unknown:,} events delivery unknown[/]")
        console.print(f"[heading]{r.destination}[/]: " + ", ".join(bits))
        for f in r.failures[:10]:
            console.print(f"  [error]failed[/] {escape(f.external_id)}: {escape(f.reason)}")
        if r.failed:
            console.print("  [muted]Failed records stay out of the ledger and are sent again by "
                          "the next apply.[/]")
        if r.events_unknown:
            console.print(f"  [warn]{r.events_unknown:,} events may or may not have reached Braze[/]"
                          " (a 5xx, a timeout or a lost connection). They are not resent on their"
                          " own: check Braze, then run `brazecfg apply --resend-unknown` to send"
                          " them again.")
