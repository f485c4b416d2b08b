"""The plan as a pull-request comment (``plan --format markdown``, ``show --format markdown``).

A comment is read by people who may not see the data, posted by CI with a token, and limited
by GitHub to 65,536 characters. So:

- the summary comes first (the headline, what apply would refuse, one row per destination),
  the details of each destination after it, folded in ``<details>``;
- it holds ids, names and counts only, never a value; every name and id comes from a config
  or a warehouse someone else controls, so each is cut to ``VALUE_CHARS`` and escaped: every
  character that Markdown or HTML could read (``*``, ``|``, ``<``, ``@``, ``:``...) becomes an
  HTML entity, invisible and control characters become ``U+XXXX``;
- it is always under ``BUDGET`` characters (counted in UTF-16 units, as GitHub counts):
  details that would not fit are left out with a line saying so and how to see them.
"""

from __future__ import annotations

import unicodedata

from brazecfg.cli.render import cost_line, read_line
from brazecfg.plan.definition import ConfigAction, DestinationPlan, Plan

GITHUB_LIMIT = 65_536
BUDGET = 60_000  # room for the CI recipe's marker and anything a workflow adds around it
VALUE_CHARS = 80
SUMMARY_ROWS = 50
LIST_ROWS = 20
KEEP = frozenset("-")


def md(value: object, limit: int = VALUE_CHARS) -> str:
    """Text that renders as itself in GitHub Markdown: no markup, link, mention or HTML."""
    text = str(value)
    cut = len(text) > limit
    text = text[:limit]
    out = []
    for ch in text:
        if ch.isalnum() and unicodedata.category(ch)[0] in "LN" or ch == " " or ch in KEEP:
            out.append(ch)
        elif unicodedata.category(ch)[0] in "CZ" and ch != " ":
            out.append(f"U+{ord(ch):04X}")  # invisible, control, bidi override, line break
        else:
            out.append(f"&#{ord(ch)};")
    return "".join(out) + ("&#8230;" if cut else "")


def code(value: object, limit: int = VALUE_CHARS) -> str:
    return f"<code>{md(value, limit)}</code>"


def size(text: str) -> int:
    """Characters as GitHub counts them (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def _n(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _headline(plan: Plan) -> str:
    c = {k: sum(d.counts[k] for d in plan.destinations)
         for k in ("create", "enrich", "update", "delete")}
    events = sum(sum(d.events_to_send.values()) for d in plan.destinations)
    text = (f"**Plan: {c['create']:,} to create, {c['update']:,} to update, "
            f"{c['delete']:,} to delete")
    if c["enrich"]:
        text += f", {c['enrich']:,} to enrich"
    if events:
        text += f", {events:,} events to send"
    if plan.config_changes:
        text += f"; {_n(len(plan.config_changes), 'config change')}"
    unknown = sum(sum(d.events_unknown.values()) for d in plan.destinations)
    if unknown:
        text += f"; {_n(unknown, 'event')} of unknown delivery remain"
    return text + ".**"


def _summary(plan: Plan) -> list[str]:
    out = ["## brazecfg plan", ""]
    if not plan.has_changes:
        out.append("**No changes.** Braze matches what brazecfg last confirmed, the warehouse "
                   "and the config.")
        return out
    out += [_headline(plan), "", f"About **{_n(plan.data_points, 'Braze data point')}** in all.", ""]
    if plan.targets:
        out += ["> **Partial plan**: only " + ", ".join(code(f"destination/{t}")
                                                        for t in plan.targets)
                + " (--target); the rest of the project is not planned.", ""]
    blocked = plan.blocked(plan.allowed)
    if blocked:
        out.append(f"> **Apply refuses this plan: {_n(len(blocked), 'guardrail')} tripped** "
                   "(`--allow NAME` overrides one, or change the limit in review):")
        out += [f"> - {code(d)}: {code(t.name)}" for d, t in blocked[:LIST_ROWS]]
        if len(blocked) > LIST_ROWS:
            out.append(f"> - and {len(blocked) - LIST_ROWS:,} more")
        out.append("")
    overridden = [(d.destination, t.name) for d in plan.destinations for t in d.guardrails
                  if t.name in plan.allowed]
    if overridden:
        out += ["Guardrails overridden (`--allow`): "
                + ", ".join(f"{code(t)} ({code(d)})" for d, t in overridden[:LIST_ROWS]), ""]
    out += ["| destination | mode | create | update | enrich | delete | unchanged | events "
            "| data points |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for d in plan.destinations[:SUMMARY_ROWS]:
        c = d.counts
        out.append(f"| {code(d.destination)} | {md(d.mode)} | {c['create']:,} | "
                   f"{c['update']:,} | {c['enrich']:,} | {c['delete']:,} | "
                   f"{c['unchanged']:,} | {sum(d.events_to_send.values()):,} | "
                   f"{d.data_points:,} |")
    if len(plan.destinations) > SUMMARY_ROWS:
        out.append(f"| and {len(plan.destinations) - SUMMARY_ROWS:,} more | | | | | | | | |")
    out.append("")
    for r in plan.removed_destinations[:LIST_ROWS]:
        out.append(f"- destination {code(r.name)} was removed from the config: its "
                   f"{_n(r.records, 'user')} stay in Braze as they are; its state is kept until "
                   f"`brazecfg state rm destination/NAME`.")
    if plan.removed_destinations:
        out.append("")
    return out


def _config_details(plan: Plan) -> list[str]:
    if not plan.config_changes:
        return []
    sign = {ConfigAction.CREATE: "+", ConfigAction.DELETE: "-", ConfigAction.UPDATE: "~"}
    out = ["<details><summary>Config changes ("
           f"{len(plan.config_changes):,})</summary>", ""]
    for c in plan.config_changes[:100]:
        keys = f" ({', '.join(md(k) for k in c.keys[:20])})" if c.keys else ""
        out.append(f"- {sign[c.action]} {code(c.ref)}{keys}")
    if len(plan.config_changes) > 100:
        out.append(f"- and {len(plan.config_changes) - 100:,} more")
    return [*out, "", "</details>", ""]


def _destination_details(plan: Plan, d: DestinationPlan) -> list[str]:
    out = [f"<details><summary>Destination {code(d.destination)} ({md(d.mode)} mode, model "
           f"{code(d.model)}): {_n(d.changes, 'change')}</summary>", ""]
    notes = [md(cost_line(d), 400)]
    for t in d.guardrails:
        state = "overridden" if t.name in plan.allowed else "apply refuses this plan"
        notes.append(f"**guardrail {code(t.name)} ({state})**: {md(t.message, 400)}")
    if d.moved_from:
        notes.append(f"state {md(d.moved_from, 200)} (nothing is resent)")
    notes += [f"event stream {code(old)} is now {code(new)}"
              for old, new in sorted(d.stream_renames.items())[:LIST_ROWS]]
    notes += [f"**{md(why, 400)}**" for why in d.binding_changes[:LIST_ROWS]]
    notes.append(md(read_line(d), 400))
    out += [f"- {n}" for n in notes] + [""]
    fields = sorted(set(d.field_sets) | set(d.field_removals))
    if fields:
        out += ["| attribute | set | removed |", "|---|---:|---:|"]
        out += [f"| {code(f)} | {d.field_sets[f]:,} | {d.field_removals[f]:,} |"
                for f in fields[:200]]
        if len(fields) > 200:
            out.append(f"| and {len(fields) - 200:,} more | | |")
        out.append("")
    groups = sorted(set(d.joins) | set(d.leaves) | set(d.opted_out))
    if groups:
        out += ["| group | join | leave | unsubscribed in Braze |", "|---|---:|---:|---:|"]
        out += [f"| {code(g)} | {d.joins[g]:,} | {d.leaves[g]:,} | {d.opted_out[g]:,} |"
                for g in groups[:200]]
        if len(groups) > 200:
            out.append(f"| and {len(groups) - 200:,} more | | | |")
        out.append("")
    streams = sorted(set(d.events_to_send) | set(d.events_unknown))
    if streams:
        out += ["| events | to send | delivery unknown |", "|---|---:|---:|"]
        out += [f"| {code(st)} | {d.events_to_send[st]:,} | {d.events_unknown[st]:,} |"
                for st in streams[:200]]
        out.append("")
    if d.issue_count:
        out.append(f"**{_n(d.issue_count, 'value')} will not be sent** (record id, field, "
                   "reason):")
        out += [f"- {code(i.external_id)} {code(i.field)}: {md(i.reason, 200)}"
                for i in d.issues[:LIST_ROWS]]
        if d.issue_count > LIST_ROWS:
            out.append(f"- and {d.issue_count - LIST_ROWS:,} more (`--format json` lists up "
                       "to 50)")
        out.append("")
    if d.failed_last_time:
        out += [f"**{_n(d.failed_last_time, 'record')} failed last time** and will be "
                "retried.", ""]
    return [*out, "</details>", ""]


def render_plan_markdown(plan: Plan) -> str:
    """Summary first, then folded details, cut to fit ``BUDGET`` (never a half section)."""
    out = _summary(plan)
    if not plan.has_changes:
        return "\n".join(out) + "\n"
    text = _fit("\n".join(out) + "\n", BUDGET // 2)
    sections = [_config_details(plan)] + [_destination_details(plan, d)
                                          for d in plan.destinations]
    reserve = 400  # the closing note
    for i, section in enumerate(sections):
        chunk = "\n".join(section) + ("\n" if section else "")
        if size(text) + size(chunk) + reserve > BUDGET:
            left = len(sections) - i
            text += (f"\n_{_n(left, 'more section')} left out to stay under GitHub's comment "
                     "limit: see the job summary, or `brazecfg show FILE` of a plan saved "
                     "with `plan --out FILE`._\n")
            break
        text += chunk
    return text


def _fit(text: str, budget: int) -> str:
    """A safety net for a summary made huge by hostile names: cut at a line end."""
    if size(text) <= budget:
        return text
    lines, used = [], 0
    for line in text.splitlines():
        if used + size(line) + 1 > budget - 200:
            break
        lines.append(line)
        used += size(line) + 1
    return "\n".join(lines) + "\n\n_The summary was cut to stay under GitHub's comment limit._\n"
