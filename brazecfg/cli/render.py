"""Rendering plans and results: rich text for terminals, Markdown for pull requests, JSON for CI.

Only the text renderer shows sample values (the person at the terminal may see their data);
Markdown and JSON show counts, field names, group names and record ids, never values.
"""

from __future__ import annotations

import json
import re
import string
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.errors import MarkupError
from rich.markup import escape as _escape_markup
from rich.markup import render as render_markup
from rich.theme import Theme

from brazecfg import redact
from brazecfg.errors import Diagnostic
from brazecfg.plan.definition import Action, DestinationPlan, Plan, RecordChange

if TYPE_CHECKING:  # types only: `validate` and `fmt` need not import apply's machinery
    from brazecfg.apply.applier import DestinationResult
    from brazecfg.apply.settle import SettleResult
    from brazecfg.plan.current import CurrentValues, DestinationCurrent

THEME = Theme({
    "create": "green", "update": "yellow", "delete": "red", "unchanged": "dim",
    "enrich": "cyan", "warn": "yellow", "error": "bold red", "ok": "green", "heading": "bold",
    "muted": "dim",
})
SIGN = {"create": "+", "update": "~", "delete": "-", "enrich": "~"}


# Characters a terminal or CI log would act on instead of showing: C0/C1 controls (ESC starts
# a terminal escape sequence), line separators and bidirectional overrides (text that reads
# differently from what it is). Newlines and tabs are layout and stay.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f"
                      "\u202a-\u202e\u2066-\u2069\ufeff]")
_CONTROL_ALL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f"
                          "\u202a-\u202e\u2066-\u2069\ufeff]")


def _show(m: re.Match[str]) -> str:
    code = ord(m.group())
    return {9: "\\t", 10: "\\n", 13: "\\r"}.get(code) or (
        f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def visible(text: str, *, lines: bool = True) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``, ``\\u2028``);
    with ``lines=False`` newlines and tabs too (a value must not start a line of its own)."""
    return (_CONTROL if lines else _CONTROL_ALL).sub(_show, text)


def safe(value: object) -> str:
    """A dynamic value ready to sit inside rich markup: printed as written, never as markup
    (``proj[bold]`` stays ``proj[bold]``, ``[/x]`` cannot raise), control characters shown
    escaped."""
    return _escape_markup(visible(str(value), lines=False))


class _MarkupFormatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        return safe(format(value, format_spec))


_FORMATTER = _MarkupFormatter()


def markup(template: str, *args: Any, **kwargs: Any) -> str:
    """``template.format(...)`` where the template is trusted markup and every value filled
    in is escaped with ``safe``. The one way a dynamic value reaches a console."""
    return _FORMATTER.format(template, *args, **kwargs)


class SafeConsole(Console):
    """A rich Console that never lets a string crash, leak or control the terminal: every
    value a template read from the environment is masked (brazecfg.redact), control
    characters are shown escaped, and text that is not valid markup (a value someone forgot
    to pass through ``markup``) is printed as plain text instead of raising MarkupError."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        out: list[Any] = []
        for obj in objects:
            if isinstance(obj, str):
                obj = redact.scrub(visible(obj))
                if kwargs.get("markup", True) is not False:
                    try:
                        render_markup(obj)
                    except MarkupError:
                        obj = _escape_markup(obj)
            out.append(obj)
        super().print(*out, **kwargs)


def make_console(*, stderr: bool = False, no_color: bool = False) -> Console:
    # emoji=False: ":id:" in a stream identity must not become an emoji
    return SafeConsole(theme=THEME, stderr=stderr, no_color=no_color or None, highlight=False,
                       soft_wrap=True, emoji=False)


def _n(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def render_diagnostics(console: Console, diagnostics: list[Diagnostic]) -> None:
    for d in diagnostics:
        console.print(markup("[error]error[/] {}", d))
    console.print(f"\n[error]{_n(len(diagnostics), 'problem')}[/] found.")


def render_plan_text(console: Console, plan: Plan, current: CurrentValues | None = None
                     ) -> None:
    """``current`` (plan --show-current): Braze's values now, shown as old -> new."""
    if plan.config_changes:
        console.print("[heading]Config changes[/]")
        for c in plan.config_changes:
            keys = markup(" [muted]({})[/]", ", ".join(c.keys)) if c.keys else ""
            console.print(markup(f"  [{c.action.value}]{SIGN[c.action.value]} {{}}[/]", c.ref)
                          + keys)
        console.print()
    if plan.targets:
        console.print("[warn]Partial plan[/]: only " + ", ".join(
            f"destination/{safe(t)}" for t in plan.targets) + " [muted](--target); the "
            "rest of the project is not planned[/]")
    for d in plan.destinations:
        _render_destination(console, d, plan.allowed,
                            current.destinations.get(d.destination) if current else None)
    for r in plan.removed_destinations:
        console.print(f"[heading]Destination {safe(r.name)}[/] [warn]removed from the config[/]")
        console.print(f"  its {_n(r.records, 'user')} stay in Braze as they are; its state "
                      f"({_n(r.records, 'record')}, {_n(r.event_rows, 'event row')}) is kept "
                      f"until `brazecfg state rm destination/{safe(r.name)}` [muted](renamed? "
                      f"declare it under moved: in brazecfg.yml)[/]")
    console.print(plan_headline(plan))


def _render_destination(console: Console, d: DestinationPlan,
                        allowed: frozenset[str] = frozenset(),
                        current: DestinationCurrent | None = None) -> None:
    c = d.counts
    console.print(markup("[heading]Destination {}[/] [muted]({} mode, model {})[/]",
                         d.destination, d.mode, d.model))
    parts = []
    for action, label in (("create", "to create"), ("enrich", "to enrich"), ("update", "to update"),
                          ("delete", "to delete")):
        if c[action]:
            parts.append(f"[{action}]{SIGN[action]} {c[action]:,} {label}[/]")
    parts.append(f"[unchanged]= {c['unchanged']:,} unchanged[/]")
    if c["kept"]:
        parts.append(markup("[muted]{:,} gone from the warehouse, kept in Braze ({})[/]",
                            c["kept"], d.mode))
    if c["skipped"]:
        parts.append(f"[warn]{c['skipped']:,} skipped[/]")
    console.print("  " + "   ".join(parts))
    if d.moved_from:
        console.print(f"  [update]~ state {safe(d.moved_from)}[/] [muted](nothing is resent)[/]")
    for old, new in sorted(d.stream_renames.items()):
        console.print(f"  [update]~ event stream {safe(old)} is now {safe(new)}[/] "
                      "[muted](its rows keep their delivery state)[/]")
    for why in d.binding_changes:
        console.print(f"  [warn]! {safe(why)}[/]")
    console.print(f"  [muted]{safe(read_line(d))}[/]")
    console.print(markup("  [muted]cost: {}[/]", cost_line(d)))
    for t in d.guardrails:
        if t.name in allowed:
            console.print(f"  [warn]guardrail {t.name} overridden (--allow):[/] {safe(t.message)}")
        else:
            console.print(f"  [error]guardrail {t.name}:[/] {safe(t.message)} "
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
            console.print(markup("    {}  ", f.ljust(width)) + ", ".join(bits))
    groups = sorted(set(d.joins) | set(d.leaves) | set(d.opted_out))
    if groups:
        console.print("  [heading]Groups[/]")
        for g in groups:
            kept = (markup("  [warn]{:,} not subscribed: unsubscribed in Braze[/]",
                           d.opted_out[g]) if d.opted_out[g] else "")
            console.print(markup("    {}  [create]+{:,} join[/]  [delete]-{:,} leave[/]",
                                 g, d.joins[g], d.leaves[g]) + kept)
    streams = sorted(set(d.events_to_send) | set(d.events_unknown))
    if streams:
        console.print("  [heading]Events and purchases[/]")
        for st in streams:
            line = markup("    {}  [create]+{:,} to send[/]", st, d.events_to_send[st])
            if d.events_unknown[st]:
                line += (f"  [warn]{d.events_unknown[st]:,} delivery unknown[/] [muted](not resent;"
                         " `apply --settle-unknown` settles them from what Braze reports, "
                         "`apply --resend-unknown` sends them all again)[/]")
            console.print(line)
    if d.samples:
        console.print("  [heading]Samples[/]")
        if current is not None and current.note:
            console.print(markup("    [warn]note:[/] {}", current.note))
        for s in d.samples:
            sign = SIGN[s.action.value]
            if s.action is Action.DELETE:
                console.print(markup("    [delete]- {}[/]", s.external_id))
                continue
            attrs = _sample_attributes(s, current)
            extra = "".join(f" +{g}" for g in s.joins) + "".join(f" -{g}" for g in s.leaves)
            console.print(markup(f"    [{s.action.value}]{sign} {{}}[/] {{}}{{}}",
                                 s.external_id, attrs, extra))
    if d.issue_count:
        console.print(f"  [warn]{_n(d.issue_count, 'value')} will not be sent[/] "
                      "[muted](the rest of each record still syncs)[/]")
        for i in d.issues[:10]:
            console.print(markup("    {} · {}: {}", i.external_id, i.field, i.reason))
        if d.issue_count > 10:
            console.print(f"    [muted]... and {d.issue_count - 10:,} more (--format json lists up to 50)[/]")
    if d.failed_last_time:
        console.print(f"  [warn]{_n(d.failed_last_time, 'record')} failed last time[/] "
                      "[muted](sent again by this apply)[/]")
        for i in d.failed_samples[:10]:
            console.print(markup("    {}: {}", i.external_id, i.reason))
    console.print()


def _sample_attributes(s: RecordChange, current: DestinationCurrent | None) -> str:
    """A sample's new values; with --show-current, Braze's value now -> the new one for the
    sampled updates (``(not in Braze)`` for an id Braze has no profile for)."""
    now = current.values.get(s.external_id) if current is not None else None
    if now is None:
        text = ", ".join(f"{k}={_short(v)}" for k, v in sorted(s.attributes.items()))
        missing = current is not None and s.external_id in current.missing
        return text + (" (not in Braze)" if missing else "")
    return ", ".join(f"{k}={_short(now.get(k))} -> {_short(v)}"
                     for k, v in sorted(s.attributes.items()))


def read_line(d: DestinationPlan) -> str:
    """How the warehouse was read, and why (every plan says it)."""
    if d.read_since:
        where = ("with the state's in the warehouse" if d.compared_in == "warehouse"
                 else "in the warehouse")
        if d.compared == "counts":
            checked = (f"; compared the related-row counts of {d.hashes_compared:,} records "
                       f"{where}")
            why = ("a related row moved away or was deleted, not in the state, or failed "
                   "last time")
        else:
            checked = f"; checked {d.hashes_compared:,} record keys in the warehouse"
            why = "not in the state, or failed last time"
        late = f"; {_n(d.late_records, 'record')} read by key ({why})" if d.late_records else ""
        return (f"incremental read: records changed since {d.read_since}{checked}{late} "
                "(trusts updated_at: --full-refresh reads everything)")
    if d.hashes_compared:
        where = ("with the state's in the warehouse" if d.compared_in == "warehouse"
                 else "in the warehouse")
        return (f"compared {d.hashes_compared:,} record hashes {where}; read "
                f"{_n(d.late_records, 'record')} by key (changed, new, or rejected by Braze) "
                "(--full-refresh reads everything)")
    return f"full read: {d.full_read_reason or 'every record'}"


def _unknown_note(plan: Plan) -> str:
    unknown = sum(sum(d.events_unknown.values()) for d in plan.destinations)
    if not unknown:
        return ""
    return (f" [warn]{_n(unknown, 'event')} of unknown delivery remain[/]: `brazecfg apply "
            "--settle-unknown` settles them from what Braze reports.")


def cost_line(d: DestinationPlan) -> str:
    """What the plan costs: data points, or for a workspace billed by monthly active users,
    requests and the time they take at the rate limit (data points are not billed there)."""
    pace = f"{_n(d.requests, 'request')}, at least {d.seconds_at_limit:,.0f} s at the rate limit"
    if d.billing == "mau":
        return f"{pace} (billed by monthly active users: data points do not apply)"
    return (f"about {_n(d.data_points, 'Braze data point')} (deletions and subscription "
            f"changes are free); {pace}")


def plan_headline(plan: Plan) -> str:
    # brazecfg knows what Braze confirmed, not what Braze holds now: say only that.
    if not plan.has_changes:
        return ("[ok]No changes.[/] Braze matches what brazecfg last confirmed, the warehouse "
                "and the config." + _unknown_note(plan))
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
    return text + "." + _unknown_note(plan)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]#!|<>~])")


def md_code(value: object) -> str:
    """``value`` as one Markdown code span that nothing inside can break out of: control
    characters (newlines included) shown escaped, a fence longer than any run of backticks
    inside, and ``|`` escaped (it splits a table cell even inside a code span)."""
    text = visible(str(value), lines=False).replace("|", "\\|")
    runs = [len(m) for m in re.findall(r"`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def md_text(value: object) -> str:
    """``value`` as plain Markdown text: every character Markdown acts on is escaped, so no
    heading, link, image (a tracking beacon) or HTML can come from data."""
    return _MD_SPECIAL.sub(r"\\\1", visible(str(value), lines=False))


def render_plan_markdown(plan: Plan) -> str:
    """The pull-request comment: summary first, folded details, escaped, under GitHub's limit
    (cli/markdown.py)."""
    from brazecfg.cli.markdown import render_plan_markdown as render

    return render(plan)


def render_plan_json(plan: Plan, current: CurrentValues | None = None) -> str:
    """With --show-current, a ``show_current`` block: ids, field names and counts only."""
    out = plan.to_dict()
    if current is not None:
        out["show_current"] = current.to_dict(plan)
    return json.dumps(out, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


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
        if r.events_unknown_before:
            bits.append(f"[warn]{r.events_unknown_before:,} events still of unknown delivery "
                        "from earlier runs[/]")
        console.print(markup("[heading]{}[/]: ", r.destination) + ", ".join(bits))
        for f in r.failures[:10]:
            console.print(markup("  [error]failed[/] {}: {}", f.external_id, f.reason))
        if r.failed:
            console.print("  [muted]Failed records stay out of the ledger and are sent again by "
                          "the next apply.[/]")
        if r.events_unknown or r.events_unknown_before:
            n = r.events_unknown + r.events_unknown_before
            console.print(f"  [warn]{_n(n, 'event')} may or may not have reached Braze[/]"
                          " (a 5xx, a timeout, a lost connection or a crash). They are not resent"
                          " on their own: `brazecfg apply --settle-unknown` settles them from "
                          "Braze's export; `--resend-unknown` sends them all again.")


def render_settled(console: Console, results: list[SettleResult]) -> None:
    """What --settle-unknown found, before the plan it leads to."""
    from brazecfg.apply import settle

    for r in results:
        if not r.looked_at:
            console.print(f"[heading]Settled[/] app/{r.app}: no event of unknown delivery.")
            continue
        console.print(f"[heading]Settled[/] app/{r.app}: {r.arrived:,} of {r.looked_at:,} events of "
                      f"unknown delivery reached Braze (now sent), {r.missing:,} did not (sent "
                      "by this apply)")
        for n, why in settle.undecided_lines([r]):
            console.print(f"  [warn]{_n(n, 'event')} stay unknown[/]: {safe(why)}")


def render_fmt(console: Console, err: Console, results: list[Any], check: bool) -> int:
    """What `brazecfg fmt` did (or, with --check, would do); the exit code: 1 when a file
    would change (--check) or could not be formatted."""
    changed = [r for r in results if r.changed]
    problems = [r for r in results if r.problem is not None]
    for r in changed:
        console.print(markup("would reformat {}" if check else "reformatted {}", r.file))
    for r in problems:
        err.print(markup("[error]error[/] {}", r.problem))
    done = len(results) - len(problems)
    verb = "would be reformatted" if check else "reformatted"
    summary = f"{_n(len(changed), 'file')} {verb}, {done - len(changed):,} already formatted"
    if problems:
        summary += f", [error]{_n(len(problems), 'file')} not formatted[/] (see above)"
    console.print(summary + ".")
    return 1 if problems or (check and changed) else 0
