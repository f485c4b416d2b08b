"""The one scrubber: every value a template read from the environment is a possible secret.

Templates register each environment value they read (``remember``); the CLI's error boundary,
its consoles and the warehouse's driver messages pass text through ``scrub`` before it is
shown, so a secret never reaches stderr, a log or a saved plan, whatever message carries it (a
database error quoting a query, a URL parser quoting part of a password, "no such table" naming
a table read from the environment).

Values shorter than ``MIN_SECRET`` characters are not masked: masking "1" or "on" everywhere
would make every message unreadable and protects nothing.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

MIN_SECRET = 4
MASK = "***"
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_known: set[str] = set()


def remember(value: object) -> None:
    """Mask ``value`` (and the fragments a URL parser could quote) in everything shown."""
    text = str(value)
    if len(text) < MIN_SECRET:
        return
    _known.add(text)
    for variant in (quote(text, safe=""), unquote(text)):
        if len(variant) >= MIN_SECRET:
            _known.add(variant)
    # A password with an unencoded '@', ':' or '/' splits when a URL is parsed, and the parser
    # then quotes a piece of it ("invalid literal for int(): '<part>'"): mask the pieces too.
    # (Only for values that are not URLs themselves: a whole URL is masked as a whole, and
    # its password by the URL rule in scrub.)
    if "://" not in text:
        for piece in re.split(r"[@:/?#\s]+", text):
            if len(piece) >= MIN_SECRET:
                _known.add(piece)


def known() -> tuple[str, ...]:
    """Every remembered value, longest first (so a value is masked before its pieces)."""
    return tuple(sorted(_known, key=len, reverse=True))


def scrub(message: str, extra: tuple[str, ...] = ()) -> str:
    """``message`` without passwords in URLs, remembered values or ``extra`` secrets."""
    out = _URL_PASSWORD.sub(rf"\1{MASK}@", message)
    secrets = known() if not extra else tuple(sorted({*_known, *(e for e in extra if e)},
                                                     key=len, reverse=True))
    for secret in secrets:
        if secret in out:
            out = out.replace(secret, MASK)
    return out


def forget_all() -> None:
    """Tests only: start from an empty scrubber."""
    _known.clear()
