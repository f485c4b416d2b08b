"""Everything the emulator remembers: profiles with their indexes, the request log, and
the saved-state file. One lock guards it all; every method takes it, and none does work
proportional to the number of stored users except the whole-store views and save."""

from __future__ import annotations

import datetime as dt
import json
import threading
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

    # -- writes -------------------------------------------------------------------------

    def apply_track(
        self, updates: Sequence[AttributeUpdate], occurrences: Sequence[Occurrence]
    ) -> None:
        """Attributes first, then events and purchases, as one step under the lock.
        An update-only object for an unknown user is accepted and changes nothing."""
        limit = self.config.max_array_length
        now = _now()
        with self.lock:
            for update in updates:
                contacts = any(op.name in _CONTACT_FIELDS for op in update.ops)
                for profile in self._resolve(update.who, update.update_existing_only, now):
                    if contacts:
                        self._unindex_contacts(profile)
                    for op in update.ops:
                        profile.apply(op, limit)
                    if contacts:
                        self._index(profile)
                    if update.subscriptions:
                        profile.set_subscriptions(update.subscriptions)
            for occ in occurrences:
                for profile in self._resolve(occ.who, occ.update_existing_only, now):
                    profile.record(occ.kind, occ.record)
                    if occ.kind == "event":
                        self._events += 1
                    else:
                        self._purchases += 1

    def delete(
        self,
        external_ids: Sequence[str],
        braze_ids: Sequence[str],
        aliases: Sequence[tuple[str, str]],
    ) -> int:
        """Deletes at once (Braze queues it for minutes) and counts profiles that existed."""
        who = [Identifier("external_id", i) for i in external_ids]
        who += [Identifier("braze_id", i) for i in braze_ids]
        who += [Identifier("user_alias", a) for a in aliases]
        deleted = 0
        with self.lock:
            for w in who:
                for profile in self._find(w):
                    self._remove(profile)
                    deleted += 1
        return deleted

    def set_subscription(self, group_id: str, state: str, who: Iterable[Identifier]) -> None:
        """Unknown users are ignored: this endpoint does not create profiles."""
        with self.lock:
            for w in who:
                for profile in self._find(w):
                    profile.set_subscriptions([(group_id, state)])

    # -- reads --------------------------------------------------------------------------

    def subscription_status(self, group_id: str, external_ids: Sequence[str]) -> dict[str, str]:
        with self.lock:
            out = {}
            for i in external_ids:
                found = self._find(Identifier("external_id", i))
                state = (found[0].subscriptions or {}).get(group_id) if found else None
                out[i] = {"subscribed": "Subscribed", "unsubscribed": "Unsubscribed"}.get(
                    state or "", "Unknown")
            return out

    def export(
        self, who: Sequence[Identifier], fields: Sequence[str] | None
    ) -> tuple[list[dict[str, Any]], list[str]]:
        users: list[dict[str, Any]] = []
        invalid: list[str] = []
        with self.lock:
            for w in who:
                found = self._find(w)
                if not found:
                    value = w.value
                    invalid.append(value[1] if isinstance(value, tuple) else value)
                users += [p.export(fields) for p in found]
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


def _now() -> str:
    return (
        dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
