"""``lake-sql``: SQL over the Iceberg table's Parquet files with DuckDB — the R2 SQL analogue.

The table is the view ``events`` over ``iceberg_scan`` of the current metadata, so Iceberg
manifest statistics prune files and Parquet row-group statistics prune row groups. Every
user-supplied value is a bound parameter; ``sql()`` runs one SELECT on a sandboxed connection
that can read nothing but the lake.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlglot import exp

from lakebench.core.models import FIELDS, Event
from lakebench.core.text import query_terms, term_regex
from lakebench.engines import sandbox
from lakebench.engines.base import (
    CountField,
    EntityRef,
    Page,
    QueryError,
    QueryStats,
    SearchHit,
    SqlLimits,
    SqlResult,
    check_count_field,
    check_limit,
    decode_cursor,
    encode_cursor,
)
from lakebench.engines.duck import connect, sql_literal
from lakebench.engines.sqlworker import SqlWorker
from lakebench.lake.catalog import Lake
from lakebench.lake.schema import row_to_event

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# ts as epoch microseconds: exact, and no pytz round trip through Python datetimes.
_COLUMNS = ", ".join("epoch_us(ts) AS ts" if f == "ts" else f for f in FIELDS)
_REF = "entity_ns, entity_id, event_id, epoch_us(ts) AS ts, version, type, title"
_LATEST = "row_number() OVER (PARTITION BY entity_ns, entity_id ORDER BY ts DESC, version DESC, event_id DESC) = 1"
_LOOKUP = f"SELECT {_COLUMNS} FROM events WHERE entity_ns = ? AND entity_id = ? ORDER BY ts DESC, version DESC, event_id DESC LIMIT 1"  # noqa: S608, E501
_HISTORY = f"SELECT {_COLUMNS} FROM events WHERE entity_ns = ? AND entity_id = ? ORDER BY ts, version, event_id"  # noqa: S608
_LIST = (
    f"SELECT * FROM (SELECT {_REF} FROM events WHERE entity_ns = ? AND entity_id > ? QUALIFY {_LATEST}) "  # noqa: S608
    "WHERE type <> 'delete' ORDER BY entity_id LIMIT ?"
)
_COUNT_EXPR = {
    "entity_ns": "entity_ns",
    "type": "type",
    "day": "strftime(make_timestamp(epoch_us(ts)), '%Y-%m-%d')",
}


def micros(at: datetime) -> int:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - EPOCH) // timedelta(microseconds=1)


def ref_from_row(row: tuple[Any, ...]) -> EntityRef:
    ns, eid, event_id, ts, version, kind, title = row
    return EntityRef(ns, eid, event_id, EPOCH + timedelta(microseconds=ts), int(version), kind, title)


class LakeSqlEngine:
    name = "lake-sql"

    def __init__(self, lake: Lake, sql_limits: SqlLimits = SqlLimits()) -> None:
        self._lake = lake
        # Its own queries, and users' through the worker, read the table's folder only: not the rest
        # of the lake (dead letters, the catalog file, staging).
        self._con = connect(lake.settings, allowed=lake.read_location)
        self._lock = threading.Lock()
        self._metadata_location: str | None = None
        self._stats = QueryStats()
        self._user_sql = UserSql(lake, sql_limits)
        self.refresh()

    @property
    def last_stats(self) -> QueryStats:
        return self._stats

    def refresh(self) -> None:
        table = self._lake.table(create=False)
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

    def _rows(self, query: str, params: list[Any]) -> list[tuple[Any, ...]]:
        if self._metadata_location is None:
            self._stats = QueryStats(rows=0)
            return []
        with self._lock:
            rows = self._con.execute(query, params).fetchall()
        self._stats = QueryStats(rows=len(rows))
        return rows

    def lookup(self, ns: str, entity_id: str) -> Event | None:
        rows = self._rows(_LOOKUP, [ns, entity_id])
        return row_to_event(rows[0]) if rows else None

    def history(self, ns: str, entity_id: str) -> list[Event]:
        return [row_to_event(r) for r in self._rows(_HISTORY, [ns, entity_id])]

    def list_namespace(self, ns: str, cursor: str | None = None, limit: int = 100) -> Page:
        check_limit(limit)
        after = decode_cursor(cursor) or ""
        rows = self._rows(_LIST, [ns, after, limit + 1])
        items = [ref_from_row(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(items, encode_cursor(items[-1].entity_id) if more and items else None)

    def recent(self, limit: int = 20, ns: str | None = None) -> list[EntityRef]:
        check_limit(limit)
        where, params = ("WHERE entity_ns = ?", [ns]) if ns is not None else ("", [])
        query = f"SELECT {_REF} FROM events {where} ORDER BY ts DESC, event_id DESC LIMIT ?"  # noqa: S608
        return [ref_from_row(r) for r in self._rows(query, [*params, limit])]

    def count_by(
        self, field: CountField, since: datetime | None = None, until: datetime | None = None
    ) -> list[tuple[str, int]]:
        expr = _COUNT_EXPR[check_count_field(field)]
        conditions, params = [], []
        if since is not None:
            conditions.append("epoch_us(ts) >= ?")
            params.append(micros(since))
        if until is not None:
            conditions.append("epoch_us(ts) < ?")
            params.append(micros(until))
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        query = f"SELECT {expr} AS value, count(*) FROM events {where} GROUP BY value ORDER BY value"  # noqa: S608
        return [(str(v), int(c)) for v, c in self._rows(query, params)]

    def search(self, query: str, limit: int = 10, ns: str | None = None) -> list[SearchHit]:
        """A scan: the latest version of every entity, each query token matched as a whole token."""
        check_limit(limit)
        terms = query_terms(query)
        if not terms:
            return []
        patterns = [term_regex(t) for t in terms]
        where, params = ("WHERE entity_ns = ?", [ns]) if ns is not None else ("", [])
        matches = " AND ".join("regexp_matches(text, ?)" for _ in patterns)
        score = " + ".join("len(regexp_extract_all(text, ?))" for _ in patterns)
        sql = (
            "SELECT entity_ns, entity_id, event_id, title, CAST(" + score + " AS DOUBLE) AS score FROM ("  # noqa: S608
            "SELECT entity_ns, entity_id, event_id, title, type, "
            "lower(coalesce(title, '') || ' ' || coalesce(body, '')) AS text "
            f"FROM events {where} QUALIFY {_LATEST}) "
            f"WHERE type <> 'delete' AND {matches} ORDER BY score DESC, entity_ns, entity_id LIMIT ?"
        )
        rows = self._rows(sql, [*patterns, *params, *patterns, limit])
        return [SearchHit(r[0], r[1], r[2], r[3], float(r[4])) for r in rows]

    def sql(self, query: str, params: list[Any] | None = None) -> SqlResult:
        """One read-only SELECT over ``events`` (checked by the sandbox); parameters bound; rows,
        time and memory limited by a DuckDB instance of its own."""
        result = self._user_sql.run(query, params or [], self._metadata_location)
        self._stats = QueryStats(rows=len(result.rows))
        return result

    def close(self) -> None:
        self._user_sql.close()
        self._con.close()


class UserSql:
    """Users' SQL: checked and rendered by the sandbox, run by a worker process of its own (its
    memory bounded by the operating system, its time by a watchdog), never on the engine's connection."""

    def __init__(self, lake: Lake, limits: SqlLimits) -> None:
        self.limits = limits
        self._worker = SqlWorker(lake.settings, limits, allowed=lake.read_location)

    def run(self, query: str, params: list[Any], location: str | None) -> SqlResult:
        checked = sandbox.check(query, sandbox.DUCKDB, self.limits)
        sandbox.count_parameters(checked, params)
        for value in params:
            sandbox.literal(value)  # the same value rules for every engine
        text = checked.render(sandbox.DUCKDB, bind=lambda i, _: exp.Parameter(this=exp.Literal.number(i + 1)))
        if location is None:
            raise QueryError("the lake holds no events yet")
        return self._worker.run(location, text, params)

    def close(self) -> None:
        self._worker.close()
