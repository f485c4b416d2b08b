"""The brazecfg command line: each command turns options into arguments, calls the library,
renders, and exits with a code. One boundary maps errors to exit codes (``_guard``)."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from brazecfg import __version__
from brazecfg.errors import BrazecfgError, ProjectError

app = typer.Typer(
    name="brazecfg", no_args_is_help=True, add_completion=False,
    pretty_exceptions_enable=False,  # never print locals: they can hold an API key
    help="Braze configuration as code: validate, plan and apply warehouse data into Braze.",
)
emulator_app = typer.Typer(help="Run or inspect the local Braze emulator.")
app.add_typer(emulator_app, name="emulator")

_state: dict[str, Any] = {"debug": False, "no_color": False}

PathArg = Annotated[Path, typer.Argument(help="Project folder (holds brazecfg.yml).")]


class Format(str, Enum):
    text = "text"
    json = "json"
    markdown = "markdown"


def _console(stderr: bool = False) -> Any:
    from brazecfg.cli.render import make_console

    return make_console(stderr=stderr, no_color=_state["no_color"] or "NO_COLOR" in os.environ)


@contextmanager
def _guard() -> Iterator[None]:
    """Map errors to messages and exit codes; never a traceback unless --debug."""
    try:
        yield
    except typer.Exit:
        raise
    except ProjectError as exc:
        from brazecfg.cli.render import render_diagnostics

        render_diagnostics(_console(stderr=True), exc.diagnostics)
        raise typer.Exit(1) from None
    except BrazecfgError as exc:
        from rich.markup import escape

        # Messages quote names, ids and paths from files and warehouses: text, never markup
        # (an id such as "[/x]" would otherwise crash the error boundary itself).
        _console(stderr=True).print(f"[error]error:[/] {escape(str(exc))}", markup=True,
                                    highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        _console(stderr=True).print("[error]interrupted[/]: what Braze confirmed so far is in the "
                                    "ledger; run the command again to continue")
        raise typer.Exit(130) from None
    except Exception as exc:  # a bug: say so, without locals
        err = _console(stderr=True)
        err.print(f"[error]unexpected error[/] ({type(exc).__name__}). This is a bug in brazecfg; "
                  "run again with --debug for the traceback and report it.")
        if _state["debug"]:
            traceback.print_exc(file=sys.stderr)
        raise typer.Exit(EXIT_BUG) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"brazecfg {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of unexpected errors.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="Plain output.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version.", callback=_version,
                                          is_eager=True)] = False,
) -> None:
    _state.update(debug=debug, no_color=no_color)


def _now(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BrazecfgError(f"--now must be an ISO 8601 date-time, not {value!r}") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _allowed(names: list[str] | None) -> frozenset[str]:
    from brazecfg.plan.guardrails import NAMES

    for name in names or []:
        if name not in NAMES:
            raise BrazecfgError(f"--allow takes a guardrail name ({', '.join(NAMES)}), "
                                f"not {name!r}")
    return frozenset(names or [])


def _targets(project: Any, refs: list[str] | None) -> list[str] | None:
    if not refs:
        return None
    out = []
    for ref in refs:
        name = ref.removeprefix("destination/")
        if name not in project.destinations:
            known = ", ".join(f"destination/{d}" for d in sorted(project.destinations)) or "none"
            raise BrazecfgError(f"--target {ref}: no such destination (the project has {known})")
        out.append(name)
    return out


def _plan_and_save(project: Any, out: Path, now: str | None, resend_unknown: bool,
                   full_refresh: bool, start_over: bool, allow: list[str] | None,
                   target: list[str] | None, clients: Any) -> Any:
    """`plan --out`: the flags are saved with the plan (``now``: the anchor actually used, so
    apply reads relative dates exactly as the reviewer saw them)."""
    from brazecfg.plan.saved import PlanFlags, plan_and_save

    anchor = _now(now) or datetime.now(timezone.utc)
    flags = PlanFlags(now=anchor.isoformat(), now_explicit=now is not None,
                      full_refresh=full_refresh, resend_unknown=resend_unknown,
                      start_over=start_over, allow=tuple(sorted(_allowed(allow))),
                      targets=tuple(_targets(project, target) or ()))
    if out.is_dir():
        raise BrazecfgError(f"--out {out} is a folder; give a file name such as plan.json")
    try:
        return plan_and_save(project, out, flags, clients,
                             on_note=lambda m: _console(stderr=True).print(
                                 m, markup=False, highlight=False))
    except OSError as exc:
        raise BrazecfgError(f"cannot write the saved plan {out}: {exc.strerror or exc}") from None


def _saved_flags(plan_file: Path, given: dict[str, Any]) -> Any:
    """The flags a saved plan was made with. Flags given with --plan must say the same (they
    are redundant): a saved plan is applied exactly as it was reviewed."""
    from brazecfg.plan.saved import PlanFlags, read_header

    flags = PlanFlags.from_dict(read_header(plan_file).get("flags") or {"now": ""})
    saved = {"--now": _now(flags.now) if flags.now_explicit else None,
             "--full-refresh": flags.full_refresh, "--resend-unknown": flags.resend_unknown,
             "--start-over": flags.start_over, "--allow": sorted(flags.allow),
             "--target": sorted(flags.targets)}
    for name, value in given.items():
        if value not in (None, False, []) and value != saved[name]:
            raise BrazecfgError(f"{name} differs from the saved plan, which was made with "
                                f"{name} {saved[name] or '(not given)'}; drop {name} (the saved "
                                "plan's flags apply) or make a new plan with it")
    return flags


@app.command()
def show(
    plan_file: Annotated[Path, typer.Argument(help="A plan saved by `brazecfg plan --out`.")],
    format: Annotated[Format, typer.Option("--format", "-f", help="text, json or markdown.")] = Format.text,
) -> None:
    """Render a saved plan, as `plan` renders it (no project, warehouse or Braze needed)."""
    from brazecfg.cli import render
    from brazecfg.plan.saved import plan_from_dict, read_header

    with _guard():
        if not plan_file.is_file():
            raise BrazecfgError(f"no saved plan at {plan_file}; make one with "
                                f"`brazecfg plan --out {plan_file}`")
        result = plan_from_dict(read_header(plan_file)["plan"])
        if format is Format.json:
            sys.stdout.write(render.render_plan_json(result))
        elif format is Format.markdown:
            sys.stdout.write(render.render_plan_markdown(result))
        else:
            render.render_plan_text(_console(), result)


@app.command()
def validate(path: PathArg = Path(".")) -> None:
    """Check every file against the schemas and every reference; list every problem."""
    from brazecfg.config.loader import load_project

    with _guard():
        project = load_project(path)
        n = len(project.all())
        _console().print(f"[ok]ok[/]: {n} resources in {path} are valid.")


@app.command()
def plan(
    path: PathArg = Path("."),
    format: Annotated[Format, typer.Option("--format", "-f", help="text, json or markdown.")] = Format.text,
    out: Annotated[Path | None, typer.Option("--out", help="Also save the plan for `apply --plan FILE` and `show FILE`: per record a keyed hash of the planned payload (never a value), the flags, the state bindings. Creates the local hash key if the project has none (or set BRAZECFG_HASH_KEY).")] = None,
    detailed_exitcode: Annotated[bool, typer.Option("--detailed-exitcode", help="Exit 2 when there are changes, 0 when none.")] = False,
    now: Annotated[str | None, typer.Option("--now", help="Anchor for relative dates (ISO 8601); default: now.")] = None,
    resend_unknown: Annotated[bool, typer.Option("--resend-unknown", help="Plan to send again events whose delivery is unknown.")] = False,
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="Read every record, not only those changed since the last run.")] = False,
    start_over: Annotated[bool, typer.Option("--start-over", help="Plan against an empty state although the lockfile says Braze confirmed records (a lost state): everything is new, events count as delivery unknown.")] = False,
    allow: Annotated[list[str] | None, typer.Option("--allow", help="Override one guardrail for this run (repeatable): empty_source, max_delete_share, max_deletes, max_unsubscribe_share, max_data_points, max_events.")] = None,
    target: Annotated[list[str] | None, typer.Option("--target", help="Plan only destination/NAME (repeatable): a partial plan.")] = None,
) -> None:
    """Show what would change in Braze, user by user. Writes nothing (except --out)."""
    from brazecfg.apply.run import Clients
    from brazecfg.cli import render
    from brazecfg.config.loader import load_project
    from brazecfg.plan.planner import make_plan

    with _guard():
        project = load_project(path)
        clients = Clients()
        try:
            if out is not None:
                result = _plan_and_save(project, out, now, resend_unknown, full_refresh,
                                        start_over, allow, target, clients)
            else:
                result = make_plan(project, now=_now(now), clients=clients,
                                   resend_unknown=resend_unknown, full_refresh=full_refresh,
                                   start_over=start_over,
                                   destinations=_targets(project, target))
                result.allowed = _allowed(allow)
        finally:
            clients.close()
        if format is Format.json:
            sys.stdout.write(render.render_plan_json(result))
        elif format is Format.markdown:
            sys.stdout.write(render.render_plan_markdown(result))
        else:
            render.render_plan_text(_console(), result)
        if detailed_exitcode and result.has_changes:
            raise typer.Exit(2)


@app.command()
def apply(
    path: PathArg = Path("."),
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Do not ask before sending.")] = False,
    plan_file: Annotated[Path | None, typer.Option("--plan", help="Apply exactly a plan saved by `plan --out` (its own approval: no --auto-approve, no terminal needed); refuse if any record changed since.")] = None,
    skip_changed: Annotated[bool, typer.Option("--skip-changed", help="With --plan: apply only the records that still match the saved plan; list the others.")] = False,
    max_plan_age: Annotated[str | None, typer.Option("--max-plan-age", help="With --plan: refuse a saved plan older than this (30m, 24h, 7d).")] = None,
    now: Annotated[str | None, typer.Option("--now", help="Anchor for relative dates (ISO 8601).")] = None,
    resend_unknown: Annotated[bool, typer.Option("--resend-unknown", help="Send again events whose delivery is unknown (Braze may count them twice).")] = False,
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="Read every record, not only those changed since the last run.")] = False,
    start_over: Annotated[bool, typer.Option("--start-over", help="Plan against an empty state although the lockfile says Braze confirmed records (a lost state): everything is new, events count as delivery unknown.")] = False,
    allow: Annotated[list[str] | None, typer.Option("--allow", help="Override one guardrail for this run (repeatable): empty_source, max_delete_share, max_deletes, max_unsubscribe_share, max_data_points, max_events.")] = None,
    target: Annotated[list[str] | None, typer.Option("--target", help="Plan only destination/NAME (repeatable): a partial plan.")] = None,
) -> None:
    """Show the plan, ask, send it to Braze, and record what Braze confirmed."""
    from brazecfg.apply.run import apply_project
    from brazecfg.cli import render
    from brazecfg.config.loader import load_project
    from brazecfg.plan.definition import Plan

    console = _console()

    def confirm(p: Plan) -> bool:
        render.render_plan_text(console, p)
        if auto_approve or plan_file is not None:  # a saved plan is its own approval
            return True
        if not sys.stdin.isatty():
            raise BrazecfgError("apply needs a yes: pass --auto-approve when no one can answer "
                                "(CI, scripts)")
        return typer.confirm("Apply these changes to Braze?", default=False)

    def progress(dest: str, done: int) -> None:
        if sys.stderr.isatty():
            sys.stderr.write(f"\r{dest}: {done:,} records sent")
            sys.stderr.flush()

    with _guard():
        if plan_file is not None and not plan_file.is_file():
            raise BrazecfgError(f"no saved plan at {plan_file}; make one with `brazecfg plan --out {plan_file}`")
        if plan_file is None and (skip_changed or max_plan_age):
            raise BrazecfgError("--skip-changed and --max-plan-age go with --plan FILE")
        max_age = None
        if max_plan_age is not None:
            from brazecfg.plan.saved import parse_duration

            max_age = parse_duration(max_plan_age)
        project = load_project(path)
        anchor = _now(now)
        targets = _targets(project, target)
        allowed = _allowed(allow)
        if plan_file is not None:
            flags = _saved_flags(plan_file, {
                "--now": anchor, "--full-refresh": full_refresh,
                "--resend-unknown": resend_unknown, "--start-over": start_over,
                "--allow": sorted(allowed), "--target": sorted(targets or [])})
            anchor, full_refresh, resend_unknown = flags.anchor, flags.full_refresh, \
                flags.resend_unknown
            start_over, allowed = flags.start_over, frozenset(flags.allow)
            targets = list(flags.targets) or None
        err = _console(stderr=True)
        outcome = apply_project(project, confirm=confirm, now=anchor, saved_plan=plan_file,
                                progress=progress, resend_unknown=resend_unknown,
                                full_refresh=full_refresh, start_over=start_over,
                                allow=allowed, targets=targets, skip_changed=skip_changed,
                                max_plan_age=max_age,
                                on_wait=lambda m: err.print(m),
                                on_warning=lambda m: err.print(m, markup=False,
                                                               highlight=False))
        if sys.stderr.isatty():
            sys.stderr.write("\n")
        if not outcome.applied:
            render.render_plan_text(console, outcome.plan)
            return
        console.print("[heading]Applied[/]")
        render.render_results(console, outcome.results)
        # Exit 1 when something needs a person: rejected records or events, or events whose
        # delivery is unknown (check Braze, then `apply --resend-unknown`).
        if any(r.failed or r.events_failed or r.events_unknown for r in outcome.results):
            raise typer.Exit(1)


@emulator_app.callback(invoke_without_command=True)
def emulator(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 4567,
    state: Annotated[Path | None, typer.Option(help="Load users from this file and save them there on exit.")] = None,
    latency_ms: Annotated[float, typer.Option(help="Added to every API response.")] = 0.0,
    fault_429_every: Annotated[int, typer.Option(help="Answer 429 to every Nth request.")] = 0,
    fault_500_every: Annotated[int, typer.Option(help="Answer 500 to every Nth request.")] = 0,
    fault_drop_every: Annotated[int, typer.Option(help="Drop the connection of every Nth request.")] = 0,
    track_limit: Annotated[str | None, typer.Option(help="Rate limit of /users/track as REQUESTS/SECONDS, e.g. 300/3.")] = None,
    per_array_cap: Annotated[bool, typer.Option(help="Legacy cap: 75 objects per array instead of 75 in all.")] = False,
    track_cap: Annotated[int, typer.Option(help="Objects per /users/track request (50 on some MAU plans).")] = 75,
    track_hourly_limit: Annotated[int, typer.Option(help="MAU plans: /users/track requests an hour, reset on the clock hour (0 = none).")] = 0,
    mau_headers: Annotated[bool, typer.Option(help="MAU plans: X-RateLimit-Reset in seconds, 429s with X-Ratelimit-Retry-After only.")] = False,
    export_lag: Annotated[float, typer.Option(help="Seconds /users/export/ids shows the old profile after a write.")] = 0.0,
    dob_as_datetime: Annotated[bool, typer.Option(help="Export dob as 1980-12-21T00:00:00.000Z, as recorded from Braze.")] = False,
) -> None:
    """Start a local HTTP server that speaks Braze's REST API (key: local-emulator-key)."""
    if ctx.invoked_subcommand is not None:
        return
    from brazecfg.emulator import EmulatorConfig, serve

    with _guard():
        config = EmulatorConfig(host=host, port=port, latency_ms=latency_ms,
                                fault_429_every=fault_429_every, fault_500_every=fault_500_every,
                                fault_drop_every=fault_drop_every,
                                state_file=str(state) if state else None,
                                track_cap_mode="per_array" if per_array_cap else "total",
                                track_cap=track_cap,
                                hourly_limits={"/users/track": track_hourly_limit}
                                if track_hourly_limit else {},
                                rate_limit_headers="mau" if mau_headers else "standard",
                                export_lag_seconds=export_lag,
                                dob_export_format="datetime" if dob_as_datetime else "date")
        if track_limit:
            try:
                n, s = track_limit.split("/")
                config.rate_limits["/users/track"] = (int(n), float(s))
            except ValueError:
                raise BrazecfgError("--track-limit takes REQUESTS/SECONDS, such as 300/3") from None
        serve(config, announce=lambda m: _console().print(m))


@emulator_app.command("dump")
def emulator_dump(
    url: Annotated[str, typer.Option(help="The running emulator.")] = "http://127.0.0.1:4567",
    what: Annotated[str, typer.Argument(help="users, requests or stats")] = "users",
) -> None:
    """Print the running emulator's users (or request log, or stats) as JSON."""
    import json
    import urllib.request

    with _guard():
        if what not in ("users", "requests", "stats"):
            raise BrazecfgError("dump takes users, requests or stats")
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/_emulator/{what}", timeout=10) as r:
                data = json.load(r)
        except OSError as exc:
            raise BrazecfgError(f"no emulator answers at {url} ({exc}); start one with "
                                "`brazecfg emulator`") from None
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


EXIT_BUG = 70  # sysexits EX_SOFTWARE: an unexpected error, a bug in brazecfg


def main() -> None:
    """Exit codes like Terraform's: 0 success (and no changes with --detailed-exitcode), 1 any
    error (usage errors included: click's 2 would read as "changes planned"), 2 changes
    planned (--detailed-exitcode), 130/143 interrupted, 70 a bug in brazecfg."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        sys.stderr.write("Aborted.\n")
        sys.exit(1)
    except Exception as exc:
        # A usage error (unknown flag, bad value): click's exception shows itself. Matched by
        # shape, since typer vendors click and its classes move between releases.
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(getattr(exc, "exit_code", None), int):
            show()
            sys.exit(1)
        raise
    sys.exit(code if isinstance(code, int) else 0)


