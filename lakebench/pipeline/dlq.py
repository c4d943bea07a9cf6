"""The dead-letter store: rejected records, kept with their reasons, in the lake's object store.

Rejections are not silently dropped (the complaint about Cloudflare Pipelines): each request's
rejects go to ``dlq/<date>/<ULID>.ndjson``. ``lakebench dlq list`` reads them; ``lakebench dlq
replay`` validates them again (after a fix or a raised limit) and writes the ones that now pass.

The store is bounded, because a client can send rejects faster than anyone reads them: a request
keeps at most ``2 x its body + 16 KiB`` of dead letters, the store at most ``max_total_bytes``;
what does not fit is dropped and counted (in the answer and the pipeline's stats), never written.
"""

from __future__ import annotations

import reprlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from ulid import ULID

from lakebench.core.validate import Rejection
from lakebench.storage import ObjectStore

PREFIX: Final = "dlq/"
MAX_RAW_TEXT: Final = 4096
REQUEST_ALLOWANCE: Final = 16 * 1024  # bytes of dead letters any request may keep, beyond 2 x its size
RECOUNT_AFTER_S: Final = 30.0  # the store's total is re-listed at most this often
_SUMMARY = reprlib.Repr()
_SUMMARY.maxlevel, _SUMMARY.maxstring, _SUMMARY.maxother, _SUMMARY.maxdict, _SUMMARY.maxlist = 4, 200, 200, 20, 20


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_at: str
    source: str
    position: int
    unit: str
    problems: list[dict[str, str]]
    record: Any  # the parsed JSON value, when the record was JSON and can be written back as JSON
    raw_text: str | None  # the raw text (truncated), or a summary of a record JSON cannot hold
    request: str | None = None  # a digest of the request it came in: the same on a client's retry

    def to_json(self) -> bytes:
        """One NDJSON line. Never fails: a record JSON cannot hold is kept as a summary."""
        document = {
            "received_at": self.received_at,
            "source": self.source,
            "position": self.position,
            "unit": self.unit,
            "problems": self.problems,
            "record": self.record,
            "raw_text": self.raw_text,
            "request": self.request,
        }
        try:
            return orjson.dumps(document)
        except (TypeError, orjson.JSONEncodeError):  # nested past orjson's limit, an integer past 64 bits
            document["record"] = None
            document["raw_text"] = "(not stored as JSON) " + _SUMMARY.repr(self.record)
            return orjson.dumps(document)

    @classmethod
    def from_json(cls, line: bytes) -> DeadLetter:
        d = orjson.loads(line)
        return cls(
            d["received_at"],
            d["source"],
            d["position"],
            d["unit"],
            d["problems"],
            d["record"],
            d["raw_text"],
            d.get("request"),
        )

    @property
    def identity(self) -> tuple[str, ...]:
        """What makes this letter unique: its request (by digest, the same on a client's retry; else
        when and from where it came) and its place in it."""
        origin = (self.request,) if self.request else (self.received_at, self.source)
        return (*origin, self.unit, str(self.position))


def letter(
    rejection: Rejection, source: str, record: Any = None, raw_text: str | None = None, request: str | None = None
) -> DeadLetter:
    if raw_text is not None and len(raw_text) > MAX_RAW_TEXT:
        raw_text = raw_text[:MAX_RAW_TEXT] + "…(truncated)"
    return DeadLetter(
        received_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        source=source,
        position=rejection.position,
        unit=rejection.unit,
        problems=[{"field": p.field, "message": p.message[:500]} for p in rejection.problems[:20]],
        record=record,
        raw_text=raw_text,
        request=request,
    )


@dataclass(frozen=True, slots=True)
class Stored:
    key: str | None
    stored: int
    dropped: int


class DeadLetters:
    def __init__(self, store: ObjectStore, max_total_bytes: int = 1 << 30) -> None:
        self.store = store
        self.max_total_bytes = max_total_bytes
        self._lock = threading.Lock()
        self._total: int | None = None  # bytes in the store, as last listed plus what this process added
        self._counted_at = 0.0

    def _room(self) -> int:
        """Bytes the store can still take. Re-lists when the cap seems reached (replays free room)."""
        now = time.monotonic()
        if self._total is None or (self._total >= self.max_total_bytes and now - self._counted_at > RECOUNT_AFTER_S):
            self._total = sum(o.size for o in self.store.list(PREFIX))
            self._counted_at = now
        return max(0, self.max_total_bytes - self._total)

    def prepare(self, letters: list[DeadLetter], request_bytes: int) -> tuple[bytes, int, int]:
        """(file content, letters kept, letters dropped) within this request's and the store's bounds."""
        budget = 2 * request_bytes + REQUEST_ALLOWANCE
        with self._lock:
            budget = min(budget, self._room())
        lines: list[bytes] = []
        size = 0
        for entry in letters:
            line = entry.to_json() + b"\n"
            if size + len(line) > budget:
                break
            lines.append(line)
            size += len(line)
        return b"".join(lines), len(lines), len(letters) - len(lines)

    def put_prepared(self, content: bytes, name: str | None = None) -> str | None:
        """Write one request's dead letters; ``name`` (the request's digest) makes a retry rewrite them."""
        if not content:
            return None
        key = f"{PREFIX}{datetime.now(UTC):%Y-%m-%d}/{name or ULID()}.ndjson"
        self.store.put_bytes(key, content)
        with self._lock:
            self._total = (self._total or 0) + len(content)
        return key

    def put(self, letters: list[DeadLetter], request_bytes: int | None = None) -> Stored:
        """Keep what fits of ``letters``; request_bytes None: the caller's own (trusted) batch, no per-request cap."""
        if request_bytes is None:
            request_bytes = self.max_total_bytes
        content, kept, dropped = self.prepare(letters, request_bytes)
        return Stored(self.put_prepared(content), kept, dropped)

    def files(self) -> list[str]:
        return sorted(o.key for o in self.store.list(PREFIX) if o.key.endswith(".ndjson"))

    def read(self, key: str) -> list[DeadLetter]:
        return [DeadLetter.from_json(line) for line in self.store.get(key).splitlines() if line.strip()]

    def entries(self) -> Iterator[tuple[str, DeadLetter]]:
        for key in self.files():
            for entry in self.read(key):
                yield key, entry

    def replace(self, key: str, remaining: list[DeadLetter]) -> None:
        """Keep only ``remaining`` of a file (the rest were replayed)."""
        if remaining:
            self.store.put_bytes(key, b"".join(entry.to_json() + b"\n" for entry in remaining))
        else:
            self.store.delete(key)
