"""``lake-sql``: SQL over the Iceberg table's Parquet files with DuckDB — the R2 SQL analogue.

The table is exposed as the view ``events`` over ``iceberg_scan`` of the current metadata, so
Iceberg manifest statistics prune files and Parquet row-group statistics prune row groups.
Every user-supplied value is a bound parameter.
"""

from __future__ import annotations

import threading

from lakebench.core.models import FIELDS, Event
from lakebench.engines.base import QueryStats
from lakebench.engines.duck import connect, sql_literal
from lakebench.lake.catalog import Lake
from lakebench.lake.schema import row_to_event

# ts as epoch microseconds: exact, and no pytz round trip through Python datetimes.
_COLUMNS = ", ".join("epoch_us(ts) AS ts" if f == "ts" else f for f in FIELDS)
_LOOKUP = (
    f"SELECT {_COLUMNS} FROM events WHERE entity_ns = ? AND entity_id = ? "  # noqa: S608 - constant columns
    "ORDER BY ts DESC, version DESC, event_id DESC LIMIT 1"
)


class LakeSqlEngine:
    name = "lake-sql"

    def __init__(self, lake: Lake) -> None:
        self._lake = lake
        self._con = connect(lake.settings)
        self._lock = threading.Lock()
        self._metadata_location: str | None = None
        self._stats = QueryStats()
        self.refresh()

    @property
    def last_stats(self) -> QueryStats:
        return self._stats

    @property
    def has_data(self) -> bool:
        return self._metadata_location is not None

    def refresh(self) -> None:
        table = self._lake.table()
        location = table.metadata_location if table.current_snapshot() is not None else None
        with self._lock:
            if location == self._metadata_location:
                return
            if location is None:
                self._con.execute("DROP VIEW IF EXISTS events")
            else:
                # The metadata location comes from the catalog, never from a user; it is quoted as a literal.
                view = f"CREATE OR REPLACE VIEW events AS SELECT * FROM iceberg_scan({sql_literal(location)})"  # noqa: S608
                self._con.execute(view)
            self._metadata_location = location

    def lookup(self, ns: str, entity_id: str) -> Event | None:
        if self._metadata_location is None:
            self._stats = QueryStats(rows=0)
            return None
        with self._lock:
            row = self._con.execute(_LOOKUP, [ns, entity_id]).fetchone()
        self._stats = QueryStats(rows=0 if row is None else 1)
        return None if row is None else row_to_event(row)

    def close(self) -> None:
        self._con.close()
