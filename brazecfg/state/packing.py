"""The compact record layout of SQLite states (v4): small numbers for what repeats.

A v1-v3 record row was ``("braze_users", "42", '{"country":"0f3a...",...}', '[]',
"2026-12-01T10:00:00Z")``: about 315 bytes at 8 fields. In v4 on SQLite it is
``(1, "42", <packed record>, <row hash>)``:

- ``destination``: the destination's number (meta ``destinations``: ``{"name": n}``). A
  rename renumbers nothing: it moves the name. The other tables keep names.
- ``fields``: the field hashes, byte for byte the same values, and the set of synced
  groups, spelled against the destination's list of field names (meta
  ``fields:<destination>``, append-only) and the list of group sets (meta ``group_sets``:
  sorted lists, 0 is the empty set; a few sets in practice):
  * a multiple of 8 bytes long: no groups, and 8 bytes per name for the first m names of
    the list, all 16-digit lowercase hex hashes (the usual record);
  * else uvarint(2 * group set + tagged) (made one byte longer if the blob would be a
    multiple of 8), then either 8 bytes per name as above (tagged = 0) or entries
    (tagged = 1), each uvarint(2 * name number + is_text), then 8 bytes or uvarint(length)
    + UTF-8 text (a value that is not a hash, such as drift's ``drifted`` marker, is kept
    as its text).
- no ``groups`` and no ``confirmed_at`` column (nothing read confirmed_at; the other
  backends keep both).

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
# m values joined by spaces (bytes.fromhex skips them), 17 * m - 1 characters long: one
# match says each is a 16-digit hash (the length leaves no room for a space inside one).
_SPACED = re.compile(r"(?:[0-9a-f]{16}(?: [0-9a-f]{16})*)?")
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


def _tag(value: int, rest: int) -> bytes:
    """uvarint(value), one byte longer (a redundant 0x80, 0x00 ending) when the blob would
    otherwise be a multiple of 8 bytes long: that length means dense with no groups."""
    out = bytearray()
    _uvarint(value, out)
    if (len(out) + rest) % 8 == 0:
        out[-1] |= 0x80
        out.append(0)
    return bytes(out)


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
        # dest -> {m: its first m field names, as a set and in order}: names are only
        # appended to a list, so its first m stay (pack's usual case); dropped with the list.
        self._prefixes: dict[str, dict[int, tuple[frozenset[str], tuple[str, ...]]]] = {}
        self._set_of: dict[frozenset[str], int] = {}  # group_id's answers, by set
        self._tags: dict[tuple[int, int], bytes] = {}  # _tag's, by (value, rest)

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
        self._prefixes = {}
        self._set_of = {}
        self._tags = {}

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
        self._prefixes.pop(old, None)
        self._prefixes.pop(new, None)
        if n is not None:
            self.dests[new] = n
        self.dirty.add(DESTINATIONS)
        names = self.names.pop(old, None)
        index = self.index.pop(old, None)
        if names is not None and index is not None:
            self.names[new], self.index[new] = names, index

    def group_id(self, groups: Iterable[str]) -> int:
        if isinstance(groups, frozenset):
            n = self._set_of.get(groups)
            if n is None:
                n = self._set_of[groups] = self.group_id(tuple(groups))
            return n
        key = tuple(sorted(set(groups)))
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
        self._prefixes.pop(dest, None)

    def pack(self, dest: str, fields: dict[str, str], groups: Iterable[str] = ()) -> bytes:
        """A record's field hashes and groups as one blob (new names and group sets are
        numbered: ``dump`` writes them)."""
        m = len(fields)
        prefix = self._prefixes.setdefault(dest, {}).get(m)
        if prefix is None or fields.keys() != prefix[0]:
            names = self.field_names(dest)
            index = self.index[dest]
            if not index.keys() >= fields.keys():
                for name in sorted(fields):
                    if name not in index:
                        index[name] = len(names)
                        names.append(name)
                        self.dirty.add(FIELDS + dest)
            if prefix is None:
                first = tuple(names[:m])
                prefix = self._prefixes[dest][m] = (frozenset(first), first)
        g = self.group_id(groups) if groups else 0
        if fields.keys() == prefix[0]:  # the destination's first m names: 8 bytes each
            spaced = " ".join([fields[n] for n in prefix[1]])
            if len(spaced) == max(0, 17 * m - 1) and _SPACED.fullmatch(spaced):
                dense = bytes.fromhex(spaced)
                if g == 0:
                    return dense
                tag = self._tags.get((g, m))
                if tag is None:
                    tag = self._tags[(g, m)] = _tag(2 * g + DENSE, 8 * m)
                return tag + dense
        index = self.index[dest]
        out = bytearray()
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
        return _tag(2 * g + TAGGED, len(out)) + bytes(out)

    def groups_of(self, blob: bytes) -> frozenset[str]:
        if len(blob) % 8 == 0:
            return self.sets[0]
        tag, _ = _read_uvarint(blob, 0)
        return self.group_set(tag >> 1)

    def unpack(self, dest: str, blob: bytes) -> tuple[dict[str, str], frozenset[str]]:
        """(field -> hash, groups) of a packed record."""
        names = self.field_names(dest)
        if len(blob) % 8 == 0:
            tag, pos = DENSE, 0
        else:
            tag, pos = _read_uvarint(blob, 0)
        groups = self.group_set(tag >> 1)
        if tag & 1 == DENSE:
            m = (len(blob) - pos) // 8
            if m > len(names):
                raise Stale(m)
            h = blob[pos:].hex()
            return {names[i]: h[16 * i:16 * i + 16] for i in range(m)}, groups
        out: dict[str, str] = {}
        end = len(blob)
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
        return out, groups

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
