"""The brazecfg command line: each command turns options into arguments, calls the library,
renders, and exits with a code. One boundary maps errors to exit codes (``_guard``)."""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core

from brazecfg import __version__
from brazecfg.cli.help import _example
from brazecfg.errors import BrazecfgError, ProjectError

GLOBAL_FLAGS = ("--no-color", "--debug", "--quiet", "-q", "--verbose", "-v")
GLOBAL_OPTIONS = ("--log-file",)  # global options that take a value


class _Group(typer.core.TyperGroup):
    """The top-level command group: global flags are accepted after the command too
    (``brazecfg plan . --no-color``, ``brazecfg apply . --log-file run.jsonl``), as people
    type them; they are moved before it. Nothing after ``--``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        cut = args.index("--") if "--" in args else len(args)
        hoisted: list[str] = []
        options: list[str] = []
        rest: list[str] = []
        i = 0
        while i < cut:
            a = args[i]
            if a in GLOBAL_FLAGS:
                hoisted.append(a)
            elif a in GLOBAL_OPTIONS and i + 1 < cut:
                options += [a, args[i + 1]]
                i += 1
            elif a.split("=", 1)[0] in GLOBAL_OPTIONS:
                options.append(a)
            else:
                rest.append(a)
            i += 1
        return list(super().parse_args(ctx, [*dict.fromkeys(hoisted), *options, *rest,
                                             *args[cut:]]))


app = typer.Typer(
    name="brazecfg", no_args_is_help=True, add_completion=True, cls=_Group,
    pretty_exceptions_enable=False,  # never print locals: they can hold an API key
    help="Braze configuration as code: validate, plan and apply warehouse data into Braze.",
    epilog=_example("brazecfg plan examples/project --no-color") + "\n\n"
    "Exit codes: 0 success (no changes with --detailed-exitcode); 1 any error, usage errors "
    "included, a rejected record, a tripped guardrail, or events of unknown delivery; 2 changes "
    "planned (--detailed-exitcode); 130/143 stopped by SIGINT/SIGTERM; 70 a bug in brazecfg.",
)
emulator_app = typer.Typer(help="Run or inspect the local Braze emulator.")
app.add_typer(emulator_app, name="emulator")
import_app = typer.Typer(help="Turn another tool's config into a brazecfg project.",
                        epilog=_example("brazecfg import grouparoo ./grouparoo --out ./crm"))
app.add_typer(import_app, name="import")

_state: dict[str, Any] = {"debug": False, "no_color": False, "quiet": False, "verbose": False,
                         "log_file": None}

PathArg = Annotated[Path, typer.Argument(help="Project folder (holds brazecfg.yml).")]


class Format(str, Enum):
    text = "text"
    json = "json"
    markdown = "markdown"


def _console(stderr: bool = False) -> Any:
    from brazecfg.cli.render import make_console

    return make_console(stderr=stderr, no_color=_state["no_color"] or "NO_COLOR" in os.environ)


def _reporter(command: str) -> Any:
    """Progress for a long command (cli/progress.py): live on a terminal's stderr, plain
    lines elsewhere, nothing with --quiet; JSON lines in --log-file."""
    from brazecfg.cli.progress import NORMAL, QUIET, VERBOSE, Reporter, RunLog, is_terminal

    level = QUIET if _state["quiet"] else VERBOSE if _state["verbose"] else NORMAL
    log = RunLog(_state["log_file"], command) if _state["log_file"] is not None else None
    return Reporter(command, console=_console(stderr=True), level=level, live=is_terminal(),
                    log=log)


def _plan_text(console: Any, plan: Any, current: Any = None) -> None:
    """A plan for the person: in full, or its one-line summary with --quiet."""
    from brazecfg.cli import render

    if _state["quiet"]:
        console.print(render.plan_headline(plan))
    else:
        render.render_plan_text(console, plan, current)


def _markup(template: str, *args: Any) -> str:
    """Trusted markup with every value escaped (see render.markup)."""
    from brazecfg.cli.render import markup

    return markup(template, *args)


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
        _console(stderr=True).print(_markup("[error]error:[/] {}", exc), highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt as exc:
        from brazecfg.apply.stop import Interrupted

        if isinstance(exc, Interrupted):
            _console(stderr=True).print(
                f"[error]interrupted ({exc.signal_name})[/]: no new request was started and what "
                "Braze confirmed is in the ledger; run the command again to continue")
            raise typer.Exit(exc.exit_code) from None
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


@contextmanager
def _stoppable(stop: Any) -> Iterator[None]:
    """SIGINT (Ctrl-C) and SIGTERM (CI cancelling a job) stop an apply cleanly: while
    requests may be in flight, the first signal only asks the applier to start no new one
    (it finishes and commits those in flight, then raises Interrupted); before that it raises
    at once. A second signal abandons the requests in flight: their events stay "delivery
    unknown" in the ledger, which is the truth, and the process exits now."""

    def handler(signum: int, frame: object) -> None:
        from brazecfg.apply.stop import Interrupted

        if stop.requested:
            sys.stderr.write(f"\nstopping now ({signal.Signals(signum).name}): requests in "
                             "flight are abandoned; their events stay 'delivery unknown'\n")
            sys.stderr.flush()
            sys.stdout.flush()
            from brazecfg.scratch import remove_all

            remove_all()  # os._exit runs no cleanup: the spools hold personal data
            os._exit(128 + signum)
        stop.request(signum)
        if not stop.sending:
            raise Interrupted(signum)
        sys.stderr.write(f"\nstopping ({signal.Signals(signum).name}): no new request starts; "
                         "waiting for those in flight (signal again to abandon them)\n")
        sys.stderr.flush()

    if threading.current_thread() is not threading.main_thread():
        yield  # signals can only be handled in the main thread
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"brazecfg {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of unexpected errors.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="Plain output.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the summary and errors (CI): no progress, no plan details.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also each phase with its timing and per-destination counts.")] = False,
    log_file: Annotated[Path | None, typer.Option("--log-file", help="Append one JSON object a line per event (phases, counts, retries, waits, timings; no personal data, no secrets).")] = None,
    version: Annotated[bool, typer.Option("--version", help="Print the version.", callback=_version,
                                          is_eager=True)] = False,
) -> None:
    if quiet and verbose:
        raise typer.BadParameter("give --quiet or --verbose, not both")
    _state.update(debug=debug, no_color=no_color, quiet=quiet, verbose=verbose,
                  log_file=log_file)


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
                   target: list[str] | None, clients: Any, on_rows: Any = None) -> Any:
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
        return plan_and_save(project, out, flags, clients, on_rows=on_rows,
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


@app.command(epilog=_example('brazecfg show plan.json --format markdown'))
def show(
    plan_file: Annotated[Path, typer.Argument(help="A plan saved by `brazecfg plan --out`.")],
    format: Annotated[Format, typer.Option("--format", "-f", help="text, json or markdown.")] = Format.text,
) -> None:
    """Render a saved plan, as `plan` renders it (no project, warehouse or Braze needed)."""
    from brazecfg.plan.saved import plan_from_dict, read_header

    with _guard():
        if not plan_file.is_file():
            raise BrazecfgError(f"no saved plan at {plan_file}; make one with "
                                f"`brazecfg plan --out {plan_file}`")
        _render_plan(plan_from_dict(read_header(plan_file)["plan"]), format)


def _render_plan(result: Any, format: Format, current: Any = None) -> None:
    """A plan (made now, or read back from a saved one) in the format asked for; ``current``:
    Braze's values now for the sampled updates (--show-current; never in Markdown)."""
    from brazecfg.cli import render

    if format is Format.json:
        sys.stdout.write(render.render_plan_json(result, current))
    elif format is Format.markdown:
        sys.stdout.write(render.render_plan_markdown(result))
    else:
        _plan_text(_console(), result, current)


def _show_current(project: Any, result: Any, clients: Any) -> Any:
    """`plan --show-current`: read the sampled updates' current values from Braze, after the
    plan is made (it never changes the plan)."""
    from brazecfg.plan.current import read_current

    return read_current(project, result, clients)


@app.command(epilog=_example('brazecfg validate examples/project'))
def validate(path: PathArg = Path(".")) -> None:
    """Check every file against the schemas and every reference; list every problem."""
    from brazecfg.config.loader import load_project

    with _guard():
        project = load_project(path)
        n = len(project.all())
        _console().print(_markup("[ok]ok[/]: {} resources in {} are valid.", n, path))


class Template(str, Enum):
    sqlite = "sqlite"
    duckdb = "duckdb"
    postgres = "postgres"


@app.command(epilog=_example("brazecfg init crm --template duckdb"))
def init(
    folder: Annotated[Path, typer.Argument(help="Where to write the project (created if missing).")] = Path("."),
    template: Annotated[Template, typer.Option("--template", "-t", help="The warehouse: sqlite, duckdb or postgres.")] = Template.sqlite,
) -> None:
    """Write a small working project (never over an existing file); validate and plan it next."""
    from brazecfg.init import init_project

    with _guard():
        written = init_project(folder, template.value)
        console = _console()
        for path in written:
            console.print(_markup("  [create]+[/] {}", path.as_posix()), highlight=False)
        console.print(_markup("Next: brazecfg emulator &  then  brazecfg validate {0}  and  "
                              "brazecfg plan {0}", folder.as_posix()), highlight=False)


@app.command(epilog=_example("brazecfg schema > .brazecfg.schema.json"))
def schema(
    kind: Annotated[str | None, typer.Argument(
        help="app, model, source, property, group, destination, project or plan; "
             "without it, one schema for any resource, chosen by its kind.")] = None,
) -> None:
    """Print a self-contained JSON Schema (no network needed), for editors and CI."""
    import json

    from brazecfg.schema.bundle import BUNDLE_NAMES, bundle, combined

    with _guard():
        if kind is not None and kind not in BUNDLE_NAMES:
            raise BrazecfgError(f"no schema for {kind!r}; choose one of "
                                f"{', '.join(BUNDLE_NAMES)}, or none for the combined schema")
        out = combined() if kind is None else bundle(kind)
        sys.stdout.write(json.dumps(out, indent=2, ensure_ascii=False) + "\n")


@app.command(epilog=_example("brazecfg fmt examples/project --check"))
def fmt(
    paths: Annotated[list[Path] | None, typer.Argument(help="Project folders (default: .), or folders and resource files inside one (as pre-commit passes them).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Write nothing; list the files that would change and exit 1 if any would.")] = False,
) -> None:
    """Canonical key order (kind, name, then the schema's order) and style for every resource file; comments kept."""
    from brazecfg.cli.render import render_fmt
    from brazecfg.config.fmt import format_paths

    with _guard():
        results = format_paths(paths or [Path(".")], check=check)
        code = render_fmt(_console(), _console(stderr=True), results, check)
        if code:
            raise typer.Exit(code)


@app.command(epilog=_example('brazecfg plan . --out plan.json'))
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
    show_current: Annotated[bool, typer.Option("--show-current", help="For the sampled updates, read Braze's current values (/users/export/ids, a call per 50 samples) and show old -> new; JSON gets ids and counts only.")] = False,
) -> None:
    """Show what would change in Braze, user by user. Writes nothing (except --out)."""
    from brazecfg.apply.run import Clients
    from brazecfg.config.loader import load_project
    from brazecfg.plan.planner import make_plan

    with _guard(), _reporter("plan") as progress:
        if show_current and format is Format.markdown:
            raise BrazecfgError("--show-current shows values, which the Markdown plan never "
                                "does: use --format text or json")
        project = load_project(path)
        clients = Clients(on_retry=progress.retry)
        current = None
        try:
            progress.phase("plan")
            if out is not None:
                result = _plan_and_save(project, out, now, resend_unknown, full_refresh,
                                        start_over, allow, target, clients,
                                        on_rows=progress.rows_read)
            else:
                result = make_plan(project, now=_now(now), clients=clients,
                                   resend_unknown=resend_unknown, full_refresh=full_refresh,
                                   start_over=start_over,
                                   destinations=_targets(project, target),
                                   on_rows=progress.rows_read)
                result.allowed = _allowed(allow)
            if show_current:
                current = _show_current(project, result, clients)
        finally:
            clients.close()
        progress.planned(result)
        _render_plan(result, format, current)
        if detailed_exitcode and result.has_changes:
            raise typer.Exit(2)


@app.command(epilog=_example('brazecfg apply . --plan plan.json'))
def apply(
    path: PathArg = Path("."),
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Do not ask before sending.")] = False,
    plan_file: Annotated[Path | None, typer.Option("--plan", help="Apply exactly a plan saved by `plan --out` (its own approval: no --auto-approve, no terminal needed); refuse if any record changed since.")] = None,
    skip_changed: Annotated[bool, typer.Option("--skip-changed", help="With --plan: apply only the records that still match the saved plan; list the others.")] = False,
    max_plan_age: Annotated[str | None, typer.Option("--max-plan-age", help="With --plan: refuse a saved plan older than this (30m, 24h, 7d).")] = None,
    now: Annotated[str | None, typer.Option("--now", help="Anchor for relative dates (ISO 8601).")] = None,
    resend_unknown: Annotated[bool, typer.Option("--resend-unknown", help="Send again events whose delivery is unknown (Braze may count them twice).")] = False,
    settle_unknown: Annotated[bool, typer.Option("--settle-unknown", help="First settle events whose delivery is unknown from Braze's export (/users/export/ids): mark sent those Braze has, send those it lacks.")] = False,
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="Read every record, not only those changed since the last run.")] = False,
    start_over: Annotated[bool, typer.Option("--start-over", help="Plan against an empty state although the lockfile says Braze confirmed records (a lost state): everything is new, events count as delivery unknown.")] = False,
    allow: Annotated[list[str] | None, typer.Option("--allow", help="Override one guardrail for this run (repeatable): empty_source, max_delete_share, max_deletes, max_unsubscribe_share, max_data_points, max_events.")] = None,
    target: Annotated[list[str] | None, typer.Option("--target", help="Plan only destination/NAME (repeatable): a partial plan.")] = None,
    lock_timeout: Annotated[str, typer.Option("--lock-timeout", help="How long to wait for the state lock (0, 30s, 5m); default 0: fail at once, naming its owner.")] = "0",
) -> None:
    """Show the plan, ask, send it to Braze, and record what Braze confirmed."""
    from brazecfg.apply.run import Clients, apply_project
    from brazecfg.apply.stop import Interrupted, StopRequest
    from brazecfg.cli import render
    from brazecfg.config.loader import load_project
    from brazecfg.errors import AbortedError
    from brazecfg.plan.definition import Plan
    from brazecfg.state.lock import parse_duration

    console = _console()
    stop = StopRequest()

    def confirm(p: Plan) -> bool:
        progress.planned(p)  # the planning display ends before the plan is shown
        _plan_text(console, p)
        if auto_approve or plan_file is not None:  # a saved plan is its own approval
            return True
        if not sys.stdin.isatty():
            raise BrazecfgError("apply needs a yes: pass --auto-approve when no one can answer "
                                "(CI, scripts)")
        from brazecfg.cli.ask import yes_or_no

        try:
            return yes_or_no("Apply these changes to Braze?")
        except (KeyboardInterrupt, EOFError):
            if stop.signum is not None:
                raise Interrupted(stop.signum) from None
            raise AbortedError("apply cancelled; nothing was sent") from None

    with _guard(), _stoppable(stop), _reporter("apply") as progress:
        if plan_file is not None and not plan_file.is_file():
            raise BrazecfgError(f"no saved plan at {plan_file}; make one with `brazecfg plan --out {plan_file}`")
        if plan_file is None and (skip_changed or max_plan_age):
            raise BrazecfgError("--skip-changed and --max-plan-age go with --plan FILE")
        max_age = None
        if max_plan_age is not None:
            from brazecfg.plan.saved import parse_duration as parse_age

            max_age = parse_age(max_plan_age)
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
        outcome = apply_project(project, confirm=confirm, now=anchor, saved_plan=plan_file,
                                progress=progress.records_done, on_phase=progress.phase,
                                on_rows=progress.rows_read, on_events=progress.events_done,
                                clients=Clients(on_retry=progress.retry),
                                resend_unknown=resend_unknown,
                                full_refresh=full_refresh, start_over=start_over,
                                allow=allowed, targets=targets, skip_changed=skip_changed,
                                max_plan_age=max_age,
                                lock_timeout=parse_duration(lock_timeout),
                                settle=settle_unknown,
                                on_settled=lambda s: render.render_settled(console, s),
                                on_wait=progress.say, on_warning=progress.warn,
                                stop=stop)
        progress.planned(outcome.plan)  # no changes (nothing to confirm)
        progress.end_phase()
        if not outcome.applied:
            _plan_text(console, outcome.plan)
        else:
            console.print("[heading]Applied[/]")
            render.render_results(console, outcome.results)
        # Exit 1 when something needs a person: rejected records or events, or events whose
        # delivery is unknown, from this run or an earlier one (`apply --settle-unknown`).
        if outcome.unknown_left or any(r.failed or r.events_failed for r in outcome.results):
            raise typer.Exit(1)


@app.command(epilog=_example('brazecfg run . --once'))
def run(
    path: PathArg = Path("."),
    once: Annotated[bool, typer.Option("--once", help="Run whatever is due now, then exit (for cron or a CI schedule).")] = False,
    now: Annotated[str | None, typer.Option("--now", help="With --once: decide what is due as of this time (ISO 8601).")] = None,
) -> None:
    """Apply destinations on their schedules: a next-run table, a log line per run; SIGTERM stops."""
    import signal
    import threading

    from brazecfg.config.loader import load_project
    from brazecfg.schedule.runner import RunLocked, Runner, SystemClock, applying, run_lock
    from brazecfg.state.paths import StatePaths

    def log(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    class _At(SystemClock):
        def __init__(self, at: datetime) -> None:
            self.at = at

        def now(self) -> datetime:
            return self.at

    with _guard():
        at = _now(now)
        if at is not None and not once:
            raise BrazecfgError("--now goes with --once (a running scheduler keeps real time)")
        project = load_project(path)
        runner = Runner(project, run_job=applying(project), log=log,
                        clock=_At(at) if at is not None else SystemClock())
        try:
            with run_lock(StatePaths.of(project.settings)):
                if once:
                    runner.table(runner.clock.now())
                    if not runner.run_due():
                        log("nothing due")
                else:
                    stop = threading.Event()
                    for sig in (signal.SIGTERM, signal.SIGINT):
                        signal.signal(sig, lambda *_: stop.set())
                    runner.loop(stop)
        except RunLocked as exc:
            if not once:
                raise
            log(f"skipped: {exc}")  # cron fired while the last run goes on: not an error
            return
        if runner.failures:
            raise typer.Exit(1)


@app.command(epilog=_example('brazecfg drift . --sample 100'))
def drift(
    path: PathArg = Path("."),
    sample: Annotated[int | None, typer.Option("--sample", min=1, help="Compare this many synced users, picked at random (default 100).")] = None,
    ids: Annotated[Path | None, typer.Option("--ids", help="Compare these users: a file of external ids, one a line.")] = None,
    destination: Annotated[list[str] | None, typer.Option("--destination", "-d", help="Only this destination (repeatable).")] = None,
    repair: Annotated[bool, typer.Option("--repair", help="Mark the drifted fields in the state so the next plan writes them again.")] = False,
    format: Annotated[Format, typer.Option("--format", "-f", help="text, json or markdown (no values).")] = Format.text,
    detailed_exitcode: Annotated[bool, typer.Option("--detailed-exitcode", help="Exit 2 when drift was found.")] = False,
) -> None:
    """Read synced users' current Braze profiles and report fields changed outside brazecfg."""
    from brazecfg.cli import render_drift
    from brazecfg.config.loader import load_project
    from brazecfg.drift.check import drift_project

    with _guard():
        if sample is not None and ids is not None:
            raise BrazecfgError("give --sample or --ids, not both")
        wanted = None
        if ids is not None:
            try:
                wanted = [line.strip() for line in ids.read_text(encoding="utf-8").splitlines()
                          if line.strip()]
            except (OSError, UnicodeDecodeError) as exc:
                raise BrazecfgError(f"cannot read --ids {ids}: {exc}") from None
        project = load_project(path)
        reports = drift_project(project, sample=sample, ids=wanted, destinations=destination,
                                repair=repair, on_wait=lambda m: _console(stderr=True).print(m))
        if format is Format.json:
            sys.stdout.write(render_drift.render_drift_json(reports))
        elif format is Format.markdown:
            sys.stdout.write(render_drift.render_drift_markdown(reports))
        else:
            render_drift.render_drift_text(_console(), reports, repair)
        if detailed_exitcode and any(r.drifted for r in reports):
            raise typer.Exit(2)


@import_app.command("grouparoo", epilog=_example('brazecfg import grouparoo ./grouparoo --out ./crm'))
def import_grouparoo(
    directory: Annotated[Path, typer.Argument(help="A Grouparoo project (holding config/) or its config folder.")],
    out: Annotated[Path | None, typer.Option("--out", help="The brazecfg project to write (default: ./NAME-brazecfg).")] = None,
) -> None:
    """Translate a Grouparoo code-config directory; list what was and was not carried over."""
    from rich.markup import escape

    from brazecfg.config.loader import load_project
    from brazecfg.importers.grouparoo import import_grouparoo as run_import
    from brazecfg.importers.grouparoo import summary_lines

    with _guard():
        target = out or Path(f"{directory.resolve().name}-brazecfg")
        result, _ = run_import(directory, target)
        console = _console()
        for note in result.notes:
            console.print(f"[warn]TODO[/] {escape(str(note))}", highlight=False, soft_wrap=True)
        for line in summary_lines(result):
            console.print(line, highlight=False, markup=False)
        load_project(target)  # the result must validate; a failure here is reported as such
        console.print(f"[ok]ok[/]: wrote {target} (see {target / 'IMPORT.md'}); next: "
                      f"`brazecfg plan {target}`", highlight=False)


@emulator_app.callback(invoke_without_command=True, epilog=_example('brazecfg emulator --port 4567'))
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
        serve(config, announce=lambda m: _console().print(_markup("{}", m)))


@emulator_app.command("dump", epilog=_example('BRAZE_REST_ENDPOINT=http://127.0.0.1:4567 brazecfg emulator dump users'))
def emulator_dump(
    url: Annotated[str, typer.Option(help="The running emulator.", envvar="BRAZE_REST_ENDPOINT",
                                     show_envvar=True)] = "http://127.0.0.1:4567",
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


from brazecfg.cli.state_cmd import state_app  # noqa: E402 - it imports helpers above lazily

app.add_typer(state_app, name="state")

EXIT_BUG = 70  # sysexits EX_SOFTWARE: an unexpected error, a bug in brazecfg

# The cycle collector's thresholds for a run (Python's: 700, 10, 10). A plan or apply makes
# and drops a few dicts and tuples per record, almost never a cycle (refcounting frees them),
# yet at 700 allocations a young collection ran every few records and the older ones walked
# every live object: 15% of a first apply of 100k users (bench/README.md). Cycles are still
# collected, every 50,000 allocations.
GC_THRESHOLDS = (50_000, 20, 20)


def main() -> None:
    """Exit codes like Terraform's: 0 success (and no changes with --detailed-exitcode), 1 any
    error (usage errors included: click's 2 would read as "changes planned"), 2 changes
    planned (--detailed-exitcode), 130/143 interrupted, 70 a bug in brazecfg."""
    gc.set_threshold(*GC_THRESHOLDS)
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


