"""The library behind `brazecfg state ...`: inspect, rename, remove, unlock, move and back up
a state. The CLI only parses options and prints what these return. Writers run under the
state's lease; nothing here prints a field value, a secret or a URL's password.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from brazecfg import __version__
from brazecfg.errors import StateError
from brazecfg.model.resources import Project
from brazecfg.state.atomic import write_atomic_lines
from brazecfg.state.backends import (
    DEFAULT_SCHEMA,
    Backend,
    local_backend,
    postgres_backend,
    warehouse_backend,
)
from brazecfg.state.base import LockInfo
from brazecfg.state.ledger import Ledger
from brazecfg.state.lock import lease

EXPORT_FORMAT = "brazecfg-state"
EXPORT_VERSION = 1


# -- addresses ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Address:
    """``destination/NAME`` or ``destination/NAME/events/STREAM``."""

    destination: str
    stream: str | None = None

    def __str__(self) -> str:
        base = f"destination/{self.destination}"
        return f"{base}/events/{self.stream}" if self.stream else base


def parse_address(text: str) -> Address:
    parts = text.split("/")
    if len(parts) == 2 and parts[0] == "destination" and parts[1]:
        return Address(parts[1])
    if len(parts) == 4 and parts[0] == "destination" and parts[2] == "events" \
            and parts[1] and parts[3]:
        return Address(parts[1], parts[3])
    raise StateError(f"{text!r} is not a state address; write destination/NAME or "
                     "destination/NAME/events/STREAM")


# -- list / show -------------------------------------------------------------------------------

@dataclass
class DestinationSummary:
    name: str
    records: int
    failures: int
    intents: int
    events: dict[str, dict[str, int]]  # stream -> state -> rows
    watermark: bool


@dataclass
class StateSummary:
    where: str
    exists: bool
    schema_version: int
    state_id: str | None
    generation: int
    destinations: list[DestinationSummary] = field(default_factory=list)
    meta_keys: list[str] = field(default_factory=list)  # names only: values are brazecfg's
    lock: LockInfo | None = None


def summarize(ledger: Ledger) -> StateSummary:
    ident = ledger.identity
    out = StateSummary(ledger.describe(), ident.state_id is not None or ledger.schema_version > 0,
                       ledger.schema_version, ident.state_id, ident.generation,
                       lock=ledger.lock_info())
    for d in ledger.known_destinations():
        out.destinations.append(DestinationSummary(
            d, ledger.count(d), ledger.failures(d, limit=0)[0],
            sum(1 for _ in ledger.stream_intents(d)), ledger.streams(d),
            ledger.watermark(d) is not None))
    out.meta_keys = [k for k, _ in ledger.meta_items()
                     if k not in ("version", "generation", "state_id")
                     and not k.startswith("watermark:")]
    return out


@dataclass
class RecordView:
    external_id: str
    tracked: list[str]  # field names, never values
    groups: list[str]
    failure: str | None
    events: list[tuple[str, str, str, str | None]]  # stream, row key, state, reason


def show_record(ledger: Ledger, destination: str, external_id: str) -> RecordView:
    """What brazecfg believes about one user: tracked fields (names), groups, last failure.
    Event rows are keyed by their source row, not by user, so they are shown per destination."""
    rec = ledger.record(destination, external_id)
    failure = ledger.failure(destination, external_id)
    if rec is None and failure is None:
        raise StateError(f"destination/{destination} has no record {external_id!r} in the state")
    return RecordView(external_id, sorted(rec.fields) if rec else [],
                      sorted(rec.groups) if rec else [], failure, [])


def event_rows(ledger: Ledger, destination: str) -> list[tuple[str, str, str, str | None]]:
    return ledger.event_rows(destination)


def require_destination(ledger: Ledger, destination: str) -> None:
    if destination not in ledger.known_destinations():
        known = ", ".join(ledger.known_destinations()) or "none"
        raise StateError(f"the state ({ledger.describe()}) holds nothing for "
                         f"destination/{destination} (it holds: {known})")


# -- rm / mv -----------------------------------------------------------------------------------

def remove(ledger: Ledger, address: Address) -> None:
    if address.stream is not None:
        raise StateError("state rm takes destination/NAME; event rows are never forgotten one "
                         "stream at a time (that would resend them)")
    require_destination(ledger, address.destination)
    ledger.forget_destination(address.destination)


def move(ledger: Ledger, source: Address, target: Address) -> None:
    require_destination(ledger, source.destination)
    if (source.stream is None) != (target.stream is None):
        raise StateError("state mv moves a destination to a destination, or an event stream to "
                         "an event stream")
    if source.stream is None:
        ledger.rename_destination(source.destination, target.destination)
        return
    if source.destination != target.destination:
        raise StateError("an event stream moves within its destination: "
                         f"destination/{source.destination}/events/NEW")
    assert target.stream is not None
    if source.stream not in ledger.streams(source.destination):
        raise StateError(f"destination/{source.destination} has no event rows for stream "
                         f"{source.stream!r}")
    ledger.rename_stream(source.destination, source.stream, target.stream)


# -- backends named on the command line (state migrate --to) -----------------------------------

def backend_spec(project: Project, kind: str, *, url: str | None = None,
                 path: Path | None = None, app: str | None = None,
                 schema: str | None = None) -> Backend:
    ttl = project.settings.state_lock_ttl or 60.0
    match kind:
        case "local":
            target = path or Path(project.settings.root) / project.settings.state_dir / "ledger.sqlite"
            return local_backend(target, lock_ttl=ttl)
        case "postgres":
            if not url:
                raise StateError("--to postgres needs --url (postgresql://USER:PASSWORD@HOST/DB)")
            return postgres_backend(url, schema or DEFAULT_SCHEMA, lock_ttl=ttl)
        case "warehouse":
            if not app:
                raise StateError("--to warehouse needs --app (one of the project's warehouse apps)")
            return warehouse_backend(project, app, schema or DEFAULT_SCHEMA, lock_ttl=ttl)
    raise StateError(f"--to takes local, postgres or warehouse, not {kind!r}")


def _same(a: Backend, b: Backend) -> bool:
    return a.url == b.url and a.schema == b.schema and a.prefix == b.prefix


def migrate(source: Ledger, target_backend: Backend, command: str) -> dict[str, int]:
    """Copy every row (meta included) to an empty state elsewhere; check the counts. The
    source is kept: point brazecfg.yml at the target when this succeeds."""
    if _same(source.backend, target_backend):
        raise StateError("the target is the state itself; name another backend")
    want = source.counts()
    with Ledger(backend=target_backend, writable=True) as target, \
            lease(target, command):
        if any(target.counts().values()):
            raise StateError(f"the target ({target.describe()}) already holds a state; migrate "
                             "only into an empty one (or `state push` a backup with --force)")
        target.replace_all(source.export_rows(), generation=source.generation)
        got = target.counts()
        if got != want:
            raise StateError(f"the copy in {target.describe()} has {got}, the source {want}; "
                             "the source is unchanged: run the migration again")
    return want


# -- pull / push -------------------------------------------------------------------------------

def export_lines(ledger: Ledger) -> Iterator[str]:
    """A versioned JSON-lines export: a header, every row, a trailer with the counts."""
    ident = ledger.identity
    yield json.dumps({"format": EXPORT_FORMAT, "export_version": EXPORT_VERSION,
                      "schema_version": ledger.schema_version, "state_id": ident.state_id,
                      "generation": ident.generation, "backend": ident.backend,
                      "brazecfg": __version__}, sort_keys=True)
    counts = {"record": 0, "failure": 0, "event": 0, "intent": 0, "meta": 0}
    for row in ledger.export_rows():
        counts[row["t"]] += 1
        yield json.dumps(row, sort_keys=True, ensure_ascii=False)
    yield json.dumps({"t": "end", "counts": counts}, sort_keys=True)


def pull(ledger: Ledger, out: Path | IO[str]) -> int:
    """Write the export to a file (atomically, mode 0600: it holds external ids) or a stream."""
    n = 0
    if not isinstance(out, Path):
        for line in export_lines(ledger):
            out.write(line + "\n")
            n += 1
        return n - 2
    return write_atomic_lines(out, export_lines(ledger), 0o600) - 2


def read_header(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as f:
            head = json.loads(f.readline() or "null")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise StateError(f"cannot read the state export {path} ({exc})") from None
    if not isinstance(head, dict) or head.get("format") != EXPORT_FORMAT:
        raise StateError(f"{path} is not a state export made by `brazecfg state pull`")
    if int(head.get("export_version", 0)) > EXPORT_VERSION:
        raise StateError(f"{path} was exported by a newer brazecfg (export version "
                         f"{head.get('export_version')}); upgrade brazecfg")
    return head


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    """The rows of an export; raises (so the import rolls back) if it is cut short."""
    seen = {"record": 0, "failure": 0, "event": 0, "intent": 0, "meta": 0}
    with path.open(encoding="utf-8") as f:
        f.readline()
        for n, line in enumerate(f, start=2):
            try:
                row = json.loads(line)
            except ValueError:
                raise StateError(f"{path}:{n}: not a JSON line; the export is damaged") from None
            if row.get("t") == "end":
                if row.get("counts") != seen:
                    raise StateError(f"{path}: the trailer counts {row.get('counts')} but the "
                                     f"file holds {seen}; the export is damaged")
                return
            if row.get("t") not in seen:
                raise StateError(f"{path}:{n}: unknown row type {row.get('t')!r}")
            seen[row["t"]] += 1
            yield row
    raise StateError(f"{path} ends before its trailer: the export was cut short; nothing "
                     "was imported")


def push(ledger: Ledger, path: Path, *, force: bool) -> dict[str, int]:
    """Replace the state with an export, in one transaction. Refuses, without ``force``, to
    overwrite a non-empty state that is another state or further along than the export."""
    head = read_header(path)
    if int(head.get("schema_version", 0)) > ledger.schema_version:
        raise StateError(f"{path} holds a state of version {head.get('schema_version')}, newer "
                         "than this brazecfg reads; upgrade brazecfg")
    ident = ledger.identity
    holds = any(ledger.counts().values())
    if holds and not force:
        if ident.state_id and head.get("state_id") and ident.state_id != head["state_id"]:
            raise StateError(f"the state ({ledger.describe()}) is another state (id "
                             f"{ident.state_id}) than the export's ({head['state_id']}); pass "
                             "--force to overwrite it")
        if ident.generation > int(head.get("generation") or 0):
            raise StateError(f"the state ({ledger.describe()}) is at generation "
                             f"{ident.generation}, newer than the export's "
                             f"{head.get('generation')}: overwriting it would forget what "
                             "was confirmed since. Pass --force if that is what you want")
    ledger.replace_all(_rows(path), generation=max(ident.generation,
                                                   int(head.get("generation") or 0)) + 1)
    return ledger.counts()
