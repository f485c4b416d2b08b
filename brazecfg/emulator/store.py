"""Everything the emulator remembers: profiles with their indexes, the request log, and
the saved-state file. One lock guards it all; every method takes it, and none does work
proportional to the number of stored users except the whole-store views and save."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from brazecfg.emulator.config import EmulatorConfig
from brazecfg.emulator.profile import Profile
from brazecfg.emulator.requestlog import LoggedRequest, RequestLog
from brazecfg.emulator.validation import AttributeUpdate, Identifier, Occurrence
from brazecfg.errors import StateError
from brazecfg.state.atomic import write_atomic

STATE_VERSION = 1
_CONTACT_FIELDS = ("email", "phone")  # attributes that can also identify a profile


class StateFileError(StateError):
    """A state file that cannot be loaded: a newer version or not emulator state. A
    StateError, so the CLI reports it as one line with its next step."""


class Store:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.log = RequestLog(config.request_log_limit, config.request_log_max_bytes)
        self._clear()

    def _clear(self) -> None:
        self._profiles: dict[str, Profile] = {}  # braze_id -> profile
        self._by_external: dict[str, str] = {}
        self._by_alias: dict[tuple[str, str], str] = {}
        # field -> value -> braze_id, or a set of them when profiles share an address.
        # A bare str for the common case: a set per address would double the memory.
        self._by_contact: dict[str, dict[str, str | set[str]]] = {f: {} for f in _CONTACT_FIELDS}
        self._next_id = 1
        self._events = 0
        self._purchases = 0
        # With export lag: external_id -> [(write time, full export view or None if gone)].
        self._history: dict[str, list[tuple[float, dict[str, Any] | None]]] = {}

    # -- identity -----------------------------------------------------------------------

    def _find(self, who: Identifier) -> list[Profile]:
        if who.kind == "external_id":
            ids: Iterable[str] = [self._by_external.get(str(who.value), "")]
        elif who.kind == "user_alias":
            ids = [self._by_alias.get(who.value, "")]  # type: ignore[arg-type]
        elif who.kind == "braze_id":
            ids = [str(who.value)]
        else:
            held = self._by_contact[who.kind].get(str(who.value), ())
            ids = [held] if isinstance(held, str) else sorted(held)
        return [self._profiles[i] for i in ids if i in self._profiles]

    def _resolve(self, who: Identifier, update_existing_only: bool, now: str) -> list[Profile]:
        found = self._find(who)
        if found or update_existing_only or who.kind == "braze_id":
            return found  # Braze cannot create a profile from a braze_id it never issued
        profile = Profile(braze_id=f"{self._next_id:024x}", created_at=now)
        self._next_id += 1
        if who.kind == "external_id":
            profile.external_id = str(who.value)
            self._seed(profile, existed=False)
        elif who.kind == "user_alias":
            profile.aliases = (who.value,)  # type: ignore[assignment]
        else:
            profile.attributes[who.kind] = who.value
        self._index(profile)
        return [profile]

    def _index(self, profile: Profile) -> None:
        self._profiles[profile.braze_id] = profile
        if profile.external_id is not None:
            self._by_external[profile.external_id] = profile.braze_id
        for alias in profile.aliases:
            self._by_alias[alias] = profile.braze_id
        for f in _CONTACT_FIELDS:
            value = profile.attributes.get(f)
            if isinstance(value, str):
                index = self._by_contact[f]
                held = index.get(value)
                if held is None or held == profile.braze_id:
                    index[value] = profile.braze_id
                elif isinstance(held, str):
                    index[value] = {held, profile.braze_id}
                else:
                    held.add(profile.braze_id)

    def _unindex_contacts(self, profile: Profile) -> None:
        for f in _CONTACT_FIELDS:
            value = profile.attributes.get(f)
            if not isinstance(value, str):
                continue
            index = self._by_contact[f]
            held = index.get(value)
            if held == profile.braze_id:
                del index[value]
            elif isinstance(held, set):
                held.discard(profile.braze_id)

    def _remove(self, profile: Profile) -> None:
        self._unindex_contacts(profile)
        del self._profiles[profile.braze_id]
        if profile.external_id is not None:
            self._by_external.pop(profile.external_id, None)
        for alias in profile.aliases:
            self._by_alias.pop(alias, None)
        events, purchases = profile.counts()
        self._events -= events
        self._purchases -= purchases

    # -- export lag ---------------------------------------------------------------------

    def _remember(self, external_ids: Iterable[str | None]) -> None:
        """With export lag on, keeps what an export of each id showed before and after this
        write, so a lagging export can answer with the old profile. Under the lock."""
        if not self.config.export_lag_seconds:
            return
        now = time.time()
        for external_id in external_ids:
            if external_id is None:
                continue
            found = self._find(Identifier("external_id", external_id))
            view = found[0].export(None, self.config.dob_export_format) if found else None
            history = self._history.setdefault(external_id, [(float("-inf"), None)])
            history.append((now, view))
            # Only the newest entry older than the lag can still be shown, besides newer ones.
            cutoff = now - self.config.export_lag_seconds
            while len(history) > 1 and history[1][0] <= cutoff:
                history.pop(0)

    def _seed(self, profile: Profile, existed: bool) -> None:
        """Before a profile's first lagged write: what an export showed until then."""
        if not self.config.export_lag_seconds or profile.external_id is None:
            return
        if profile.external_id not in self._history:
            view = profile.export(None, self.config.dob_export_format) if existed else None
            self._history[profile.external_id] = [(float("-inf"), view)]

    def _lagged(self, external_id: str) -> tuple[bool, dict[str, Any] | None]:
        """(True, view) when a lagging export must show an older state of this id."""
        history = self._history.get(external_id)
        if not history:
            return False, None
        cutoff = time.time() - self.config.export_lag_seconds
        shown = [view for at, view in history if at <= cutoff]
        if len(shown) == len(history):  # settled: the current state is visible
            return False, None
        return True, shown[-1]

    # -- writes -------------------------------------------------------------------------

    def apply_track(
        self, updates: Sequence[AttributeUpdate], occurrences: Sequence[Occurrence]
    ) -> None:
        """Attributes first, then events and purchases, as one step under the lock.
        An update-only object for an unknown user is accepted and changes nothing."""
        limit = self.config.max_array_length
        now = _now()
        with self.lock:
            touched: list[str | None] = []
            for update in updates:
                contacts = any(op.name in _CONTACT_FIELDS for op in update.ops)
                for profile in self._resolve(update.who, update.update_existing_only, now):
                    self._seed(profile, existed=True)
                    if contacts:
                        self._unindex_contacts(profile)
                    for op in update.ops:
                        profile.apply(op, limit)
                    if contacts:
                        self._index(profile)
                    if update.subscriptions:
                        profile.set_subscriptions(update.subscriptions)
                    touched.append(profile.external_id)
            for occ in occurrences:
                for profile in self._resolve(occ.who, occ.update_existing_only, now):
                    self._seed(profile, existed=True)
                    profile.record(occ.kind, occ.record)
                    touched.append(profile.external_id)
                    if occ.kind == "event":
                        self._events += 1
                    else:
                        self._purchases += 1
            self._remember(dict.fromkeys(touched))

    def delete(
        self,
        external_ids: Sequence[str],
        braze_ids: Sequence[str],
        aliases: Sequence[tuple[str, str]],
    ) -> int:
        """Deletes at once and answers the number of ids queued: every id sent, known or not,
        as recorded from real Braze (which deletes later, within minutes)."""
        who = [Identifier("external_id", i) for i in external_ids]
        who += [Identifier("braze_id", i) for i in braze_ids]
        who += [Identifier("user_alias", a) for a in aliases]
        with self.lock:
            gone: list[str | None] = []
            for w in who:
                for profile in self._find(w):
                    self._seed(profile, existed=True)
                    self._remove(profile)
                    gone.append(profile.external_id)
            self._remember(dict.fromkeys(gone))
        return len(who)

    def set_subscription(self, group_id: str, state: str, who: Iterable[Identifier]) -> None:
        """Unknown users are ignored: this endpoint does not create profiles."""
        with self.lock:
            for w in who:
                for profile in self._find(w):
                    profile.set_subscriptions([(group_id, state)])

    # -- reads --------------------------------------------------------------------------

    def export(
        self, who: Sequence[Identifier], fields: Sequence[str] | None
    ) -> tuple[list[dict[str, Any]], list[str]]:
        users: list[dict[str, Any]] = []
        invalid: list[str] = []
        dob_format = self.config.dob_export_format
        with self.lock:
            for w in who:
                lagging, view = (
                    self._lagged(str(w.value)) if w.kind == "external_id" else (False, None)
                )
                if lagging:
                    if view is None:
                        invalid.append(str(w.value))
                    else:
                        users.append(_select(view, fields))
                    continue
                found = self._find(w)
                if not found:
                    value = w.value
                    invalid.append(value[1] if isinstance(value, tuple) else value)
                users += [p.export(fields, dob_format) for p in found]
        return users, invalid

    def users(self) -> list[dict[str, Any]]:
        with self.lock:
            profiles = sorted(
                self._profiles.values(),
                key=lambda p: (p.external_id is None, p.external_id or "", p.braze_id),
            )
            return [json.loads(json.dumps(p.to_json())) for p in profiles]

    def user(self, external_id: str) -> dict[str, Any] | None:
        with self.lock:
            found = self._find(Identifier("external_id", external_id))
            return json.loads(json.dumps(found[0].to_json())) if found else None

    def stats(self) -> dict[str, Any]:
        with self.lock:
            requests: dict[str, dict[str, int]] = {}
            for (path, status), n in sorted(self.log.counts.items()):
                requests.setdefault(path, {})[str(status)] = n
            return {
                "users": len(self._profiles),
                "events": self._events,
                "purchases": self._purchases,
                "requests_total": sum(self.log.counts.values()),
                "requests": requests,
            }

    def log_request(self, method: str, path: str, status: int, body: bytes) -> None:
        with self.lock:
            self.log.add(method, path, status, body)

    def requests(self, path: str | None = None, limit: int | None = None) -> list[LoggedRequest]:
        with self.lock:
            return self.log.entries(path, limit)

    # -- lifecycle ----------------------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self._clear()
            self.log.clear()

    def save(self, path: str) -> int:
        """Atomically writes every profile; returns how many. The request log is not saved."""
        with self.lock:
            users = [p.to_json() for p in self._profiles.values()]
            data = {"version": STATE_VERSION, "next_id": self._next_id, "users": users}
            text = json.dumps(data, separators=(",", ":"))
        write_atomic(Path(path), text)
        return len(users)

    def load(self, path: str) -> int:
        """Replaces the store with a saved one; returns how many profiles it held."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except ValueError:
            data = None
        if not isinstance(data, dict) or "version" not in data:
            raise StateFileError(
                f"{path} is not a brazecfg emulator state file; pass another --state file"
            )
        if data["version"] > STATE_VERSION:
            raise StateFileError(
                f"{path} was written by a newer brazecfg (state version {data['version']}); upgrade brazecfg"
            )
        with self.lock:
            self._clear()
            for item in data["users"]:
                profile = Profile.from_json(item)
                self._index(profile)
                events, purchases = profile.counts()
                self._events += events
                self._purchases += purchases
            self._next_id = int(data["next_id"])
            return len(self._profiles)


def _select(view: dict[str, Any], fields: Sequence[str] | None) -> dict[str, Any]:
    if fields is None:
        return view
    wanted = set(fields) | {"external_id"}
    return {k: v for k, v in view.items() if k in wanted}


def _now() -> str:
    return (
        dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
