"""Result rows to events: what every engine's answers go through (no pyiceberg, so readers open fast)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa

from lakebench.core.models import FIELDS, Event

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def row_to_event(row: Sequence[Any] | dict[str, Any]) -> Event:
    """An Event from a result row in FIELDS order (tuple) or a mapping of column names."""
    values = row if isinstance(row, dict) else dict(zip(FIELDS, row, strict=True))
    ts = values["ts"]
    if isinstance(ts, int):  # epoch microseconds
        ts = _EPOCH + timedelta(microseconds=ts)
    elif isinstance(ts, datetime):
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    attributes = values["attributes"]
    return Event(
        event_id=values["event_id"],
        entity_ns=values["entity_ns"],
        entity_id=values["entity_id"],
        ts=ts,
        type=values["type"],
        title=values["title"],
        body=values["body"],
        version=int(values["version"]),
        attributes=orjson.loads(attributes) if attributes else {},
    )


def arrow_to_events(table: pa.Table) -> list[Event]:
    return [row_to_event(r) for r in table.select(list(FIELDS)).to_pylist()]
