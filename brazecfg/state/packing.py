"""Field hashes packed as binary: what a record's ``fields`` column holds on SQLite (v4).

A record's field hashes were JSON text (``{"country":"0f3a...","email":"9b1c..."}``), about 30
bytes a field. Packed, a field is its name's number in the state's list of field names
(meta ``field_names``, append-only) and the hash's 8 bytes: 9 bytes. The values are the same
hashes, byte for byte: only the spelling changes. A value that is not a 16-digit lowercase
hex hash (drift's ``drifted`` marker) is kept as its text.

Entry: uvarint(2 * name number + is_text), then 8 bytes, or uvarint(length) + UTF-8 text.
"""

from __future__ import annotations

from collections.abc import Callable

_HEX = frozenset("0123456789abcdef")


def _uvarint(n: int, out: bytearray) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def pack(fields: dict[str, str], number: Callable[[str], int]) -> bytes:
    """``fields`` packed; ``number`` gives (and, for a new name, assigns) a name's number."""
    out = bytearray()
    for name in sorted(fields):
        value = fields[name]
        i = number(name)
        if len(value) == 16 and _HEX.issuperset(value):
            _uvarint(2 * i, out)
            out += bytes.fromhex(value)
        else:
            raw = value.encode("utf-8", "surrogatepass")
            _uvarint(2 * i + 1, out)
            _uvarint(len(raw), out)
            out += raw
    return bytes(out)


def unpack(blob: bytes, names: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    pos, end = 0, len(blob)
    while pos < end:
        n, shift = 0, 0
        while True:
            b = blob[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        name = names[n >> 1]
        if n & 1:
            length, shift = 0, 0
            while True:
                b = blob[pos]
                pos += 1
                length |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    break
            out[name] = blob[pos:pos + length].decode("utf-8", "surrogatepass")
            pos += length
        else:
            out[name] = blob[pos:pos + 8].hex()
            pos += 8
    return out
