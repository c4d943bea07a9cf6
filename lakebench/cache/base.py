"""The cache contract: what is stored, how long it is good for, and the small interface a backend offers.

An entry is one answer (the bytes of an HTTP body) with when it was stored, its ETag, whether the
lake had the key at all, and the key's *generation* when the answer was read. A commit that
touches a key bumps its generation (a soft purge): an entry of an older generation is no longer
served as fresh, and an answer read before the bump cannot be stored after it (the race Varnish
had to fix: a revalidation that started before a purge must not put back the old version).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """The seed's defaults: ``Cache-Control: public, max-age=3600, stale-while-revalidate=86400``."""

    max_age_s: float = 3600.0  # fresh for this long
    stale_while_revalidate_s: float = 86400.0  # then served at once while one revalidation runs
    stale_if_error_s: float = 86400.0  # past max-age, served when the engine fails
    negative_ttl_s: float = 5.0  # "not found" is remembered this long (and never served stale)

    @property
    def hard_limit_s(self) -> float:
        """No entry older than this is ever served."""
        return self.max_age_s + max(self.stale_while_revalidate_s, self.stale_if_error_s)

    def cache_control(self) -> str:
        return (
            f"public, max-age={int(self.max_age_s)}, stale-while-revalidate={int(self.stale_while_revalidate_s)}, "
            f"stale-if-error={int(self.stale_if_error_s)}"
        )


@dataclass(frozen=True, slots=True)
class Entry:
    body: bytes  # the answer as served
    stored_at: float  # wall-clock seconds (shared between processes through Redis)
    generation: int  # the key's generation when the answer was read
    found: bool = True  # False: the lake has no such key (a negative entry)

    @property
    def etag(self) -> str:
        return '"' + hashlib.blake2b(self.body, digest_size=12).hexdigest() + '"'

    @property
    def size(self) -> int:
        return len(self.body) + 64


@runtime_checkable
class CacheBackend(Protocol):
    """Where entries and generations live: in this process, or in Redis shared by many."""

    name: str
    blocking: bool  # whether a call may wait on the network (then it is made off the event loop)

    def get(self, key: str) -> tuple[Entry | None, int, int]:
        """The entry (or None), the key's current generation, and the purge sequence (how many
        purges the backend has seen, across every process that shares it), read together."""
        ...

    def put(self, key: str, entry: Entry, ttl_s: float) -> bool:
        """Store ``entry`` unless the key's generation moved past ``entry.generation``; whether stored."""
        ...

    def purge(self, keys: list[str]) -> None:
        """Soft purge: bump each key's generation (its entries stay, as stale copies) and the purge
        sequence, which tells every reader that the lake moved on."""
        ...

    def bytes_held(self) -> int: ...

    def healthy(self) -> tuple[bool, str]:
        """Whether the backend answers, and a word on its state."""
        ...

    def close(self) -> None: ...
