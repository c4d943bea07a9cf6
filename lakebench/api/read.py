"""The read API: entities (cached, stale-while-revalidate), history, listings, recent events,
search, counts and read-only SQL, over the engine the service was started with.

Entity ids may hold anything, ``/`` and ``%`` included: send them percent-encoded
(``/v1/entities/en.wikipedia.org/cpp%2Fcontainer%2Fvector``). The path is read as the client sent
it, so an encoded ``/`` stays part of the id; an unencoded one is taken as part of it too, except
a last segment ``history``, which asks for the entity's history.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Final, Literal
from urllib.parse import unquote

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from lakebench.api.auth import require_token
from lakebench.api.metrics import Metrics
from lakebench.api.problems import RequestProblem, json_response, problem_responses
from lakebench.cache import Answer, CachePolicy, SwrCache
from lakebench.core.models import Event
from lakebench.engines.base import Engine, EntityRef, QueryError, SearchHit

MAX_PAGE: Final = 1_000  # rows an HTTP answer lists at most
MAX_QUERY_CHARS: Final = 512  # a search query
MAX_ID_BYTES: Final = 4 * 1024  # a percent-decoded entity id (the lake holds 1 KiB; longer ones cannot exist)
PREFIX: Final = "/v1/entities/"
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"at most {MAX_PAGE:,}")]
Namespace = Annotated[str | None, Query(max_length=253)]
Cursor = Annotated[str | None, Query(max_length=4096)]
SearchQuery = Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS)]


class EventOut(BaseModel):
    event_id: str
    entity_ns: str
    entity_id: str
    ts: str = Field(description="ISO-8601, UTC")
    type: Literal["create", "update", "delete"]
    title: str | None
    body: str | None
    version: int
    attributes: dict[str, Any]


class History(BaseModel):
    entity_ns: str
    entity_id: str
    events: list[EventOut]


class Ref(BaseModel):
    entity_ns: str
    entity_id: str
    event_id: str
    ts: str
    version: int
    type: str
    title: str | None


class Listing(BaseModel):
    items: list[Ref]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


class RecentAnswer(BaseModel):
    items: list[Ref]


class Hit(BaseModel):
    entity_ns: str
    entity_id: str
    event_id: str
    title: str | None
    score: float


class SearchAnswer(BaseModel):
    query: str
    hits: list[Hit]


class CountRow(BaseModel):
    value: str
    count: int


class CountAnswer(BaseModel):
    by: str
    counts: list[CountRow]


class SqlIn(BaseModel):
    query: str = Field(max_length=100_000, description="one SELECT over the table events; ? marks a parameter")
    params: list[str | int | float | bool | None] = Field(default_factory=list, max_length=1_000)


class SqlAnswer(BaseModel):
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool


def _ts(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _ref(r: EntityRef) -> dict[str, Any]:
    return {
        "entity_ns": r.entity_ns,
        "entity_id": r.entity_id,
        "event_id": r.event_id,
        "ts": _ts(r.ts),
        "version": r.version,
        "type": r.type,
        "title": r.title,
    }


def _hit(h: SearchHit) -> dict[str, Any]:
    return {
        "entity_ns": h.entity_ns,
        "entity_id": h.entity_id,
        "event_id": h.event_id,
        "title": h.title,
        "score": h.score,
    }


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return _ts(value)
    if isinstance(value, bytes):
        return value.hex()
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    return str(value)


def entity_path(request: Request) -> tuple[str, str, bool]:
    """(namespace, entity id, history?) from the path as the client sent it (percent-encoding intact)."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    segments = path[len(PREFIX) :].split("/")
    if len(segments) < 2 or not segments[0] or not segments[1]:
        raise RequestProblem(404, "not-found", "Not Found", "use /v1/entities/{namespace}/{entity id}")
    history = len(segments) > 2 and segments[-1] == "history"
    parts = segments[1:-1] if history else segments[1:]
    try:
        ns = unquote(segments[0], errors="strict")
        entity_id = "/".join(unquote(p, errors="strict") for p in parts)
    except UnicodeDecodeError:
        raise RequestProblem(400, "bad-request", "Bad Request", "the entity id is not UTF-8 once decoded") from None
    if len(entity_id.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise RequestProblem(414, "uri-too-long", "URI Too Long", f"entity ids are at most {MAX_ID_BYTES:,} bytes")
    return ns, entity_id, history


class ReadService:
    """The engine and the cache in front of it, as the routes use them."""

    def __init__(self, engine: Engine, cache: SwrCache | None, metrics: Metrics, policy: CachePolicy) -> None:
        self.engine = engine
        self.cache = cache
        self.metrics = metrics
        self.policy = policy
        self._engine_lock = threading.Lock()  # engines answer one query at a time

    def timed(self, query: str, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            with self._engine_lock:
                return call()
        finally:
            self.metrics.engine_seconds.labels(self.engine.name, query).observe(time.perf_counter() - started)

    def refresh(self) -> None:
        with self._engine_lock:
            self.engine.refresh()

    def lookup_body(self, ns: str, entity_id: str) -> tuple[bytes, bool]:
        event: Event | None = self.timed("lookup", lambda: self.engine.lookup(ns, entity_id))
        return (orjson.dumps(event.to_json_dict()), True) if event is not None else (b"null", False)

    def history_body(self, ns: str, entity_id: str) -> tuple[bytes, bool]:
        events: list[Event] = self.timed("history", lambda: self.engine.history(ns, entity_id))
        document = {"entity_ns": ns, "entity_id": entity_id, "events": [e.to_json_dict() for e in events]}
        return orjson.dumps(document), bool(events)

    def cached(self, key: str, load: Callable[[], tuple[bytes, bool]]) -> Answer:
        if self.cache is None:
            body, found = load()
            return Answer(body, found, "bypass", 0.0, "")
        return self.cache.get(key, load)

    async def answer(self, key: str, load: Callable[[], tuple[bytes, bool]]) -> Answer:
        """A hit of an in-process cache is answered on the event loop; anything that may wait (an
        engine read, Redis) runs on a worker thread."""
        if self.cache is not None:
            if not self.cache.backend.blocking:
                served = self.cache.peek(key, load)
            elif hasattr(self.cache.backend, "aget"):
                served = await self.cache.apeek(key, load)
            else:
                served = None
            if served is not None:
                return served
        return await run_in_threadpool(self.cached, key, load)


def cache_key(kind: str, ns: str, entity_id: str) -> str:
    return f"{kind}\x1f{ns}\x1f{entity_id}"


def read_router(service: ReadService, read_token: str | None, sql_token: str | None) -> APIRouter:
    reads = APIRouter(dependencies=[Depends(require_token(read_token))], tags=["read"])
    sql = APIRouter(dependencies=[Depends(require_token(sql_token))], tags=["read"])
    errors = problem_responses(400, 401, 404, 500, 503)
    policy = service.policy

    def respond(request: Request, answer: Answer, what: str) -> Response:
        if not answer.found:
            detail = f"no {what}" if what != "entity" else "no such entity in the lake"
            return json_response(
                RequestProblem(404, "not-found", "Not Found", detail).document(request.url.path),
                404,
                "application/problem+json",
                **{"Cache-Control": f"public, max-age={int(policy.negative_ttl_s)}", "X-Cache": answer.state},
            )
        headers = {
            "Cache-Control": policy.cache_control(),
            "Age": str(int(answer.age_s)),
            "X-Cache": answer.state,
        }
        if answer.etag:
            headers["ETag"] = answer.etag
            if answer.etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
                return Response(status_code=304, headers=headers)
        return Response(answer.body, media_type="application/json", headers=headers)

    async def entity_or_history(request: Request) -> Response:
        ns, entity_id, history = entity_path(request)
        if history:
            answer = await service.answer(
                cache_key("history", ns, entity_id), lambda: service.history_body(ns, entity_id)
            )
            return respond(request, answer, "history")
        answer = await service.answer(cache_key("entity", ns, entity_id), lambda: service.lookup_body(ns, entity_id))
        return respond(request, answer, "entity")

    cache_headers = {
        "Cache-Control": {"schema": {"type": "string"}},
        "Age": {"schema": {"type": "string"}},
        "ETag": {"schema": {"type": "string"}},
        "X-Cache": {
            "schema": {"type": "string"},
            "description": "fresh, stale, miss, negative, stale-if-error, bypass",
        },
    }

    @reads.get(
        "/v1/entities/{ns}/{entity_id}/history",
        response_model=History,
        responses={**errors, 304: {"description": "unchanged (If-None-Match)"}, 414: errors[400]},
        openapi_extra={"responses": {"200": {"headers": cache_headers}}},
    )
    async def history(ns: str, entity_id: str, request: Request) -> Response:
        """Every version of one entity, oldest first (cached like lookups)."""
        return await entity_or_history(request)

    @reads.get(
        "/v1/entities/{ns}/{entity_id}",
        response_model=EventOut,
        responses={**errors, 304: {"description": "unchanged (If-None-Match)"}, 414: errors[400]},
        openapi_extra={"responses": {"200": {"headers": cache_headers}}},
    )
    async def entity(ns: str, entity_id: str, request: Request) -> Response:
        """The latest version of an entity (a deleted one answers its delete event). Percent-encode
        ``/`` in ids. Served from the cache: fresh, or stale while one revalidation runs."""
        return await entity_or_history(request)

    # ``{entity_id}`` above documents the route; this one also takes unencoded slashes.
    reads.add_api_route("/v1/entities/{ns}/{rest:path}", entity_or_history, include_in_schema=False)

    @reads.get("/v1/namespaces/{ns}/entities", response_model=Listing, responses=errors)
    async def listing(ns: str, cursor: Cursor = None, limit: Limit = 100) -> Response:
        """Live entities of a namespace in id order, a page at a time."""
        page = await run_in_threadpool(service.timed, "list", lambda: service.engine.list_namespace(ns, cursor, limit))
        return json_response({"items": [_ref(r) for r in page.items], "next_cursor": page.next_cursor})

    @reads.get("/v1/recent", response_model=RecentAnswer, responses=errors)
    async def recent(limit: Limit = 20, ns: Namespace = None) -> Response:
        """The newest events, optionally of one namespace."""
        refs = await run_in_threadpool(service.timed, "recent", lambda: service.engine.recent(limit, ns))
        return json_response({"items": [_ref(r) for r in refs]})

    @reads.get("/v1/search", response_model=SearchAnswer, responses=errors)
    async def search(q: SearchQuery, limit: Limit = 10, ns: Namespace = None) -> Response:
        """Live entities whose latest title and body hold every word of ``q``, best first."""
        hits = await run_in_threadpool(service.timed, "search", lambda: service.engine.search(q, limit, ns))
        return json_response({"query": q, "hits": [_hit(h) for h in hits]})

    @reads.get("/v1/count", response_model=CountAnswer, responses=errors)
    async def count(
        by: Literal["entity_ns", "type", "day"] = "day", since: datetime | None = None, until: datetime | None = None
    ) -> Response:
        """Events per namespace, type or UTC day in [since, until)."""
        rows = await run_in_threadpool(service.timed, "count", lambda: service.engine.count_by(by, since, until))
        return json_response({"by": by, "counts": [{"value": v, "count": c} for v, c in rows]})

    @sql.post("/v1/sql", response_model=SqlAnswer, responses=problem_responses(400, 401, 422, 500, 503))
    async def run_sql(statement: SqlIn) -> Response:
        """One read-only SELECT over ``events`` (the sandbox's rules), parameters bound; a bearer
        token is always required."""
        result = await run_in_threadpool(
            service.timed, "sql", lambda: service.engine.sql(statement.query, list(statement.params))
        )
        rows = [[_cell(v) for v in row] for row in result.rows]
        return json_response({"columns": result.columns, "rows": rows, "truncated": result.truncated})

    router = APIRouter()
    router.include_router(reads)
    router.include_router(sql)
    return router


def query_problem(exc: QueryError, instance: str) -> RequestProblem:
    return RequestProblem(400, "bad-query", "Bad Request", str(exc))
