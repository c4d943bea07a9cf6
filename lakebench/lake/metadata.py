"""The current snapshot of the events table, read the light way: for readers that must answer fast.

pyiceberg's catalog and FileIO modules import SQLAlchemy, pyarrow.dataset and pandas (about
300 ms before a first answer), and loading a table reads more than a point read needs. A reader
that wants only the current snapshot's id, parent, summary and location asks the catalog for the
metadata file's location (the Iceberg JDBC catalog's ``iceberg_tables`` row, which pyiceberg's SQL
catalog writes: one query to SQLite or PostgreSQL), then reads that file with one GET through the
lake's object store. A REST catalog, or a metadata file outside the lake, goes through pyiceberg.
The fields read (``current-snapshot-id``, ``snapshots``, ``location``) are the Iceberg table spec's.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from lakebench.lake.catalog import Lake

NAMESPACE = "lakebench"  # as lakebench.lake.schema names them (without importing pyiceberg)
TABLE = "events"


@dataclass(frozen=True, slots=True)
class SnapshotView:
    metadata_location: str
    location: str  # the table's folder URL
    snapshot_id: int | None
    parent_id: int | None
    summary: dict[str, str] = field(default_factory=dict)


def metadata_location(lake: Lake) -> str | None:
    """The table's current metadata file, from a SQL catalog; None when the catalog is not SQL."""
    url = lake.settings.catalog_url
    query = (
        "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = {p} AND table_namespace = {p} "
        "AND table_name = {p}"
    )
    params = (lake.settings.catalog_name, NAMESPACE, TABLE)
    if url.startswith("sqlite:///"):
        import sqlite3

        path = url.removeprefix("sqlite:///")
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
                row = connection.execute(query.format(p="?"), params).fetchone()
        except sqlite3.Error:
            raise lake.no_table(f"no catalog at {path}") from None
    elif url.startswith("postgresql"):
        import psycopg

        try:
            plain = re.sub(r"^postgresql\+[a-z0-9_]+://", "postgresql://", url)  # SQLAlchemy's +driver
            with psycopg.connect(plain, connect_timeout=10) as connection:
                row = connection.execute(query.format(p="%s"), params).fetchone()
        except psycopg.errors.UndefinedTable:
            row = None
    else:
        return None
    if row is None or not row[0]:
        raise lake.no_table(f"catalog {lake.catalog_label}")
    return str(row[0])


def current_snapshot(lake: Lake) -> SnapshotView:
    location = metadata_location(lake)
    key = lake.key_of(location) if location is not None else None
    if location is None or key is None or "://" in key:
        return _through_pyiceberg(lake)
    data = lake.store.get(key)
    if location.endswith(".gz.metadata.json") or data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    metadata = orjson.loads(data)
    current = metadata.get("current-snapshot-id")
    if current is None or current == -1:
        return SnapshotView(location, metadata["location"], None, None)
    snapshot = next(s for s in metadata.get("snapshots", []) if s["snapshot-id"] == current)
    summary = {str(k): str(v) for k, v in snapshot.get("summary", {}).items()}
    return SnapshotView(location, metadata["location"], int(current), snapshot.get("parent-snapshot-id"), summary)


def _through_pyiceberg(lake: Lake) -> SnapshotView:
    return view_of(lake.table(create=False))


def view_of(table: Table) -> SnapshotView:
    """A pyiceberg table's current snapshot, as the light path reads it."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return SnapshotView(table.metadata_location, table.location(), None, None)
    summary: dict[str, Any] = {}
    if snapshot.summary is not None:
        summary = {**snapshot.summary.additional_properties, "operation": str(snapshot.summary.operation)}
        for name in ("total-data-files", "total-records"):
            summary[name] = snapshot.summary.get(name) or 0
    return SnapshotView(
        table.metadata_location,
        table.location(),
        int(snapshot.snapshot_id),
        snapshot.parent_snapshot_id,
        {str(k): str(v) for k, v in summary.items()},
    )
