# ruff: noqa: S608 - SQL text here is built only from constants, the engine's own database name and
# the catalog's file list; every user value travels as a bound {name:Type} parameter.
"""``clickhouse``: ClickHouse in-process (chDB) — the seed's Option 3, ClickHouse for hot data.

Events of the last ``hot_days`` (counted back from the newest event in the table) live in a
MergeTree ordered by ``(entity_ns, entity_id, ts)`` with a text index for search; older events are
read from the lake's Parquet files (the Iceberg snapshot's file list) through ClickHouse's
``file``/``s3`` table functions. ``events`` is the union of both. Every user value is a query
parameter (``{name:Type}``), bound by the server.
"""

from __future__ import annotations

import atexit
import contextlib
import re
import shutil
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import orjson
from sqlglot import exp
from ulid import ULID

from lakebench.core.models import FIELDS, Event
from lakebench.core.text import query_terms
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
from lakebench.engines.lake_sql import micros
from lakebench.lake.catalog import Lake
from lakebench.lake.schema import row_to_event

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
COLUMNS = ", ".join(FIELDS)
SELECT_EVENT = ", ".join("toUnixTimestamp64Micro(ts) AS ts" if f == "ts" else f for f in FIELDS)
SELECT_REF = "entity_ns, entity_id, event_id, toUnixTimestamp64Micro(ts) AS ts, version, type, title"
TABLE_SCHEMA = (
    "event_id String, entity_ns LowCardinality(String), entity_id String, ts DateTime64(6, 'UTC'), "
    "type LowCardinality(String), title Nullable(String), body Nullable(String), version Int64, "
    "attributes Nullable(String)"
)
SCHEMA_LITERAL = "'" + TABLE_SCHEMA.replace("'", "\\'") + "'"  # the schema as a string argument
LATEST = "ORDER BY ts DESC, version DESC, event_id DESC LIMIT 1 BY entity_ns, entity_id"
TEXT = "lowerUTF8(concat(coalesce(title, ''), ' ', coalesce(body, '')))"


class _SharedSession:
    """chDB allows one session per process: engines share it, each in a database of its own.
    The session's folder is removed when the last engine closes (or the process exits)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.query_lock = threading.RLock()  # one query at a time in the session, whichever engine asks
        self._session: Any = None
        self._folder: str | None = None
        self._users = 0
        atexit.register(self._close)

    def acquire(self) -> Any:
        with self._lock:
            if self._session is None:
                from chdb import session as chs

                self._folder = tempfile.mkdtemp(prefix="lakebench-chdb-")
                self._session = chs.Session(self._folder)  # type: ignore[no-untyped-call]
            self._users += 1
            return self._session

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users <= 0:
                self._close_locked()

    def _close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        self._users = 0


_SESSION = _SharedSession()


def param_value(value: Any) -> Any:
    """A query-parameter value as ClickHouse reads it: strings in its escaped text form, in which
    a backslash starts an escape (so ``C:\\temp`` must be sent as ``C:\\\\temp``)."""
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    return value


_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


def ch_literal(value: str) -> str:
    """A ClickHouse string literal for a trusted value (a path from the catalog, a setting)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ch_type(value: Any) -> str:
    if isinstance(value, bool):
        return "Bool"
    if isinstance(value, int):
        return "Int64" if value < 2**63 else "UInt64"  # the sandbox refused what neither holds
    if isinstance(value, float):
        return "Float64"
    if value is None:
        return "Nullable(String)"
    if isinstance(value, str):
        return "String"
    raise QueryError(f"parameter of type {type(value).__name__} is not supported (use str, int, float, bool, None)")


class ClickHouseEngine:
    name = "clickhouse"

    def __init__(self, lake: Lake, hot_days: float = 30.0, sql_limits: SqlLimits = SqlLimits()) -> None:
        self._lake = lake
        self._hot = timedelta(days=hot_days)
        self._sql_limits = sql_limits
        self._session = _SESSION.acquire()
        self._db = f"lb_{str(ULID()).lower()}"
        self._lock = _SESSION.query_lock
        self._loaded: set[str] = set()  # files whose hot rows are in the MergeTree
        self._scanned: set[str] = set()  # files whose newest ts is folded into _newest_us
        self._oldest_us: dict[str, int] = {}  # file -> its oldest event's ts
        self._newest_us: int | None = None
        self._cutoff_us: int | None = None
        self._snapshot_id: int | None = -1
        self._stats = QueryStats()
        try:
            self._q(f"CREATE DATABASE {self._db}")
            self._q(
                f"CREATE TABLE {self._db}.hot ({TABLE_SCHEMA}, text_lc String MATERIALIZED {TEXT}, "
                "INDEX text_idx text_lc TYPE text(tokenizer = 'splitByNonAlpha') GRANULARITY 1) "
                "ENGINE = MergeTree ORDER BY (entity_ns, entity_id, ts) SETTINGS index_granularity = 1024"
            )
            self._create_views([])
            self.refresh()
        except BaseException:
            self.close()
            raise

    @property
    def last_stats(self) -> QueryStats:
        return self._stats

    # -- plumbing -------------------------------------------------------------------------------

    def _run(self, query: str, params: dict[str, Any]) -> bytes:
        """One query's JSONCompact output. chDB keeps a failed query's partial output and hands it
        out in front of the next query's, so after a failure one throwaway query drains it."""
        with self._lock:
            try:
                data: bytes = self._session.query(
                    query, "JSONCompact", params={k: param_value(v) for k, v in params.items()}
                ).bytes()
            except Exception:
                with contextlib.suppress(Exception):
                    self._session.query("SELECT 1", "JSONCompact")
                raise
        return data

    def _q(self, query: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
        data = self._run(query, params or {})
        if not data:
            return []
        rows: list[list[Any]] = orjson.loads(data)["data"]
        return rows

    def _file_source(self, urls: list[str], columns: str = COLUMNS) -> str:
        """A subquery reading exactly these Parquet files (the live snapshot's), local or on S3.

        The glob covers the data folder; the ``_path`` filter picks the snapshot's files, and
        ClickHouse opens only those (uncommitted or compacted-away files are never read).
        """
        if not urls:
            return f"null({SCHEMA_LITERAL})"
        if urls[0].startswith("file://"):
            root = self._lake.store.root_url.removeprefix("file://")
            paths = [u.removeprefix("file://") for u in urls]
            source = f"file({ch_literal(f'{root}/{self._lake.data_prefix}/**/*.parquet')}, Parquet, {SCHEMA_LITERAL})"
        else:
            s3 = self._lake.settings.s3
            endpoint = (s3.endpoint or f"https://s3.{s3.region}.amazonaws.com").rstrip("/")
            root_url = urlsplit(self._lake.store.root_url)
            glob = f"{endpoint}/{root_url.netloc}{root_url.path}/{self._lake.data_prefix}/**/*.parquet"
            creds = "NOSIGN, "
            if s3.access_key_id and s3.secret_access_key:
                creds = f"{ch_literal(s3.access_key_id)}, {ch_literal(s3.secret_access_key)}, "
            paths = [u.removeprefix("s3://") for u in urls]
            source = f"s3({ch_literal(glob)}, {creds}'Parquet', {SCHEMA_LITERAL})"
        listed = "[" + ", ".join(ch_literal(p) for p in paths) + "]"
        return f"(SELECT {columns} FROM {source} WHERE _path IN {listed})"

    def _create_views(self, urls: list[str]) -> None:
        cutoff = self._cutoff_us if self._cutoff_us is not None else -(2**62)
        # Only files holding an event older than the window: a cold part the window covers is not scanned.
        source = self._file_source([u for u in urls if self._oldest_us.get(u, cutoff - 1) < cutoff])
        self._q(
            f"CREATE OR REPLACE VIEW {self._db}.cold AS SELECT {COLUMNS} FROM {source} "
            f"WHERE toUnixTimestamp64Micro(ts) < {int(cutoff)}"
        )
        self._q(
            f"CREATE OR REPLACE VIEW {self._db}.events AS SELECT {COLUMNS} FROM {self._db}.hot "
            f"UNION ALL SELECT {COLUMNS} FROM {self._db}.cold"
        )

    # -- keeping up with the table --------------------------------------------------------------

    def refresh(self) -> None:
        snapshot_id, files = self._lake.snapshot_files()
        with self._lock:
            if snapshot_id == self._snapshot_id:
                return
            urls = sorted(files)
            unseen = [u for u in urls if u not in self._scanned]  # files are immutable: read each one's ts once
            if unseen:
                spans = self._q(
                    "SELECT _path, min(toUnixTimestamp64Micro(ts)), max(toUnixTimestamp64Micro(ts)) "
                    f"FROM {self._file_source(unseen, f'_path, {COLUMNS}')} GROUP BY _path"
                )
                by_path = {u.removeprefix("file://").removeprefix("s3://"): u for u in unseen}
                for path, oldest, newest in spans:
                    if path in by_path and oldest is not None:
                        self._oldest_us[by_path[path]] = int(oldest)
                        self._newest_us = max(self._newest_us or int(newest), int(newest))
                self._scanned |= set(unseen)
            newest_us = self._newest_us if urls else None
            cutoff = None if newest_us is None else newest_us - int(self._hot / timedelta(microseconds=1))
            if cutoff != self._cutoff_us or not self._loaded <= set(urls):  # window moved or files compacted
                self._q(f"TRUNCATE TABLE {self._db}.hot")
                self._loaded = set()
                self._cutoff_us = cutoff
            new = [u for u in urls if u not in self._loaded]
            if new and cutoff is not None:
                self._q(
                    f"INSERT INTO {self._db}.hot ({COLUMNS}) SELECT {COLUMNS} FROM {self._file_source(new)} "
                    f"WHERE toUnixTimestamp64Micro(ts) >= {int(cutoff)}"
                )
            self._loaded |= set(new)
            self._create_views(urls)
            self._snapshot_id = snapshot_id

    def hot_rows(self) -> int:
        return int(self._q(f"SELECT count() FROM {self._db}.hot")[0][0])

    # -- queries --------------------------------------------------------------------------------

    def _rows(self, query: str, params: dict[str, Any]) -> list[list[Any]]:
        with self._lock:
            rows = self._q(query, params)
        self._stats = QueryStats(rows=len(rows))
        return rows

    @staticmethod
    def _event(row: list[Any]) -> Event:
        values = dict(zip(FIELDS, row, strict=True))
        values["ts"] = int(values["ts"])
        return row_to_event(values)

    @staticmethod
    def _ref(row: list[Any]) -> EntityRef:
        ns, eid, event_id, ts, version, kind, title = row
        return EntityRef(ns, eid, event_id, EPOCH + timedelta(microseconds=int(ts)), int(version), kind, title)

    def lookup(self, ns: str, entity_id: str) -> Event | None:
        key = {"ns": ns, "id": entity_id}
        where = "WHERE entity_ns = {ns:String} AND entity_id = {id:String}"
        order = "ORDER BY ts DESC, version DESC, event_id DESC LIMIT 1"
        for part in ("hot", "cold"):  # a hot version is always newer than any cold one
            rows = self._rows(f"SELECT {SELECT_EVENT} FROM {self._db}.{part} {where} {order}", key)
            if rows:
                return self._event(rows[0])
        return None

    def history(self, ns: str, entity_id: str) -> list[Event]:
        query = (
            f"SELECT {SELECT_EVENT} FROM {self._db}.events WHERE entity_ns = {{ns:String}} "
            "AND entity_id = {id:String} ORDER BY ts, version, event_id"
        )
        return [self._event(r) for r in self._rows(query, {"ns": ns, "id": entity_id})]

    def list_namespace(self, ns: str, cursor: str | None = None, limit: int = 100) -> Page:
        check_limit(limit)
        query = (
            f"SELECT {SELECT_REF} FROM (SELECT * FROM {self._db}.events WHERE entity_ns = {{ns:String}} "
            f"AND entity_id > {{after:String}} {LATEST}) WHERE type != 'delete' ORDER BY entity_id LIMIT {{n:UInt32}}"
        )
        rows = self._rows(query, {"ns": ns, "after": decode_cursor(cursor) or "", "n": limit + 1})
        items = [self._ref(r) for r in rows[:limit]]
        return Page(items, encode_cursor(items[-1].entity_id) if len(rows) > limit and items else None)

    def recent(self, limit: int = 20, ns: str | None = None) -> list[EntityRef]:
        check_limit(limit)
        where = "WHERE entity_ns = {ns:String}" if ns is not None else ""
        query = f"SELECT {SELECT_REF} FROM {self._db}.events {where} ORDER BY ts DESC, event_id DESC LIMIT {{n:UInt32}}"
        return [self._ref(r) for r in self._rows(query, {"ns": ns or "", "n": limit})]

    def count_by(
        self, field: CountField, since: datetime | None = None, until: datetime | None = None
    ) -> list[tuple[str, int]]:
        expr = {"entity_ns": "toString(entity_ns)", "type": "toString(type)", "day": "formatDateTime(ts, '%F')"}[
            check_count_field(field)
        ]
        conditions, params = [], {}
        if since is not None:
            conditions.append("toUnixTimestamp64Micro(ts) >= {since:Int64}")
            params["since"] = micros(since)
        if until is not None:
            conditions.append("toUnixTimestamp64Micro(ts) < {until:Int64}")
            params["until"] = micros(until)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        query = f"SELECT {expr} AS value, count() FROM {self._db}.events {where} GROUP BY value ORDER BY value"
        return [(str(v), int(c)) for v, c in self._rows(query, params)]

    def search(self, query: str, limit: int = 10, ns: str | None = None) -> list[SearchHit]:
        check_limit(limit)
        terms = query_terms(query)
        if not terms:
            return []
        params: dict[str, Any] = {f"t{i}": t for i, t in enumerate(terms)}
        params["n"] = limit
        matches = " AND ".join(f"hasToken(text_lc, {{t{i}:String}})" for i in range(len(terms)))
        cold_matches = " AND ".join(f"hasToken({TEXT}, {{t{i}:String}})" for i in range(len(terms)))
        score = " + ".join(f"countSubstrings(text_lc, {{t{i}:String}})" for i in range(len(terms)))
        ns_filter = ""
        if ns is not None:
            params["ns"] = ns
            ns_filter = "AND entity_ns = {ns:String}"
        # Candidates: keys with any matching version (the text index answers for the hot part), then
        # only their latest versions are checked, since a newer version may no longer match.
        candidates = (
            f"SELECT entity_ns, entity_id FROM {self._db}.hot WHERE {matches} {ns_filter} "
            f"UNION ALL SELECT entity_ns, entity_id FROM {self._db}.cold WHERE {cold_matches} {ns_filter}"
        )
        sql = (
            f"SELECT entity_ns, entity_id, event_id, title, toFloat64({score}) AS score FROM ("
            f"SELECT entity_ns, entity_id, event_id, title, type, {TEXT} AS text_lc FROM {self._db}.events "
            f"WHERE (entity_ns, entity_id) IN ({candidates}) {LATEST}) WHERE type != 'delete' AND {matches} "
            "ORDER BY score DESC, entity_ns, entity_id LIMIT {n:UInt32}"
        )
        return [SearchHit(r[0], r[1], r[2], r[3], float(r[4])) for r in self._rows(sql, params)]

    def sql(self, query: str, params: list[Any] | None = None) -> SqlResult:
        """One read-only SELECT over ``events``, checked by the sandbox and rendered from its parse
        tree; ``?`` parameters become bound ClickHouse parameters; the limits are settings appended
        after the rendered query, which no comment or clause of the user's can reach."""
        limits = self._sql_limits
        checked = sandbox.check(query, sandbox.CLICKHOUSE, limits)
        values = list(params or [])
        sandbox.count_parameters(checked, values)

        def bind(i: int, _: exp.Placeholder) -> exp.Expr:
            sandbox.literal(values[i])  # the same value rules for every engine
            kind = exp.DataType.build(_ch_type(values[i]), dialect="clickhouse")
            return exp.Placeholder(this=exp.var(f"p{i}"), kind=kind)

        table = exp.table_(TABLE_NAME, db=self._db)
        text = checked.render(sandbox.CLICKHOUSE, table=table, bind=bind)
        text += (
            f" SETTINGS readonly = 2, max_execution_time = {limits.timeout_s:g}, timeout_overflow_mode = 'throw', "
            f"max_memory_usage = {limits.memory_bytes}, max_threads = {limits.threads}, "
            f"max_result_rows = {limits.max_rows + 1}, max_result_bytes = {limits.memory_bytes // 4}, "
            "result_overflow_mode = 'break', "
            "session_timezone = 'UTC', output_format_json_quote_64bit_integers = 0"
        )
        try:
            data = self._run(text, {f"p{i}": v for i, v in enumerate(values)})
            document = orjson.loads(data or b'{"meta": [], "data": []}')
            types = [m["type"] for m in document["meta"]]
            rows = [tuple(_python(v, t) for v, t in zip(r, types, strict=True)) for r in document["data"]]
        except Exception as exc:
            raise QueryError(f"query failed: {_ch_message(str(exc))}") from None
        # 'break' stops at the row or the byte limit, whichever comes first: either way, more existed.
        truncated = len(rows) > limits.max_rows or len(data) >= limits.memory_bytes // 4
        self._stats = QueryStats(rows=min(len(rows), limits.max_rows))
        return SqlResult([m["name"] for m in document["meta"]], rows[: limits.max_rows], truncated=truncated)

    def close(self) -> None:
        with self._lock:
            if self._session is None:
                return
            try:
                self._q(f"DROP DATABASE IF EXISTS {self._db}")
            finally:
                self._session = None
                _SESSION.release()


TABLE_NAME = "events"


def _ch_message(text: str) -> str:
    """ClickHouse's error without its stack trace, and a limit said in plain words."""
    first = text.strip().splitlines()[0] if text.strip() else text
    if "TIMEOUT_EXCEEDED" in text or "Timeout exceeded" in text:
        return "the query ran past its time limit and was stopped"
    if "MEMORY_LIMIT_EXCEEDED" in text or "Memory limit" in text:
        return "the query needed more than its memory limit and was stopped"
    return first[:500]


_DATETIME = re.compile(r"^(?:Nullable\(|LowCardinality\()*DateTime(?:64)?(?:\(|$)")


def _python(value: Any, kind: str) -> Any:
    """A JSONCompact value as the contract returns it: DateTime64 as an aware UTC datetime."""
    if isinstance(value, str) and _DATETIME.match(kind):
        zone = re.search(r"'([^']+)'", kind)  # DateTime64(6, 'Asia/Tokyo') prints local time there
        at = datetime.fromisoformat(value).replace(tzinfo=ZoneInfo(zone.group(1)) if zone else UTC)
        return at.astimezone(UTC)
    return value
