"""``r2sql``: a client of Cloudflare's R2 SQL HTTP API, for users with an account.

    POST {endpoint}/api/v1/accounts/{account}/r2-sql/query/{bucket}
    Authorization: Bearer <token>      {"query": "SELECT ..."}
    -> {"success": true, "errors": [], "result": {"schema": [...], "rows": [{...}], "metrics": {...}}}

R2 SQL has no bound parameters, so values are inlined as SQL string literals (single quotes
doubled, NUL refused) — the one place lakebench writes values into SQL text, forced by the API.
R2 SQL's dialect is small (no window functions; limited ORDER BY), so queries fetch the key's or
namespace's rows with a WHERE filter that R2 SQL prunes on, and the contract's ordering and
"latest version" rules are applied here.

Configure with LAKEBENCH_R2SQL_ACCOUNT, LAKEBENCH_R2SQL_BUCKET and LAKEBENCH_R2SQL_TOKEN
(LAKEBENCH_R2SQL_ENDPOINT defaults to https://api.sql.cloudflarestorage.com; the table to
LAKEBENCH_R2SQL_TABLE, default ``lakebench.events``).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lakebench.core.errors import ConfigError, TransientError
from lakebench.core.models import Event
from lakebench.core.text import document_text, query_terms, tokens
from lakebench.core.validate import parse_timestamp
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
from lakebench.lake.catalog import Lake
from lakebench.lake.schema import row_to_event

DEFAULT_ENDPOINT = "https://api.sql.cloudflarestorage.com"
Post = Callable[[str, dict[str, str], bytes, float], tuple[int, bytes]]
_REF = "entity_ns, entity_id, event_id, ts, version, type, title"


@dataclass(frozen=True, slots=True)
class R2SqlConfig:
    account: str
    bucket: str
    token: str
    endpoint: str = DEFAULT_ENDPOINT
    table: str = "lakebench.events"

    @classmethod
    def from_env(cls) -> R2SqlConfig:
        missing = [
            v
            for v in ("LAKEBENCH_R2SQL_ACCOUNT", "LAKEBENCH_R2SQL_BUCKET", "LAKEBENCH_R2SQL_TOKEN")
            if not os.environ.get(v)
        ]
        if missing:
            raise ConfigError(f"the r2sql engine needs {', '.join(missing)} (an R2 SQL account, bucket and API token)")
        return cls(
            account=os.environ["LAKEBENCH_R2SQL_ACCOUNT"],
            bucket=os.environ["LAKEBENCH_R2SQL_BUCKET"],
            token=os.environ["LAKEBENCH_R2SQL_TOKEN"],
            endpoint=os.environ.get("LAKEBENCH_R2SQL_ENDPOINT") or DEFAULT_ENDPOINT,
            table=os.environ.get("LAKEBENCH_R2SQL_TABLE") or "lakebench.events",
        )

    @property
    def url(self) -> str:
        return f"{self.endpoint.rstrip('/')}/api/v1/accounts/{self.account}/r2-sql/query/{self.bucket}"


def literal(value: Any) -> str:
    """A SQL literal for R2 SQL, which cannot bind parameters (rendered by the sandbox's printer)."""
    return sandbox.literal(value).sql(dialect=sandbox.R2SQL.sqlglot)


MAX_ANSWER_BYTES = 1 << 30  # an answer larger than this is refused, not held in memory


def _urllib_post(url: str, headers: dict[str, str], body: bytes, timeout: float = 60.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = bytes(response.read(MAX_ANSWER_BYTES + 1))
            if len(data) > MAX_ANSWER_BYTES:
                raise QueryError(f"R2 SQL's answer is over {MAX_ANSWER_BYTES:,} bytes; ask for fewer rows or columns")
            return int(response.status), data
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())
    except TimeoutError:
        raise QueryError(f"R2 SQL did not answer within {timeout:g} s; the query was abandoned") from None
    except OSError as exc:
        raise TransientError(f"R2 SQL at {url} is unreachable: {exc}") from exc


def _impossible(*values: str) -> bool:
    """Values no stored event can have (validation refuses NUL), which R2 SQL literals cannot carry."""
    return any("\x00" in v for v in values)


def _ts(value: Any) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1e6, tz=UTC)
    parsed = parse_timestamp(value)
    if isinstance(parsed, str):
        raise QueryError(f"R2 SQL returned a timestamp lakebench cannot read: {value!r}")
    return parsed


def _sql_value(value: Any, kind: str) -> Any:
    """Timestamps (ISO-8601 text in R2 SQL's JSON) as aware UTC datetimes, as every engine returns them."""
    if isinstance(value, str) and kind.upper().startswith("TIMESTAMP"):
        return _ts(value)
    return value


def _order(row: dict[str, Any]) -> tuple[datetime, int, str]:
    return (row["ts"], int(row["version"]), row["event_id"])


class R2SqlEngine:
    name = "r2sql"

    def __init__(
        self,
        lake: Lake | None = None,
        config: R2SqlConfig | None = None,
        post: Post | None = None,
        sql_limits: SqlLimits = SqlLimits(),
    ) -> None:
        self._config = config or R2SqlConfig.from_env()
        self._post = post or _urllib_post
        self._stats = QueryStats()
        self._sql_limits = sql_limits

    @property
    def last_stats(self) -> QueryStats:
        return self._stats

    def refresh(self) -> None:
        """R2 SQL reads the catalog's current snapshot on every query."""

    def _query(self, sql: str, timeout: float = 60.0) -> tuple[list[str], list[dict[str, Any]], list[str]]:
        headers = {"Authorization": f"Bearer {self._config.token}", "Content-Type": "application/json"}
        status, body = self._post(self._config.url, headers, json.dumps({"query": sql}).encode(), timeout)
        try:
            document = json.loads(body) if body else {}
        except json.JSONDecodeError:
            document = {}
        errors = "; ".join(str(e.get("message", e)) for e in document.get("errors") or [])
        if status in (401, 403):
            raise ConfigError(f"R2 SQL refused the token (HTTP {status}): {errors or 'check LAKEBENCH_R2SQL_TOKEN'}")
        if status >= 500 or status == 429:
            raise TransientError(f"R2 SQL answered HTTP {status}: {errors}")
        if status != 200 or not document.get("success"):
            raise QueryError(f"R2 SQL rejected the query (HTTP {status}): {errors or body[:300]!r}")
        result = document["result"]
        metrics = result.get("metrics") or {}
        rows = list(result.get("rows") or [])
        self._stats = QueryStats(
            rows=len(rows),
            bytes_read=metrics.get("bytes_scanned"),
            requests={"R2": int(metrics.get("r2_requests_count", 0))},
            files_scanned=metrics.get("files_scanned"),
        )
        schema = result.get("schema") or []
        return [c["name"] for c in schema], rows, [str(c.get("type", "")) for c in schema]

    def _rows(self, columns: str, where: str) -> list[dict[str, Any]]:
        _, rows, _ = self._query(f"SELECT {columns} FROM {self._config.table} WHERE {where}")  # noqa: S608
        for row in rows:
            row["ts"] = _ts(row["ts"])
        return rows

    def _key_rows(self, ns: str, entity_id: str) -> list[dict[str, Any]]:
        if _impossible(ns, entity_id):
            return []
        return self._rows("*", f"entity_ns = {literal(ns)} AND entity_id = {literal(entity_id)}")

    @staticmethod
    def _event(row: dict[str, Any]) -> Event:
        return row_to_event(row)

    @staticmethod
    def _ref(row: dict[str, Any]) -> EntityRef:
        return EntityRef(
            row["entity_ns"],
            row["entity_id"],
            row["event_id"],
            row["ts"],
            int(row["version"]),
            row["type"],
            row["title"],
        )

    def lookup(self, ns: str, entity_id: str) -> Event | None:
        rows = self._key_rows(ns, entity_id)
        return self._event(max(rows, key=_order)) if rows else None

    def history(self, ns: str, entity_id: str) -> list[Event]:
        return [self._event(r) for r in sorted(self._key_rows(ns, entity_id), key=_order)]

    def _latest(self, rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for row in rows:
            key = (row["entity_ns"], row["entity_id"])
            if key not in latest or _order(row) > _order(latest[key]):
                latest[key] = row
        return latest

    def list_namespace(self, ns: str, cursor: str | None = None, limit: int = 100) -> Page:
        check_limit(limit)
        after = decode_cursor(cursor) or ""
        if _impossible(ns, after):
            return Page([], None)
        rows = self._rows(_REF, f"entity_ns = {literal(ns)} AND entity_id > {literal(after)}")
        live = sorted(
            (r for r in self._latest(rows).values() if r["type"] != "delete"), key=lambda r: r["entity_id"].encode()
        )
        items = [self._ref(r) for r in live[:limit]]
        return Page(items, encode_cursor(items[-1].entity_id) if len(live) > limit else None)

    def recent(self, limit: int = 20, ns: str | None = None) -> list[EntityRef]:
        check_limit(limit)
        if ns is not None and _impossible(ns):
            return []
        rows = self._rows(_REF, f"entity_ns = {literal(ns)}" if ns is not None else "1 = 1")
        rows.sort(key=lambda r: (r["ts"], r["event_id"]), reverse=True)
        return [self._ref(r) for r in rows[:limit]]

    def count_by(
        self, field: CountField, since: datetime | None = None, until: datetime | None = None
    ) -> list[tuple[str, int]]:
        check_count_field(field)
        conditions = ["1 = 1"]
        if since is not None:
            conditions.append(f"ts >= {literal(since)}")
        if until is not None:
            conditions.append(f"ts < {literal(until)}")
        rows = self._rows("entity_ns, type, ts", " AND ".join(conditions))
        counts = Counter(r["ts"].strftime("%Y-%m-%d") if field == "day" else r[field] for r in rows)
        return sorted(counts.items(), key=lambda kv: kv[0].encode())

    def search(self, query: str, limit: int = 10, ns: str | None = None) -> list[SearchHit]:
        check_limit(limit)
        terms = query_terms(query)
        if not terms or (ns is not None and _impossible(ns)):
            return []
        rows = self._rows(
            "entity_ns, entity_id, event_id, ts, version, type, title, body",
            f"entity_ns = {literal(ns)}" if ns is not None else "1 = 1",
        )
        hits = []
        for row in self._latest(rows).values():
            if row["type"] == "delete":
                continue
            words = tokens(document_text(row["title"], row["body"]))
            present = set(words)
            if all(t in present for t in terms):
                score = float(sum(words.count(t) for t in terms))
                hits.append(SearchHit(row["entity_ns"], row["entity_id"], row["event_id"], row["title"], score))
        hits.sort(key=lambda h: (-h.score, h.entity_ns, h.entity_id))
        return hits[:limit]

    def sql(self, query: str, params: list[Any] | None = None) -> SqlResult:
        """The sandbox's rules, then the values inlined as literals rendered by the same printer."""
        limits = self._sql_limits
        checked = sandbox.check(query, sandbox.R2SQL, limits)
        values = list(params or [])
        sandbox.count_parameters(checked, values)
        text = checked.render(
            sandbox.R2SQL,
            table=sandbox.parse_table(self._config.table, sandbox.R2SQL),
            bind=lambda i, _: sandbox.literal(values[i]),
            limit=limits.max_rows + 1,  # R2 SQL sends no more rows than the answer keeps
        )
        columns, rows, types = self._query(text, timeout=limits.timeout_s)
        table = [
            tuple(_sql_value(r.get(c), t) for c, t in zip(columns, types or [""] * len(columns), strict=True))
            for r in rows
        ]
        return SqlResult(columns, table[: limits.max_rows], truncated=len(table) > limits.max_rows)

    def close(self) -> None:
        pass
