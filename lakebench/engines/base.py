"""The engine contract: the workload's questions in, answers out, each with what it cost.

Every engine answers with the same semantics (the conformance suite holds them to it):
- ``lookup``: the latest event of an entity by (ts, version, event_id); a deleted entity returns
  its delete event; an unknown key returns None.
- ``history``: every event of an entity, oldest first.
- ``list_namespace``: live entities (latest event not a delete) of a namespace in entity_id byte
  order, ``limit`` per page, resumed with the opaque cursor of the previous page.
- ``recent``: the newest events (ts, then event_id, descending), optionally of one namespace.
- ``count_by``: events per ``entity_ns``, ``type`` or ``day`` (UTC date), in ``[since, until)``.
- ``search``: live entities whose latest version's title + body contains every query token
  (tokens: runs of characters other than ASCII punctuation, space and control characters,
  lower-cased), ranked by the engine's relevance; at most ``limit``.
- ``sql``: one read-only SELECT over the table ``events`` with ``?`` parameters bound.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol, runtime_checkable

from lakebench.core.errors import TerminalError
from lakebench.core.models import Event

CountField = Literal["entity_ns", "type", "day"]
COUNT_FIELDS: Final[tuple[str, ...]] = ("entity_ns", "type", "day")
MAX_LIMIT: Final = 10_000


class QueryError(TerminalError):
    """A query that is refused (a write, a bad parameter) or failed to run."""


@dataclass(slots=True)
class QueryStats:
    """What the last query cost: rows returned; bytes and object-store requests where the engine knows."""

    rows: int = 0
    bytes_read: int | None = None
    requests: dict[str, int] = field(default_factory=dict)
    files_scanned: int | None = None


@dataclass(frozen=True, slots=True)
class EntityRef:
    """An event without its body: what listings and recent-events answers carry."""

    entity_ns: str
    entity_id: str
    event_id: str
    ts: datetime
    version: int
    type: str
    title: str | None


@dataclass(frozen=True, slots=True)
class Page:
    items: list[EntityRef]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class SearchHit:
    entity_ns: str
    entity_id: str
    event_id: str
    title: str | None
    score: float


@dataclass(frozen=True, slots=True)
class SqlResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class SqlLimits:
    """What one user query may use. Engines enforce them where the query text cannot change them."""

    max_rows: int = 10_000
    timeout_s: float = 30.0
    memory_bytes: int = 1 << 30
    max_chars: int = 100_000
    threads: int = 2


def python_value(value: Any) -> Any:
    """A result value as the contract returns it: timestamps as timezone-aware UTC datetimes."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


@runtime_checkable
class Engine(Protocol):
    name: str

    def lookup(self, ns: str, entity_id: str) -> Event | None: ...

    def history(self, ns: str, entity_id: str) -> list[Event]: ...

    def list_namespace(self, ns: str, cursor: str | None = None, limit: int = 100) -> Page: ...

    def recent(self, limit: int = 20, ns: str | None = None) -> list[EntityRef]: ...

    def count_by(
        self, field: CountField, since: datetime | None = None, until: datetime | None = None
    ) -> list[tuple[str, int]]: ...

    def search(self, query: str, limit: int = 10, ns: str | None = None) -> list[SearchHit]: ...

    def sql(self, query: str, params: list[Any] | None = None) -> SqlResult: ...

    def refresh(self) -> None:
        """See commits made since the engine was opened."""
        ...

    @property
    def last_stats(self) -> QueryStats: ...

    def close(self) -> None: ...


def encode_cursor(entity_id: str) -> str:
    return base64.urlsafe_b64encode(entity_id.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None or cursor == "":
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True).decode("utf-8")
    except (ValueError, UnicodeError):
        raise QueryError(f"cursor {cursor[:40]!r} is not one this engine handed out") from None


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"limit must be an integer from 1 to {MAX_LIMIT:,}, got {limit!r}")
    return limit


def check_count_field(field: str) -> str:
    if field not in COUNT_FIELDS:
        raise QueryError(f"count_by field must be one of {', '.join(COUNT_FIELDS)}, got {field!r}")
    return field
