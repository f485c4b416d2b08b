"""Keyed field hashes: the ledger remembers *that* a value was sent, never the value.

A field hash is BLAKE2b keyed with a secret that lives outside the lockfile (environment
variable BRAZECFG_HASH_KEY, or a local key file created on the first apply), so a low-entropy
value such as a country or a gender cannot be recovered by hashing every candidate.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from collections.abc import Callable
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

from brazecfg.errors import StateError

KEY_ENV = "BRAZECFG_HASH_KEY"
KEY_FILE = "hash.key"
_CHECK_MESSAGE = b"brazecfg key check v1"


# One encoder, built once: json.dumps with arguments builds a new one per call (hot in plan).
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def canonical(value: Any) -> str:
    """The one JSON spelling of a value: sorted keys, no spaces, UTF-8 kept."""
    t = type(value)
    # The scalar spellings json's own encoder gives (ensure_ascii=False), without its
    # per-call setup; anything else (lists, objects, subclasses) goes through it.
    if t is str:
        return encode_basestring(value)
    if t is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    if t is float and math.isfinite(value):
        return float.__repr__(value)
    return _ENCODE(value)


class Hasher:
    """Hashes field values with a secret key. Cheap to call millions of times."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise StateError(f"the hash key must be at least 16 bytes; set {KEY_ENV} to a longer secret")
        self._key = key[:64]  # blake2b takes keys up to 64 bytes
        self._keyed = hashlib.blake2b(key=self._key, digest_size=8)  # copied per hash: cheaper
        self._per_field: dict[str, Callable[[Any], str]] = {}

    def field(self, name: str, value: Any) -> str:
        return self.for_field(name)(value)

    def for_field(self, name: str) -> Callable[[Any], str]:
        """``field`` for one name, built once: the key and ``name`` are hashed in advance,
        so a value costs one copy, its canonical spelling and one update. The bytes hashed
        are the same (``name``, NUL, canonical value), so the hashes are too."""
        fn = self._per_field.get(name)
        if fn is None:
            fn = self._per_field[name] = _field_hasher(self._keyed, name)
        return fn

    def check_value(self) -> str:
        """A value stored in the ledger to tell, later, whether the same key is in use."""
        return hashlib.blake2b(_CHECK_MESSAGE, key=self._key, digest_size=8).hexdigest()


_MEMO_LIMIT = 8192  # remembered hashes per field: a few hundred kB at most


def _field_hasher(keyed: Any, name: str) -> Callable[[Any], str]:
    start = keyed.copy()
    start.update((name + "\x00").encode())
    copy = start.copy
    # Hashes of text values already seen: many fields hold few distinct values (a country,
    # a plan, a first name), so most of their hashes are looked up instead of computed.
    # Only exact str and int keys: 1, 1.0 and True are equal as dict keys but hash
    # differently, and no str equals an int.
    memo: dict[str | int, str] = {}

    def field(value: Any) -> str:
        t = type(value)
        if t is str or t is int:
            h = memo.get(value)
            if h is None:
                b = copy()
                b.update(canonical(value).encode())
                h = str(b.hexdigest())
                if len(memo) < _MEMO_LIMIT:
                    memo[value] = h
            return h
        b = copy()
        b.update(canonical(value).encode())
        return str(b.hexdigest())

    return field


def load_key(state_dir: Path, *, create: bool) -> bytes | None:
    """The hash key from the environment or the local key file.

    Returns None when there is none and ``create`` is False (plan must not write anything).
    """
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode()
    path = state_dir / KEY_FILE
    if path.exists():
        try:
            return path.read_bytes().strip()
        except OSError as exc:
            raise StateError(f"cannot read the hash key {path}: {exc.strerror}") from None
    if not create:
        return None
    state_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32).encode()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return key
