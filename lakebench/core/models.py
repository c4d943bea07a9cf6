"""The event: one change to one entity, keyed by (entity_ns, entity_id)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, NamedTuple

import orjson

EventType = Literal["create", "update", "delete"]
EVENT_TYPES: Final[tuple[EventType, ...]] = ("create", "update", "delete")
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND: Final = timedelta(microseconds=1)

# Column order of the lake table; the Iceberg schema in lake/schema.py follows it.
FIELDS: Final[tuple[str, ...]] = (
    "event_id",
    "entity_ns",
    "entity_id",
    "ts",
    "type",
    "title",
    "body",
    "version",
    "attributes",
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits an event must respect; the body limit is configurable per run."""

    max_body_bytes: int = 8 * 1024 * 1024
    max_entity_id_bytes: int = 1024
    max_title_bytes: int = 64 * 1024
    max_attributes_bytes: int = 256 * 1024
    max_attributes_depth: int = 32  # levels of nested objects and arrays under ``attributes``


@dataclass(frozen=True, slots=True)
class Event:
    """A validated event. Build one through ``lakebench.core.validate.parse_event``."""

    event_id: str
    entity_ns: str
    entity_id: str
    ts: datetime  # timezone-aware, UTC
    type: EventType
    title: str | None = None
    body: str | None = None
    version: int = 1
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.entity_ns, self.entity_id)

    def size_bytes(self) -> int:
        """Payload size: the UTF-8 bytes of the text fields plus fixed-width fields."""
        n = len(self.event_id) + len(self.entity_ns.encode()) + len(self.entity_id.encode()) + 24
        if self.title:
            n += len(self.title.encode())
        if self.body:
            n += len(self.body.encode())
        return n

    def approx_size(self) -> int:
        """A cheap size estimate (characters, not bytes) for batching decisions."""
        return 56 + len(self.entity_id) + len(self.title or "") + len(self.body or "")

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "entity_ns": self.entity_ns,
            "entity_id": self.entity_id,
            "ts": self.ts.isoformat().replace("+00:00", "Z"),
            "type": self.type,
            "title": self.title,
            "body": self.body,
            "version": self.version,
            "attributes": self.attributes,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict(), ensure_ascii=False, separators=(",", ":"))

    def row(self) -> EventRow:
        return EventRow(
            self.event_id,
            self.entity_ns,
            self.entity_id,
            (self.ts - EPOCH) // MICROSECOND,
            self.type,
            self.title,
            self.body,
            self.version,
            orjson.dumps(self.attributes).decode() if self.attributes else None,
        )


class EventRow(NamedTuple):
    """An event as the lake stores it, in FIELDS order: ``ts`` in epoch microseconds, ``attributes``
    as JSON text (None when empty). What the ingest path carries from the request to the Parquet
    columns: no datetime, no dict per event."""

    event_id: str
    entity_ns: str
    entity_id: str
    ts: int
    type: str
    title: str | None
    body: str | None
    version: int
    attributes: str | None

    def approx_size(self) -> int:
        """A cheap size estimate (characters, not bytes) for batching decisions, as ``Event.approx_size``."""
        return 56 + len(self.entity_id) + len(self.title or "") + len(self.body or "")
