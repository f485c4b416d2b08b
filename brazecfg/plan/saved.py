"""Saved plans: `plan --out FILE` records what was reviewed, `apply --plan FILE` sends exactly that.

A saved plan is JSON Lines, written as it is read from the plan's spools (a million records
never means a million objects in memory):

- line 1, the header: ``kind``, ``format_version``, when it was made, the flags it was made
  with (``now`` is the anchor actually used, so relative dates mean the same at apply), the
  hash key's check value, the plan JSON of ``brazecfg plan --format json`` (``plan``; see
  ``schemas/plan.json``) and, per destination, the state bindings the plan was made against;
- one line per planned record change: ``["r", destination, external_id, action, hash, sig]``;
- one line per event row to send: ``["e", destination, stream, row key, hash]``;
- per destination, the field names ``sig`` indexes: ``["f", destination, [names]]``;
- the last line, ``["end", {"records": n, "events": m}]``: a cut-off file is refused.

``hash`` is a keyed hash (the project's :class:`Hasher`, so a value cannot be guessed by
hashing candidates) of the whole planned payload (``RecordChange.digest_line()``, or the event
object); ``sig`` holds two hex digits of a keyed hash per field, only so a refusal can say which
fields moved. No value and no personal field is ever written; external ids are.

Apply re-plans with the saved flags and compares record by record in a temporary SQLite file
(the spools' order is not guaranteed to match, and memory stays flat). A record whose payload
no longer matches, a record no longer planned and a record newly planned all count as
"changed since the plan was reviewed".
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

from brazecfg.errors import BrazecfgError, StalePlanError
from brazecfg.model.resources import Project
from brazecfg.plan.counting import RowsRead
from brazecfg.plan.definition import (
    FORMAT_VERSION,
    ConfigAction,
    ConfigChange,
    DestinationPlan,
    Issue,
    Plan,
    RecordChange,
    RemovedDestination,
)
from brazecfg.plan.guardrails import Tripped
from brazecfg.plan.planner import ClientFactory, make_plan
from brazecfg.scratch import Scratch
from brazecfg.state.hashing import KEY_FILE, Hasher, load_key
from brazecfg.state.paths import StatePaths

KIND = "brazecfg-saved-plan"
SAMPLE_IDS = 10


@dataclass(frozen=True)
class PlanFlags:
    """The options a plan was made with; apply re-plans with exactly these."""

    now: str  # the anchor of relative dates actually used (ISO 8601)
    now_explicit: bool = False  # --now was given
    full_refresh: bool = False
    resend_unknown: bool = False
    start_over: bool = False
    allow: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()  # destination names (--target destination/NAME)

    def to_dict(self) -> dict[str, Any]:
        return {"now": self.now, "now_explicit": self.now_explicit,
                "full_refresh": self.full_refresh, "resend_unknown": self.resend_unknown,
                "start_over": self.start_over, "allow": sorted(self.allow),
                "targets": [f"destination/{t}" for t in self.targets]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PlanFlags:
        return cls(now=str(d["now"]), now_explicit=bool(d.get("now_explicit")),
                   full_refresh=bool(d.get("full_refresh")),
                   resend_unknown=bool(d.get("resend_unknown")),
                   start_over=bool(d.get("start_over")),
                   allow=tuple(str(a) for a in d.get("allow") or ()),
                   targets=tuple(str(t).removeprefix("destination/")
                                 for t in d.get("targets") or ()))

    @property
    def anchor(self) -> datetime:
        dt = datetime.fromisoformat(self.now.replace("Z", "+00:00"))
        return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _binding(d: DestinationPlan) -> dict[str, Any]:
    """What a destination's plan was made against; apply refuses when any of it differs."""
    return {"destination": d.destination, "state_name": d.state_name,
            "bindings": d.bindings, "stream_renames": dict(sorted(d.stream_renames.items())),
            "reset_state": d.reset_state}


def _line(item: Any) -> str:
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False, sort_keys=True) + "\n"


def _record_hash(hasher: Hasher, change: RecordChange) -> str:
    return hasher.field("\x00record", change.digest_line())


def _record_fields(change: RecordChange) -> Iterator[tuple[str, Any]]:
    """The fields of a payload, for saying which moved: attributes, then group changes."""
    yield from change.attributes.items()
    for g in change.joins:
        yield f"group {g}", "join"
    for g in change.leaves:
        yield f"group {g}", "leave"


def _sig(hasher: Hasher, change: RecordChange, index: dict[str, int]) -> str:
    parts = []
    for name, value in _record_fields(change):
        i = index.setdefault(name, len(index))
        parts.append(f"{i}:{hasher.field(name, value)[:2]}")
    return ",".join(parts)


def _event_hash(hasher: Hasher, item: dict[str, Any]) -> str:
    return hasher.field("\x00event", item)


def write_saved_plan(path: Path, plan: Plan, hasher: Hasher, flags: PlanFlags,
                     created_at: datetime | None = None) -> None:
    """Write ``plan`` (made with a spool) to ``path``, atomically, streaming the spools."""
    created = (created_at or datetime.now(timezone.utc)).isoformat()
    header = {"kind": KIND, "format_version": FORMAT_VERSION, "created_at": created,
              "flags": flags.to_dict(), "key_check": hasher.check_value(),
              "plan": plan.to_dict(), "destinations": [_binding(d) for d in plan.destinations]}
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(_line(header))
            records = events = 0
            for d in plan.destinations:
                index: dict[str, int] = {}
                for change in d.read_spool():
                    f.write(_line(["r", d.destination, change.external_id, change.action.value,
                                   _record_hash(hasher, change), _sig(hasher, change, index)]))
                    records += 1
                for item in d.read_event_spool():
                    f.write(_line(["e", d.destination, item["stream"], item["key"],
                                   _event_hash(hasher, item)]))
                    events += 1
                f.write(_line(["f", d.destination, sorted(index, key=index.__getitem__)]))
            f.write(_line(["end", {"records": records, "events": events}]))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def plan_and_save(project: Project, path: Path, flags: PlanFlags,
                  clients: ClientFactory | None = None,
                  on_note: Callable[[str], None] | None = None,
                  on_rows: RowsRead | None = None) -> Plan:
    """`plan --out`: plan with a temporary spool (the full change lists exist only there) and
    save it. A project with no hash key yet gets its local key file now (or set
    BRAZECFG_HASH_KEY): the saved hashes must be keyed with the key apply will use, and a
    ledger written with a key that is missing is refused by make_plan before that."""
    paths = StatePaths.of(project.settings)
    with Scratch("plan") as spool:
        plan = make_plan(project, now=flags.anchor, clients=clients, spool_dir=Path(spool),
                         resend_unknown=flags.resend_unknown, full_refresh=flags.full_refresh,
                         start_over=flags.start_over,
                         destinations=list(flags.targets) or None, on_rows=on_rows)
        plan.allowed = frozenset(flags.allow)
        had_key = load_key(paths.state_dir, create=False) is not None
        key = load_key(paths.state_dir, create=True)
        assert key is not None
        write_saved_plan(path, plan, Hasher(key), flags)
    if on_note is not None:
        if not had_key:
            on_note(f"created the hash key {paths.state_dir / KEY_FILE}: the saved plan and the "
                    "state are keyed with it; keep it (or set BRAZECFG_HASH_KEY everywhere)")
        on_note(f"saved the plan to {path}; apply exactly this with `brazecfg apply --plan "
                f"{path}`")
    return plan


# -- reading -------------------------------------------------------------------------------

def _unreadable(path: Path, why: str) -> StalePlanError:
    return StalePlanError(f"cannot read the saved plan {path} ({why}); make a new one with "
                          "`brazecfg plan --out`")


def read_header(path: Path) -> dict[str, Any]:
    """The header of a saved plan (what `show` renders, what apply checks first)."""
    try:
        with Path(path).open(encoding="utf-8") as f:
            first = f.readline()
        doc = json.loads(first)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _unreadable(path, str(exc)) from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND or not isinstance(doc.get("plan"),
                                                                              dict):
        raise StalePlanError(f"{path} is not a plan saved by `brazecfg plan --out`")
    version = str(doc.get("format_version", ""))
    if version.split(".")[0] != FORMAT_VERSION.split(".")[0]:
        raise StalePlanError(f"{path} is a saved plan of format {version or 'unknown'}; this "
                             f"brazecfg reads format {FORMAT_VERSION.split('.')[0]}.x: make a "
                             "new one with `brazecfg plan --out`")
    return doc


@dataclass
class Drift:
    """What moved in one destination since its plan was reviewed (ids and counts only)."""

    destination: str
    changed: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    fields: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)

    def add(self, action: str, fields: set[str], key: str) -> None:
        self.changed += 1
        self.actions[action] += 1
        for f in fields:
            self.fields[f] += 1
        if len(self.samples) < SAMPLE_IDS:
            self.samples.append(key)


class SavedPlan:
    """A saved plan loaded into a temporary SQLite file, for comparing record by record."""

    def __init__(self, path: Path, workdir: Path) -> None:
        self.path = Path(path)
        self.header = read_header(self.path)
        self.flags = PlanFlags.from_dict(self.header.get("flags") or {"now": ""})
        self._db = sqlite3.connect(workdir / "saved-plan.sqlite")
        self._db.execute("CREATE TABLE saved (dest TEXT, kind TEXT, key TEXT, action TEXT, "
                         "hash TEXT, sig TEXT, seen INTEGER DEFAULT 0, "
                         "PRIMARY KEY (dest, kind, key))")
        self.fields: dict[str, list[str]] = {}
        self._load()

    def close(self) -> None:
        self._db.close()

    def _load(self) -> None:
        counts = {"records": 0, "events": 0}
        end: dict[str, Any] | None = None
        try:
            with self.path.open(encoding="utf-8") as f:
                f.readline()
                batch: list[tuple[str, ...]] = []
                for line in f:
                    item = json.loads(line)
                    tag = item[0]
                    if tag == "r":
                        batch.append((item[1], "r", item[2], item[3], item[4], item[5]))
                        counts["records"] += 1
                    elif tag == "e":
                        batch.append((item[1], "e", f"{item[2]}\x00{item[3]}", "event", item[4],
                                      ""))
                        counts["events"] += 1
                    elif tag == "f":
                        self.fields[item[1]] = [str(n) for n in item[2]]
                    elif tag == "end":
                        end = item[1]
                    if len(batch) >= 5000:
                        self._db.executemany("INSERT INTO saved (dest, kind, key, action, hash, "
                                             "sig) VALUES (?, ?, ?, ?, ?, ?)", batch)
                        batch = []
                self._db.executemany("INSERT INTO saved (dest, kind, key, action, hash, sig) "
                                     "VALUES (?, ?, ?, ?, ?, ?)", batch)
        except (OSError, UnicodeDecodeError, ValueError, IndexError, TypeError,
                sqlite3.Error) as exc:
            raise _unreadable(self.path, f"{type(exc).__name__}: {exc}") from None
        if end != counts:
            raise _unreadable(self.path, "the file is cut off or was edited")

    # -- checks ------------------------------------------------------------------------------
    def check_identity(self, plan: Plan, hasher: Hasher) -> None:
        """Refuse what no record-by-record comparison can mend: another config, another hash
        key, other destinations, other state bindings."""
        if self.header.get("key_check") != hasher.check_value():
            raise StalePlanError("the saved plan was made with another hash key "
                                 "(BRAZECFG_HASH_KEY or .brazecfg/hash.key); plan again with "
                                 "the key apply uses")
        if self.header["plan"].get("config_fingerprint") != plan.config_fingerprint:
            raise StalePlanError("the saved plan was made for another version of the config; "
                                 "run `brazecfg plan --out` again")
        want = {b["destination"]: b for b in self.header.get("destinations") or []}
        now = {d.destination: _binding(d) for d in plan.destinations}
        if sorted(want) != sorted(now):
            raise StalePlanError(f"the saved plan covers {', '.join(sorted(want)) or 'nothing'}"
                                 f", this plan {', '.join(sorted(now)) or 'nothing'}; run "
                                 "`brazecfg plan --out` again")
        for name in sorted(now):
            if json.loads(json.dumps(now[name])) != want[name]:
                raise StalePlanError(f"destination {name}: the state it is bound to (workspace, "
                                     "subscription groups, a move or a rename) changed since the "
                                     "plan was reviewed; run `brazecfg plan --out` again")

    def check_age(self, max_age: timedelta | None, now: datetime | None = None) -> None:
        if max_age is None:
            return
        created = datetime.fromisoformat(str(self.header.get("created_at")))
        age = (now or datetime.now(timezone.utc)) - created
        if age > max_age:
            raise StalePlanError(f"the saved plan is {_human(age)} old, older than "
                                 f"--max-plan-age {_human(max_age)}; run `brazecfg plan --out` "
                                 "again")

    def compare(self, dplan: DestinationPlan, hasher: Hasher, workdir: Path) -> Drift:
        """Compare one destination's new spools with what was saved; write the spools of what
        still matches next to them (``keep_only_matching`` switches the plan to those)."""
        drift = Drift(dplan.destination)
        names = self.fields.get(dplan.destination, [])
        index = {n: i for i, n in enumerate(names)}
        dest = dplan.destination
        seen: list[tuple[str, str, str]] = []
        query = "SELECT action, hash, sig FROM saved WHERE dest = ? AND kind = 'r' AND key = ?"
        with _open(workdir / f"{_safe(dest)}.matching.jsonl") as keep:
            for line in _lines(dplan.spool):
                change = RecordChange.from_json(line)
                row = self._db.execute(query, (dest, change.external_id)).fetchone()
                if row is not None:
                    seen.append((dest, "r", change.external_id))
                    if row[0] == change.action.value and row[1] == _record_hash(hasher, change):
                        keep.write(line)  # the spooled line itself: the applier reads it
                        continue
                    now_sig = _sig(hasher, change, index)  # only to say which fields moved
                    moved = _sig_fields(row[2], names) ^ _sig_fields(now_sig, list(index))
                    drift.add(change.action.value, {f for f, _ in moved}, change.external_id)
                else:
                    drift.add(change.action.value, {n for n, _ in _record_fields(change)},
                              change.external_id)
                seen = self._flush_seen(seen)
        with _open(workdir / f"{_safe(dest)}.matching.events.jsonl") as keep:
            for line in _lines(dplan.event_spool):
                item = json.loads(line)
                key = f"{item['stream']}\x00{item['key']}"
                row = self._db.execute("SELECT hash FROM saved WHERE dest = ? AND kind = 'e' "
                                       "AND key = ?", (dest, key)).fetchone()
                if row is not None:
                    seen.append((dest, "e", key))
                    if row[0] == _event_hash(hasher, item):
                        keep.write(line)
                        continue
                drift.add("event", {f"events {item['stream']}"}, item["key"])
                seen = self._flush_seen(seen)
        self._flush_seen(seen, force=True)
        # What was reviewed and is no longer planned (sent by another apply, or back in line
        # with Braze): nothing to send, but the plan that was approved is not this one.
        for kind, key, action, sig in self._db.execute(
                "SELECT kind, key, action, sig FROM saved WHERE dest = ? AND seen = 0 "
                "ORDER BY kind DESC, key", (dest,)):
            if kind == "r":
                drift.add(action, {f for f, _ in _sig_fields(sig, names)}, key)
            else:
                stream, _, row_key = key.partition("\x00")
                drift.add("event", {f"events {stream}"}, row_key)
        return drift

    def _flush_seen(self, seen: list[tuple[str, str, str]], force: bool = False
                    ) -> list[tuple[str, str, str]]:
        if seen and (force or len(seen) >= 5000):
            self._db.executemany("UPDATE saved SET seen = 1 WHERE dest = ? AND kind = ? AND "
                                 "key = ?", seen)
            return []
        return seen


def keep_only_matching(dplan: DestinationPlan, workdir: Path) -> None:
    """Point the plan's spools at the changes that still match the reviewed plan: the applier
    reads the spools, so it sends exactly those and nothing else."""
    dplan.spool = workdir / f"{_safe(dplan.destination)}.matching.jsonl"
    dplan.event_spool = workdir / f"{_safe(dplan.destination)}.matching.events.jsonl"


def _lines(path: Path | None) -> Iterator[str]:
    """The lines of a spool, as written (a plan without a spool has none)."""
    if path is None:
        return
    with path.open(encoding="utf-8") as f:
        yield from f


def _open(path: Path) -> IO[str]:
    return path.open("w", encoding="utf-8")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _sig_fields(sig: str, names: list[str]) -> set[tuple[str, str]]:
    out = set()
    for part in sig.split(",") if sig else ():
        i, _, h = part.partition(":")
        n = int(i)
        out.add((names[n] if n < len(names) else f"field {n}", h))
    return out


def drift_message(drifts: list[Drift], *, skipped: bool) -> str:
    """One paragraph per destination: how many records moved, by action and field, a few ids."""
    events = sum(d.actions["event"] for d in drifts)
    records = sum(d.changed for d in drifts) - events
    what = [f"{records:,} record{'s' if records != 1 else ''}"] if records or not events else []
    what += [f"{events:,} event row{'s' if events != 1 else ''}"] if events else []
    lines = [f"{' and '.join(what)} changed since the plan was reviewed"
             + ("; only the others are applied (--skip-changed):" if skipped else
                "; nothing was sent:")]
    for d in drifts:
        if not d.changed:
            continue
        acts = ", ".join(f"{n:,} {a}" for a, n in sorted(d.actions.items()))
        flds = ", ".join(f"{f} {n:,}" for f, n in sorted(d.fields.items(),
                                                         key=lambda kv: (-kv[1], kv[0]))[:20])
        lines.append(f"  destination {d.destination}: {d.changed:,} ({acts})")
        if flds:
            lines.append(f"    fields: {flds}")
        more = f" and {d.changed - len(d.samples):,} more" if d.changed > len(d.samples) else ""
        lines.append(f"    ids: {', '.join(json.dumps(s) for s in d.samples)}{more}")
    if not skipped:
        lines.append("Review a new plan (`brazecfg plan --out`), or apply only what still "
                     "matches with `apply --plan FILE --skip-changed`.")
    return "\n".join(lines)


# -- durations -----------------------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``24h``, ``7d`` (or combined, ``1h30m``)."""
    parts = re.fullmatch(r"(?:\d+[smhd])+", text.strip().lower() or "x")
    if parts is None:
        raise BrazecfgError(f"--max-plan-age takes a duration such as 30m, 24h or 7d, not "
                            f"{text!r}")
    seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhd])", text.lower()))
    return timedelta(seconds=seconds)


def _human(d: timedelta) -> str:
    s = int(d.total_seconds())
    days, hours, minutes = s // 86400, s % 86400 // 3600, s % 3600 // 60
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m{s % 60}s" if minutes else f"{s}s"


# -- rebuilding a plan from its JSON (one renderer for `plan` and `show`) -------------------

def plan_from_dict(doc: dict[str, Any]) -> Plan:
    """The Plan a plan JSON describes (no samples: the JSON never holds values), so `show`
    renders a saved plan with the very renderers `plan` uses."""
    try:
        return _plan_from_dict(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StalePlanError(f"the saved plan's JSON is not a plan of this brazecfg ({exc})"
                             ) from None


def _plan_from_dict(doc: dict[str, Any]) -> Plan:
    dests = []
    for s in doc["destinations"]:
        d = DestinationPlan(s["destination"], s["mode"], s["model"])
        d.counts.update({k: int(v) for k, v in s["counts"].items() if v})
        d.field_sets.update(s["fields_set"])
        d.field_removals.update(s["fields_removed"])
        d.joins.update(s["group_joins"])
        d.leaves.update(s["group_leaves"])
        d.issue_count = int(s["issues"]["count"])
        d.issues = [Issue(**i) for i in s["issues"]["first"]]
        d.events_to_send.update(s["events_to_send"])
        d.events_unknown.update(s["events_delivery_unknown"])
        d.failed_last_time = int(s["failed_last_time"]["count"])
        d.failed_samples = [Issue(**i) for i in s["failed_last_time"]["first"]]
        d.read_since = s["read_since"]
        d.full_read_reason = s.get("full_read_reason") or ""
        d.late_records = int(s["read_by_key"])
        d.hashes_compared = int(s.get("hashes_compared") or 0)
        d.compared = str(s.get("compared") or "")
        d.compared_in = str(s.get("compared_in") or "")
        d.rows_read = int(s.get("rows_read") or 0)
        d.data_points = int(s["data_points"])
        d.billing = str(s.get("billing", "data_points"))
        d.requests = int(s.get("requests", 0))
        d.seconds_at_limit = float(s.get("seconds_at_rate_limit", 0.0))
        d.guardrail_limits = dict(s["guardrails"]["limits"])
        d.guardrails = [Tripped(**t) for t in s["guardrails"]["tripped"]]
        d.moved_from = s.get("moved_from") or ""
        d.binding_changes = list(s["binding_changes"])
        d.stream_renames = dict(s["stream_renames"])
        d.reset_state = bool(s.get("reset_state"))
        d.saved_digest = str(s["digest"])
        dests.append(d)
    return Plan(
        config_changes=tuple(ConfigChange(ConfigAction(c["action"]), c["resource"],
                                          tuple(c["keys"])) for c in doc["config_changes"]),
        destinations=tuple(dests),
        config_fingerprint=str(doc["config_fingerprint"]),
        ledger_generation=int(doc["ledger_generation"]),
        removed_destinations=tuple(RemovedDestination(**r)
                                   for r in doc["removed_destinations"]),
        targets=tuple(t.removeprefix("destination/") for t in doc["targets"]),
        allowed=frozenset(doc["guardrails_allowed"]),
    )

