"""The events table: its Iceberg schema, its Arrow twin (with field ids), and row conversions."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.schema import Schema
from pyiceberg.table.sorting import SortField, SortOrder
from pyiceberg.transforms import IdentityTransform
from pyiceberg.types import LongType, NestedField, StringType, TimestamptzType

from lakebench.core.models import FIELDS, Event, EventRow
from lakebench.lake.rows import arrow_to_events, row_to_event

__all__ = ["ARROW_SCHEMA", "SCHEMA", "SORT_ORDER", "arrow_to_events", "events_to_arrow", "row_to_event"]

NAMESPACE = "lakebench"
TABLE = "events"
IDENTIFIER = f"{NAMESPACE}.{TABLE}"
KEY_COLUMNS = ("entity_ns", "entity_id", "ts")

SCHEMA = Schema(
    NestedField(1, "event_id", StringType(), required=True),
    NestedField(2, "entity_ns", StringType(), required=True),
    NestedField(3, "entity_id", StringType(), required=True),
    NestedField(4, "ts", TimestamptzType(), required=True),
    NestedField(5, "type", StringType(), required=True),
    NestedField(6, "title", StringType(), required=False),
    NestedField(7, "body", StringType(), required=False),
    NestedField(8, "version", LongType(), required=True),
    NestedField(9, "attributes", StringType(), required=False, doc="free-form JSON object, as text"),
)
SORT_ORDER = SortOrder(*(SortField(source_id=i, transform=IdentityTransform()) for i in (2, 3, 4)))

# Parquet field ids let every Iceberg reader (DuckDB, Spark, pyiceberg) resolve columns by id.
ARROW_SCHEMA = pa.schema(
    [
        pa.field(f.name, t, nullable=not f.required, metadata={b"PARQUET:field_id": str(f.field_id).encode()})
        for f, t in zip(
            SCHEMA.fields,
            [
                pa.large_string(),
                pa.large_string(),
                pa.large_string(),
                pa.timestamp("us", tz="UTC"),
                pa.large_string(),
                pa.large_string(),
                pa.large_string(),
                pa.int64(),
                pa.large_string(),
            ],
            strict=True,
        )
    ]
)
assert tuple(ARROW_SCHEMA.names) == FIELDS


def events_to_arrow(events: Sequence[Event]) -> pa.Table:
    """Columnar copy of the events, in the table's schema (unsorted)."""
    return rows_to_arrow([e.row() for e in events])


_COLUMN_TYPES = [pa.int64() if name in ("ts", "version") else pa.large_string() for name in FIELDS]


def rows_to_arrow(rows: Sequence[EventRow]) -> pa.Table:
    """Columnar copy of the rows, in the table's schema (unsorted): one pass per column over values
    that already exist (timestamps are integers, attributes text), no object made per field."""
    values = zip(*rows, strict=True) if rows else ([] for _ in _COLUMN_TYPES)
    columns = [pa.array(column, kind) for column, kind in zip(values, _COLUMN_TYPES, strict=True)]
    columns[3] = columns[3].cast(ARROW_SCHEMA.field("ts").type)
    return pa.Table.from_arrays(columns, schema=ARROW_SCHEMA)


def text_bytes(table: pa.Table) -> int:
    """Event payload bytes: UTF-8 text of the id, key and text columns plus 16 fixed bytes (ts, version)."""
    total = 16 * table.num_rows
    for name in ("event_id", "entity_ns", "entity_id", "title", "body"):
        total += pc.sum(pc.binary_length(table[name])).as_py() or 0
    return int(total)


def sort_indices(table: pa.Table) -> pa.Array:
    """Row order by (entity_ns, entity_id, ts, event_id): a key's versions together, oldest first."""
    return pc.sort_indices(table, sort_keys=[(c, "ascending") for c in (*KEY_COLUMNS, "event_id")])


def sort_for_lookup(table: pa.Table) -> pa.Table:
    return table if table.num_rows <= 1 else table.take(sort_indices(table))
