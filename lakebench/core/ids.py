"""ULID event ids: fresh ones, and deterministic ones for importers (re-imports give the same ids)."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

from ulid import ULID

# 26 Crockford base32 characters (no I, L, O, U), the first at most 7: 128 bits.
_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")


def new_event_id(at: datetime | None = None) -> str:
    return str(ULID.from_datetime(at) if at is not None else ULID())


def stable_event_id(ts: datetime, *parts: str) -> str:
    """A ULID whose time is ``ts`` and whose 80 random bits are a hash of ``parts``."""
    millis = max(0, int(ts.timestamp() * 1000))
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8", "surrogatepass"), digest_size=10).digest()
    return str(ULID.from_bytes(millis.to_bytes(6, "big") + digest))


def normalise_ulid(value: str) -> str | None:
    """The canonical (upper-case) form of a ULID string, or None when it is not one."""
    text = value.strip().upper()
    return text if _ULID.fullmatch(text) else None
