"""The ingest API: ``POST /v1/events`` and friends, a router any lakebench service can mount."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from lakebench.api.auth import bearer_credentials, check_token, require_token
from lakebench.api.metrics import Metrics
from lakebench.api.middleware import Observer, RequestContext, last_resort, unhandled
from lakebench.api.problems import RequestProblem, json_response, problem_response, problem_responses
from lakebench.core.errors import TransientError, is_transient
from lakebench.core.models import Limits
from lakebench.core.process import GC_PAUSES
from lakebench.pipeline.core import Backpressure, Pipeline, PipelineStopped
from lakebench.pipeline.decode import BodyError, BodyErrorKind, decompress, media_type, parse_records, too_large
from lakebench.pipeline.dlq import DeadLetters
from lakebench.pipeline.intake import Judged, judge, request_digest, take_in_async

_STATUS: Final[dict[BodyErrorKind, tuple[int, str]]] = {
    "payload-too-large": (413, "Payload Too Large"),
    "unsupported-media-type": (415, "Unsupported Media Type"),
    "unsupported-encoding": (415, "Unsupported Media Type"),
    "bad-gzip": (400, "Bad Request"),
    "malformed-json": (400, "Bad Request"),
    "empty-body": (400, "Bad Request"),
    "not-an-array": (400, "Bad Request"),
    "too-many-records": (413, "Payload Too Large"),
}


@dataclass(frozen=True, slots=True)
class IngestSettings:
    token: str | None  # None: no authentication (local use only, chosen explicitly)
    max_request_bytes: int = 5_000_000
    max_decompressed_bytes: int = 20_000_000
    body_timeout_s: float = 10.0  # longest wait for the next piece of a request body
    body_deadline_s: float = 60.0  # longest a whole body may take to arrive


# -- the OpenAPI shapes (the handler reads the raw body itself: JSON or NDJSON, maybe gzip) --------


_NAMESPACE: Final = (
    r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$"
)
_ULID: Final = r"^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$"
_TIME: Final = r"^(19[7-9][1-9]|19[89]\d|[2-9]\d{3})-"  # with the date-time format: 1971..9999, UTC or not
_NOT_BLANK: Final = r"^[^\x00]*[^\s\x00][^\x00]*$"


class EventIn(BaseModel):
    """An event as a client sends it. The server checks every rule and names the field of each
    problem; entity ids are at most 1,024 bytes of UTF-8, bodies at most the server's
    ``--max-body-bytes``, attributes at most 32 levels deep with integers of 64 bits."""

    model_config = ConfigDict(extra="forbid")
    event_id: str | None = Field(
        default=None, pattern=_ULID, description="a ULID; assigned when absent (send one to retry safely)"
    )
    entity_ns: str = Field(max_length=253, pattern=_NAMESPACE, examples=["en.wikipedia.org"])
    entity_id: str = Field(min_length=1, max_length=256, pattern=_NOT_BLANK, examples=["TypeScript"])
    ts: (
        Annotated[str, Field(json_schema_extra={"format": "date-time"}, pattern=_TIME)]
        | Annotated[float, Field(ge=31_536_000, le=253_402_214_399)]
    ) = Field(description="ISO-8601 time or epoch seconds", examples=["2025-10-04T12:00:00Z"])
    type: Literal["create", "update", "delete"] | None = "update"
    title: str | None = Field(default=None, max_length=16_384)
    body: str | None = Field(default=None, max_length=65_536)
    version: int | None = Field(default=1, ge=0, le=2**63 - 1)
    attributes: dict[str, Any] | None = Field(default=None, description="free-form JSON object")


class FieldError(BaseModel):
    field: str
    message: str


class EventOutcome(BaseModel):
    index: int | None = Field(default=None, description="position in a JSON array, from 0")
    line: int | None = Field(default=None, description="line of an NDJSON body, from 1")
    status: Literal["accepted", "duplicate", "rejected"]
    event_id: str | None = None
    errors: list[FieldError] | None = None


class DeadLetterCount(BaseModel):
    stored: int = Field(description="rejected records kept in the dead-letter store")
    dropped: int = Field(description="rejected records over the store's bounds, not kept")


class IngestAnswer(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    dead_letters: DeadLetterCount
    events: list[EventOutcome]


class FlushAnswer(BaseModel):
    committed: int
    offset: int


class PipelineStats(BaseModel):
    writer_id: str
    state: Literal["running", "stopped"]
    accepted: int
    duplicates: int
    rejected: int
    dead_letters: int
    dead_letters_dropped: int
    buffered_events: int
    flushes: int
    flush_retries: int
    committed_events: int
    committed_offset: int
    replayed_from_wal: int
    dedupe_window_ids: int
    last_commit_at: float | None
    last_error: str | None
    acknowledged_requests: int = Field(description="ingest calls answered once their events were on disk")
    wal_syncs: int = Field(description="fsyncs of the write-ahead log: requests that arrive together share one")
    wal_sync_seconds: float = Field(description="time spent in those fsyncs")
    gc_collections: list[int] = Field(
        description="the garbage collector's passes in this worker process since it started serving, by "
        "generation (2: full)"
    )
    gc_seconds: float = Field(description="time those passes stopped the worker's Python threads")
    gc_longest_pause_ms: float = Field(description="the longest of them")


_EVENT_SCHEMA: Final = {"$ref": "#/components/schemas/EventIn"}
INGEST_BODY: Final = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"oneOf": [{"type": "array", "items": _EVENT_SCHEMA, "minItems": 1}, _EVENT_SCHEMA]}
            },
            "application/x-ndjson": {"schema": {"type": "array", "items": _EVENT_SCHEMA, "minItems": 1}},
        },
    }
}
OPENAPI_MODELS: Final = (EventIn,)  # models the app adds to components/schemas


def header(scope: Scope, name: bytes) -> str | None:
    """A request header's value (``name`` in lower case, as ASGI gives them), the first if it came
    more than once — as Starlette's ``Headers.get``, without building a ``Headers`` per request."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")  # type: ignore[no-any-return]
    return None


async def read_body(request: Request, limit: int, idle_timeout_s: float, deadline_s: float = 60.0) -> bytes:
    """The body, up to ``limit`` bytes. A client that stops sending for ``idle_timeout_s``, or has
    not sent it all after ``deadline_s`` (a trickle), gets 408 and the connection is closed."""
    declared = header(request.scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _problem(too_large(int(declared), limit, "request body", "--max-request-mb"))
    chunks: list[bytes] = []
    size = 0
    receive = request.receive  # the ASGI messages themselves: one wait for a body that came whole
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while True:
        left = deadline - loop.time()
        try:
            async with asyncio.timeout(max(0.0, min(idle_timeout_s, left))):  # no task per chunk, as wait_for
                message = await receive()
        except TimeoutError:
            why = (
                f"no part of it arrived for {idle_timeout_s:g} s"
                if left > idle_timeout_s
                else (f"it did not arrive whole within {deadline_s:g} s")
            )
            raise RequestProblem(
                408,
                "request-timeout",
                "Request Timeout",
                f"request body: {why} ({size:,} bytes of {declared or 'an unknown number of'} declared); "
                "send the whole body",
                {"Connection": "close"},
            ) from None
        if message["type"] == "http.disconnect":
            raise RequestProblem(400, "client-disconnected", "Bad Request", "the client went away mid-body")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _problem(too_large(f"more than {limit:,}", limit, "request body", "--max-request-mb"))
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunk if len(chunks) == 1 else b"".join(chunks)


INLINE_BYTES: Final = 16_384
FLUSH_DEADLINE_S: Final = 60.0  # POST /v1/flush retries a transient failure this long


def _decode_and_judge(
    raw: bytes, encoding: str | None, kind: str, source: str, max_decompressed: int, limits: Limits
) -> tuple[Judged, str | None]:
    """The request judged, and the digest that names its dead letters (None: it has none)."""
    body = decompress(raw, encoding, max_decompressed)
    records, unit = parse_records(body, kind)
    judged = judge(records, unit, limits, source)
    if not judged.letters:
        return judged, None
    digest = request_digest(raw, encoding)  # a retry of the same request names the same letters
    judged.letters = [dataclasses.replace(letter, request=digest) for letter in judged.letters]
    return judged, digest


def _problem(error: BodyError) -> RequestProblem:
    status, title = _STATUS[error.kind]
    return RequestProblem(status, error.kind, title, error.detail)


def unavailable(exc: Exception) -> RequestProblem:
    """503: the pipeline cannot take this request now; nothing of it was accepted."""
    if isinstance(exc, Backpressure):
        return RequestProblem(
            503, "backpressure", "Service Unavailable", str(exc), {"Retry-After": str(exc.retry_after)}
        )
    if isinstance(exc, PipelineStopped):
        detail = f"{exc}; an operator must fix the cause and restart the server"
        return RequestProblem(503, "pipeline-stopped", "Service Unavailable", detail, {"Retry-After": "60"})
    detail = f"{exc}; nothing of this request was accepted, retry it"
    return RequestProblem(503, "unavailable", "Service Unavailable", detail, {"Retry-After": "5"})


async def ingest(
    request: Request, pipeline: Pipeline, dlq: DeadLetters, settings: IngestSettings, metrics: Metrics | None
) -> Response:
    """``POST /v1/events``, after authentication: the route's body, and the fast path's."""
    encoding = header(request.scope, b"content-encoding")
    client = request.client.host if request.client else "unknown"
    try:
        kind = media_type(header(request.scope, b"content-type"))
        raw = await read_body(request, settings.max_request_bytes, settings.body_timeout_s, settings.body_deadline_s)
        work = functools.partial(
            _decode_and_judge,
            raw,
            encoding,
            kind,
            f"http:{client}",
            settings.max_decompressed_bytes,
            pipeline.config.limits,
        )
        # A small request is read on the event loop (a thread hop would cost more than the work);
        # a large one, or a compressed one, off it, so other requests are served meanwhile.
        small = len(raw) <= INLINE_BYTES and encoding is None
        judged, digest = work() if small else await run_in_threadpool(work)
    except BodyError as error:
        raise _problem(error) from None
    try:  # dead letters are bounded by what came over the wire
        answer = await take_in_async(pipeline, dlq, judged, len(raw), digest)
    except (Backpressure, PipelineStopped, TransientError) as exc:
        raise unavailable(exc) from None
    if metrics is not None:
        for status, n in (
            ("accepted", answer.accepted),
            ("duplicate", answer.duplicates),
            ("rejected", answer.rejected),
        ):
            if n:
                metrics.ingest_events.labels(status).inc(n)
    return json_response(answer.document(), 422 if answer.all_rejected else 200)


@dataclass(frozen=True, slots=True)
class _Route:
    path: str  # what a metrics observer reads of ``scope["route"]``


class FastIngest:
    """``POST /v1/events`` as pure ASGI, for ``App`` to call before FastAPI's middleware, routing,
    dependency injection and exception handlers — what cost most of a one-event request. The same
    handler (``ingest``), authentication (``check_token``), problems, request ids, access log and
    metrics (its own ``RequestContext``) as the route, which stays for the OpenAPI document."""

    PATH: Final = "/v1/events"

    def __init__(
        self,
        pipeline: Pipeline,
        dlq: DeadLetters,
        settings: IngestSettings,
        metrics: Metrics | None = None,
        observe: Observer | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        self._answer = functools.partial(ingest, pipeline=pipeline, dlq=dlq, settings=settings, metrics=metrics)
        self._token = settings.token
        self._context = RequestContext(self, observe, headers)  # its parts, used inline by __call__
        self._route = _Route(self.PATH)

    def handles(self, scope: Scope) -> bool:
        return bool(scope["type"] == "http" and scope["path"] == self.PATH and scope["method"] == "POST")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``RequestContext``'s work, inline: the answer is one JSON document, sent whole."""
        scope["route"] = self._route
        context = self._context
        rid = context.assign_id(scope)
        clock = time.perf_counter()
        status, sent, started = 500, 0, False
        try:
            try:
                response = await self._serve(scope, receive, rid)
            except Exception:
                response = last_resort(scope, rid)
            status = response.status_code
            started = True
            await send(
                {"type": "http.response.start", "status": status, "headers": context.with_id(response.raw_headers, rid)}
            )
            await send({"type": "http.response.body", "body": response.body})
            sent = len(response.body)
        except Exception:
            if started:  # the answer is half sent: nothing better to do than end the connection
                unhandled(scope, rid)
            raise
        finally:
            context.record(scope, status, sent, time.perf_counter() - clock, rid)

    async def _serve(self, scope: Scope, receive: Receive, rid: str) -> Response:
        request = Request(scope, receive)
        try:
            check_token(bearer_credentials(header(scope, b"authorization")), self._token)
            return await self._answer(request)
        except RequestProblem as problem:
            return problem_response(problem, self.PATH, rid)


def pipeline_router(
    pipeline: Pipeline,
    dlq: DeadLetters,
    settings: IngestSettings,
    *,
    flush: Callable[[], int] | None = None,
    metrics: Metrics | None = None,
) -> APIRouter:
    """``flush``: what ``POST /v1/flush`` runs (every worker's pipeline, in a multi-worker service)."""
    router = APIRouter(dependencies=[Depends(require_token(settings.token))])
    flush_once = flush or (lambda: pipeline.flush())

    def flush_all() -> int:
        """Until committed: a commit race lost to other writers (or a store's blip) is retried, with
        jittered back-off, for up to FLUSH_DEADLINE_S; a terminal fault is not."""
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait_random_exponential(multiplier=0.1, max=2.0),
            stop=stop_after_delay(FLUSH_DEADLINE_S),
            reraise=True,
        )
        return retrying(flush_once)

    @router.post(
        "/v1/events",
        tags=["ingest"],
        response_model=IngestAnswer,
        openapi_extra=INGEST_BODY,
        responses={
            422: {"description": "every event was rejected", "model": IngestAnswer},
            **problem_responses(400, 401, 408, 413, 415, 500, 503),
        },
    )
    async def post_events(request: Request) -> Response:
        """Ingest events: a JSON array (or one object) or NDJSON, optionally gzip-encoded.

        Each event is answered as accepted (durably, in the write-ahead log), duplicate (its
        event_id was already taken) or rejected with its reasons; rejected events go to the
        dead-letter store within its bounds. 422 when every event was rejected.
        """
        return await ingest(request, pipeline, dlq, settings, metrics)

    @router.post("/v1/flush", tags=["ingest"], response_model=FlushAnswer, responses=problem_responses(401, 500, 503))
    async def post_flush() -> Response:
        """Roll the buffer into the lake now; answers once it is committed."""
        try:
            committed = await run_in_threadpool(flush_all)
        except (PipelineStopped, TransientError) as exc:
            raise unavailable(exc) from None
        return json_response({"committed": committed, "offset": pipeline.stats.committed_offset})

    @router.get(
        "/v1/pipeline/stats", tags=["ingest"], response_model=PipelineStats, responses=problem_responses(401, 500)
    )
    async def stats() -> Response:
        s = pipeline.stats
        return json_response(
            {
                "writer_id": pipeline.writer_id,
                "state": "stopped" if pipeline.failure else "running",
                "accepted": s.accepted,
                "duplicates": s.duplicates,
                "rejected": s.rejected,
                "dead_letters": s.dead_letters,
                "dead_letters_dropped": s.dead_letters_dropped,
                "buffered_events": pipeline.buffered_events,
                "flushes": s.flushes,
                "flush_retries": s.flush_retries,
                "committed_events": s.committed_events,
                "committed_offset": s.committed_offset,
                "replayed_from_wal": s.replayed,
                "dedupe_window_ids": pipeline.dedupe.committed_ids,
                "last_commit_at": s.last_commit_at,
                "last_error": s.last_error,
                "acknowledged_requests": s.acknowledged_requests,
                "wal_syncs": pipeline.wal.syncs,
                "wal_sync_seconds": pipeline.wal.sync_seconds,
                "gc_collections": GC_PAUSES.collections,
                "gc_seconds": sum(GC_PAUSES.seconds),
                "gc_longest_pause_ms": GC_PAUSES.longest_s * 1000,
            }
        )

    return router
