"""`brazecfg state ...`: thin commands over brazecfg.state.commands. Writers take the lease."""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from brazecfg.cli.help import _example
from brazecfg.errors import BrazecfgError

if TYPE_CHECKING:
    from brazecfg.model.resources import Project
    from brazecfg.state.ledger import Ledger

state_app = typer.Typer(help="Inspect and manage the state (what Braze confirmed).",
                        no_args_is_help=True, epilog=_example("brazecfg state list -p ."))

ProjectOpt = Annotated[Path, typer.Option("--project", "-p",
                                          help="Project folder (holds brazecfg.yml).")]
TimeoutOpt = Annotated[str, typer.Option("--lock-timeout",
                                         help="How long to wait for the state lock (0, 30s, 5m).")]


def _console(stderr: bool = False) -> Any:
    from brazecfg.cli.main import _console as console  # main imports this module: lazily

    return console(stderr=stderr)


def _say(text: str) -> None:
    _console().print(text, highlight=False, markup=False)


def _guard() -> AbstractContextManager[None]:
    from brazecfg.cli.main import _guard as guard

    return guard()


def _project(path: Path) -> Project:
    from brazecfg.config.loader import load_project

    return load_project(path)


@state_app.command("list", epilog=_example('brazecfg state list -p .'))
def state_list(project: ProjectOpt = Path(".")) -> None:
    """Destinations, records, event rows by state, failures, metadata and the lock."""
    from brazecfg.state.commands import summarize
    from brazecfg.state.ledger import now_ms
    from brazecfg.state.store import open_state

    with _guard():
        with open_state(_project(project), writable=False) as led:
            s = summarize(led)
        _say(f"State: {s.where}")
        if not s.exists:
            _say("  no state yet (the first apply creates it)")
            return
        _say(f"  id {s.state_id}, generation {s.generation}, schema version {s.schema_version}")
        _say(f"  lock: {s.lock.describe(now_ms()) if s.lock else 'free'}")
        if s.meta_keys:
            _say(f"  metadata: {', '.join(s.meta_keys)}")
        if not s.destinations:
            _say("  no destinations")
        for d in s.destinations:
            _say(f"destination/{d.name}: {d.records:,} records, {d.failures:,} failed last time"
                 + (f", {d.intents:,} creates unconfirmed" if d.intents else "")
                 + (", incremental watermark set" if d.watermark else ""))
            for stream, states in d.events.items():
                text = ", ".join(f"{n:,} {st}" for st, n in states.items())
                _say(f"  events/{stream}: {text}")


@state_app.command("show", epilog=_example('brazecfg state show destination/braze_users 42 -p .'))
def state_show(
    address: Annotated[str, typer.Argument(help="destination/NAME")],
    external_id: Annotated[str | None, typer.Argument(help="One user's external id.")] = None,
    events: Annotated[bool, typer.Option("--events", help="List every event row, sent ones too.")] = False,
    project: ProjectOpt = Path("."),
) -> None:
    """What brazecfg believes about a destination or one user: tracked field names (never
    values), groups, the last failure, each event row's state."""
    from brazecfg.state.commands import event_rows, parse_address, require_destination, show_record
    from brazecfg.state.store import open_state

    with _guard():
        addr = parse_address(address)
        with open_state(_project(project), writable=False) as led:
            require_destination(led, addr.destination)
            if external_id is not None:
                v = show_record(led, addr.destination, external_id)
                _say(f"destination/{addr.destination} record {v.external_id}")
                _say(f"  tracked fields: {', '.join(v.tracked) or 'none'}")
                _say(f"  groups: {', '.join(v.groups) or 'none'}")
                _say(f"  last failure: {v.failure or 'none'}")
                return
            _say(f"destination/{addr.destination}: {led.count(addr.destination):,} records")
            n, sample = led.failures(addr.destination, limit=10)
            _say(f"  failed last time: {n:,}")
            for f in sample:
                _say(f"    {f.external_id}: {f.reason}")
            for stream, states in led.streams(addr.destination).items():
                if addr.stream and stream != addr.stream:
                    continue
                _say(f"  events/{stream}: " + ", ".join(f"{n:,} {st}" for st, n in states.items()))
            # Every row with --events; otherwise the ones that need a person (not "sent").
            shown = 0
            rows = event_rows(led, addr.destination)
            for stream, key, st, why in rows:
                if (addr.stream and stream != addr.stream) or (st == "sent" and not events):
                    continue
                if shown == 50 and not events:
                    _say("    ... (pass --events for every row)")
                    break
                _say(f"  events/{stream} row {key}: {st}" + (f" ({why})" if why else ""))
                shown += 1


def _write_command(project: Path, what: str, timeout: str) -> AbstractContextManager[Ledger]:
    from brazecfg.state.lock import parse_duration
    from brazecfg.state.store import locked_state

    return locked_state(_project(project), f"brazecfg state {what}",
                        timeout=parse_duration(timeout),
                        on_wait=lambda m: _console(stderr=True).print(m))


@state_app.command("rm", epilog=_example('brazecfg state rm destination/old_users -p .'))
def state_rm(
    address: Annotated[str, typer.Argument(help="destination/NAME")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
    project: ProjectOpt = Path("."), lock_timeout: TimeoutOpt = "0",
) -> None:
    """Forget a destination: its records, failures and event rows. Its users stay in Braze;
    if it is configured again, every record is new and every event row is sent again."""
    from brazecfg.state.commands import parse_address, remove

    with _guard():
        addr = parse_address(address)
        if not yes:
            if not sys.stdin.isatty():
                raise BrazecfgError("state rm needs a yes: pass --yes when no one can answer")
            from brazecfg.cli.ask import yes_or_no

            try:
                forget = yes_or_no(f"Forget everything the state knows about {addr}? Its "
                                   "event rows would be sent again if it comes back")
            except (KeyboardInterrupt, EOFError):
                forget = False
            if not forget:
                raise BrazecfgError("cancelled; the state is unchanged")
        with _write_command(project, "rm", lock_timeout) as led:
            remove(led, addr)
        _say(f"Removed {addr} from the state.")


@state_app.command("mv", epilog=_example('brazecfg state mv destination/old destination/new -p .'))
def state_mv(
    source: Annotated[str, typer.Argument(help="destination/OLD or destination/D/events/OLD")],
    target: Annotated[str, typer.Argument(help="destination/NEW or destination/D/events/NEW")],
    project: ProjectOpt = Path("."), lock_timeout: TimeoutOpt = "0",
) -> None:
    """Rename a destination or an event stream in the state, so nothing is sent again."""
    from brazecfg.state.commands import move, parse_address

    with _guard():
        a, b = parse_address(source), parse_address(target)
        with _write_command(project, "mv", lock_timeout) as led:
            move(led, a, b)
        _say(f"Moved {a} to {b}.")


@state_app.command("unlock", epilog=_example('brazecfg state unlock LOCK_ID -p .'))
def state_unlock(
    lock_id: Annotated[str, typer.Argument(help="The lock id shown by apply or `state list`.")],
    project: ProjectOpt = Path("."),
) -> None:
    """Force-unlock: free the lease now. Its holder, if still running, fails at its next write."""
    from brazecfg.state.store import open_state

    with _guard():
        proj = _project(project)
        with open_state(proj, writable=False) as led:  # a missing state is not created
            if led.lock_info() is None:
                led.force_unlock(lock_id)  # raises: "it is not locked"
        with open_state(proj, writable=True) as led:
            held = led.force_unlock(lock_id)
        _say(f"Unlocked {lock_id} (held by {held.user}@{held.host}, pid {held.pid}).")


@state_app.command("migrate", epilog=_example('brazecfg state migrate --to postgres --url "$STATE_URL" -p .'))
def state_migrate(
    to: Annotated[str, typer.Option("--to", help="local, postgres or warehouse.")],
    url: Annotated[str | None, typer.Option("--url", help="postgres: the server URL (kept secret).", envvar="BRAZECFG_MIGRATE_URL")] = None,
    path: Annotated[Path | None, typer.Option("--path", help="local: the SQLite file.")] = None,
    app_name: Annotated[str | None, typer.Option("--app", help="warehouse: the app.")] = None,
    schema: Annotated[str | None, typer.Option("--schema", help="postgres/warehouse schema (default brazecfg).")] = None,
    project: ProjectOpt = Path("."), lock_timeout: TimeoutOpt = "0",
) -> None:
    """Copy the state to another backend (meta included), check the counts, keep the source."""
    from brazecfg.state.commands import backend_spec, migrate

    with _guard():
        proj = _project(project)
        target = backend_spec(proj, to, url=url, path=path, app=app_name,
                              schema=schema)
        with _write_command(project, "migrate", lock_timeout) as led:
            counts = migrate(led, target, "brazecfg state migrate")
        _say(f"Copied the state to {target.where}: {counts['record']:,} records, "
             f"{counts['event']:,} event rows, {counts['failure']:,} failures. The source is "
             f"kept; set state.backend: {to} in brazecfg.yml to use the copy.")


@state_app.command("pull", epilog=_example('brazecfg state pull state.jsonl -p .'))
def state_pull(
    file: Annotated[Path | None, typer.Argument(help="Write here (default: stdout).")] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Export the state as versioned JSON lines (a backup; it holds external ids)."""
    from brazecfg.state.commands import pull
    from brazecfg.state.store import open_state

    with _guard():
        with open_state(_project(project), writable=False) as led:
            n = pull(led, file if file is not None else sys.stdout)
        if file is not None:
            _say(f"Wrote {n:,} rows to {file}.")


@state_app.command("push", epilog=_example('brazecfg state push state.jsonl -p .'))
def state_push(
    file: Annotated[Path, typer.Argument(help="An export made by `state pull`.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite a state that is newer or another one.")] = False,
    project: ProjectOpt = Path("."), lock_timeout: TimeoutOpt = "0",
) -> None:
    """Replace the state with an export, in one transaction."""
    from brazecfg.state.commands import push

    with _guard():
        if not file.is_file():
            raise BrazecfgError(f"no state export at {file}")
        with _write_command(project, "push", lock_timeout) as led:
            counts = push(led, file, force=force)
        _say(f"Pushed {file}: {counts['record']:,} records, {counts['event']:,} event rows.")
