"""The compact record layout of SQLite states (v4): small numbers for what repeats.

A v1-v3 record row was ``("braze_users", "42", '{"country":"0f3a...",...}', '[]',
"2026-12-01T10:00:00Z")``: about 315 bytes at 8 fields. In v4 on SQLite it is
``(1, "42", <packed field hashes>, 0, <row hash>)``:

- ``destination``: the destination's number (meta ``destinations``: ``{"name": n}``). A
  rename renumbers nothing: it moves the name. The other tables keep names.
- ``fields``: the field hashes, byte for byte the same values, spelled as binary against
  the destination's list of field names (meta ``fields:<destination>``, append-only):
  ``0x00`` + 8 bytes per name when the record has the first m names of the list, all
  16-digit lowercase hex hashes (the usual case); else ``0x01`` + entries, each
  uvarint(2 * name number + is_text), then 8 bytes, or uvarint(length) + UTF-8 text (a
  value that is not a hash, such as drift's ``drifted`` marker, stays as its text).
- ``groups``: the number of its set of synced groups (meta ``group_sets``: a list of
  sorted lists, 0 is the empty set; a few sets in practice).
- no ``confirmed_at``: nothing read it (the other backends keep the column).

Field and group numbers are only ever appended, so a reader holding an older copy of a
list reloads it when it meets a number past its end.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

DESTINATIONS = "destinations"  # meta: {"destination name": number}
GROUP_SETS = "group_sets"  # meta: [[group, ...], ...]; index = number, 0 = no groups
FIELDS = "fields:"  # meta per destination: its field names, in number order
LEGACY = ("field_names",)  # meta of earlier layouts: dropped by the migration

_HASHES = re.compile(r"[0-9a-f]*")
DENSE, TAGGED = 0, 1


def layout_key(key: str) -> bool:
    """A meta key that describes the layout of this file, not the state (not exported)."""
    return key in (DESTINATIONS, GROUP_SETS, *LEGACY) or key.startswith(FIELDS)


def _uvarint(n: int, out: bytearray) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _read_uvarint(blob: bytes, pos: int) -> tuple[int, int]:
    n, shift = 0, 0
    while True:
        b = blob[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return n, pos


class Stale(LookupError):
    """A number past the end of this copy of a list: reload the lists and try again."""


class Codec:
    """The lists the compact layout numbers against, as read from (and written to) meta."""

    def __init__(self) -> None:
        self.dests: dict[str, int] = {}
        self.sets: list[frozenset[str]] = [frozenset()]
        self.set_ids: dict[tuple[str, ...], int] = {(): 0}
        self.names: dict[str, list[str]] = {}
        self.index: dict[str, dict[str, int]] = {}
        self.dirty: set[str] = set()  # meta keys to write

    def load(self, meta: dict[str, str]) -> None:
        """(Re)read the lists from the layout's meta entries (``layout_key``)."""
        self.dests = dict(json.loads(meta.get(DESTINATIONS) or "{}"))
        sets = [tuple(s) for s in json.loads(meta.get(GROUP_SETS) or "[[]]")]
        self.sets = [frozenset(s) for s in sets]
        self.set_ids = {s: i for i, s in enumerate(sets)}
        self.names = {k[len(FIELDS):]: list(json.loads(v)) for k, v in meta.items()
                      if k.startswith(FIELDS)}
        self.index = {d: {n: i for i, n in enumerate(names)} for d, names in self.names.items()}
        self.dirty = set()

    def dest_name(self, number: int) -> str | None:
        for name, n in self.dests.items():
            if n == number:
                return name
        return None

    def dest_id(self, name: str, *, create: bool = False) -> int | None:
        n = self.dests.get(name)
        if n is None and create:
            n = self.dests[name] = max(self.dests.values(), default=0) + 1
            self.dirty.add(DESTINATIONS)
        return n

    def rename(self, old: str, new: str) -> None:
        """``old``'s number (and field names) now belong to ``new``."""
        n = self.dests.pop(old, None)
        self.dests.pop(new, None)
        if n is not None:
            self.dests[new] = n
        self.dirty.add(DESTINATIONS)
        names = self.names.pop(old, None)
        index = self.index.pop(old, None)
        if names is not None and index is not None:
            self.names[new], self.index[new] = names, index

    def group_id(self, groups: Iterable[str]) -> int:
        key = tuple(sorted(groups))
        n = self.set_ids.get(key)
        if n is None:
            n = self.set_ids[key] = len(self.sets)
            self.sets.append(frozenset(key))
            self.dirty.add(GROUP_SETS)
        return n

    def group_set(self, number: int) -> frozenset[str]:
        if not 0 <= number < len(self.sets):
            raise Stale(number)
        return self.sets[number]

    def field_names(self, dest: str) -> list[str]:
        names = self.names.get(dest)
        if names is None:
            names = self.names[dest] = []
            self.index[dest] = {}
        return names

    def forget(self, dest: str) -> None:
        """The destination's field names go (its records went); its number stays."""
        self.names.pop(dest, None)
        self.index.pop(dest, None)

    def pack(self, dest: str, fields: dict[str, str]) -> bytes:
        """``fields`` packed (new names numbered: ``dump`` writes them)."""
        names = self.field_names(dest)
        index = self.index[dest]
        for name in sorted(fields):
            if name not in index:
                index[name] = len(names)
                names.append(name)
                self.dirty.add(FIELDS + dest)
        m = len(fields)
        if m <= len(names):
            values = [fields[n] for n in names[:m] if n in fields]
            joined = "".join(values)
            if len(values) == m and len(joined) == 16 * m \
                    and all(len(v) == 16 for v in values) and _HASHES.fullmatch(joined):
                return bytes((DENSE,)) + bytes.fromhex(joined)
        out = bytearray((TAGGED,))
        for name in sorted(fields, key=index.__getitem__):
            value, i = fields[name], index[name]
            if len(value) == 16 and _HASHES.fullmatch(value):
                _uvarint(2 * i, out)
                out += bytes.fromhex(value)
            else:
                raw = value.encode("utf-8", "surrogatepass")
                _uvarint(2 * i + 1, out)
                _uvarint(len(raw), out)
                out += raw
        return bytes(out)

    def unpack(self, dest: str, blob: bytes) -> dict[str, str]:
        names = self.field_names(dest)
        if not blob:
            return {}
        if blob[0] == DENSE:
            m = (len(blob) - 1) // 8
            if m > len(names):
                raise Stale(m)
            h = blob[1:].hex()
            return {names[i]: h[16 * i:16 * i + 16] for i in range(m)}
        out: dict[str, str] = {}
        pos, end = 1, len(blob)
        while pos < end:
            n, pos = _read_uvarint(blob, pos)
            if n >> 1 >= len(names):
                raise Stale(n)
            name = names[n >> 1]
            if n & 1:
                length, pos = _read_uvarint(blob, pos)
                out[name] = blob[pos:pos + length].decode("utf-8", "surrogatepass")
                pos += length
            else:
                out[name] = blob[pos:pos + 8].hex()
                pos += 8
        return out

    def dump(self) -> list[tuple[str, str]]:
        """The meta entries changed since the last dump (what to write)."""
        out = []
        for key in sorted(self.dirty):
            if key == DESTINATIONS:
                out.append((key, json.dumps(self.dests, sort_keys=True)))
            elif key == GROUP_SETS:
                out.append((key, json.dumps([sorted(s) for s in self.sets])))
            else:
                out.append((key, json.dumps(self.names[key[len(FIELDS):]])))
        self.dirty = set()
        return out
