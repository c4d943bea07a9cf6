"""The dead-letter store: every rejected record, kept with its reasons, in the lake's object store.

Rejections are never silently dropped (the complaint about Cloudflare Pipelines): each request's
rejects go to ``dlq/<date>/<ULID>.ndjson``. ``lakebench dlq list`` reads them; ``lakebench dlq
replay`` validates them again (after a fix or a raised limit) and writes the ones that now pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from ulid import ULID

from lakebench.core.validate import Rejection
from lakebench.storage import ObjectStore

PREFIX = "dlq/"
MAX_RAW_TEXT = 64 * 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received_at: str
    source: str
    position: int
    unit: str
    problems: list[dict[str, str]]
    record: Any  # the parsed JSON value, when the record was JSON
    raw_text: str | None  # the raw line (truncated), when it was not

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "received_at": self.received_at,
                "source": self.source,
                "position": self.position,
                "unit": self.unit,
                "problems": self.problems,
                "record": self.record,
                "raw_text": self.raw_text,
            }
        )

    @classmethod
    def from_json(cls, line: bytes) -> DeadLetter:
        d = orjson.loads(line)
        return cls(d["received_at"], d["source"], d["position"], d["unit"], d["problems"], d["record"], d["raw_text"])


def letter(rejection: Rejection, source: str, record: Any = None, raw_text: str | None = None) -> DeadLetter:
    if raw_text is not None and len(raw_text) > MAX_RAW_TEXT:
        raw_text = raw_text[:MAX_RAW_TEXT] + "…(truncated)"
    return DeadLetter(
        received_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        source=source,
        position=rejection.position,
        unit=rejection.unit,
        problems=[{"field": p.field, "message": p.message} for p in rejection.problems],
        record=record,
        raw_text=raw_text,
    )


class DeadLetters:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def put(self, letters: list[DeadLetter]) -> str | None:
        if not letters:
            return None
        key = f"{PREFIX}{datetime.now(UTC):%Y-%m-%d}/{ULID()}.ndjson"
        self.store.put_bytes(key, b"".join(letter.to_json() + b"\n" for letter in letters))
        return key

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
