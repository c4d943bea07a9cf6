"""The ingest API: ``POST /v1/events`` and friends, as a router any lakebench service can mount."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from lakebench.core.models import Event
from lakebench.core.validate import Problem, Rejection, parse_event
from lakebench.pipeline.core import Pipeline
from lakebench.pipeline.dlq import DeadLetter, DeadLetters, letter
from lakebench.pipeline.requests import RequestProblem, decompress, media_type, parse_records, too_large


@dataclass(frozen=True, slots=True)
class IngestSettings:
    token: str | None  # None: no authentication (local use only, chosen explicitly)
    max_request_bytes: int = 5_000_000
    max_decompressed_bytes: int = 50_000_000


def json_response(document: Any, status: int = 200, media: str = "application/json", **headers: str) -> Response:
    return Response(orjson.dumps(document), status_code=status, media_type=media, headers=headers or None)


def check_token(request: Request, token: str | None) -> None:
    if token is None:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise RequestProblem(
            401,
            "unauthorized",
            "Unauthorized",
            "missing bearer token: send 'Authorization: Bearer <token>'",
            {"WWW-Authenticate": 'Bearer realm="lakebench"'},
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise RequestProblem(
            401,
            "unauthorized",
            "Unauthorized",
            "the bearer token is not valid",
            {"WWW-Authenticate": 'Bearer realm="lakebench", error="invalid_token"'},
        )


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(f"more than {limit:,}", limit)
        chunks.append(chunk)
    return b"".join(chunks)


def ingest(pipeline: Pipeline, dlq: DeadLetters, body: bytes, kind: str, source: str) -> tuple[int, dict[str, Any]]:
    """Validate every record, durably accept the good ones, dead-letter the bad ones; (status, answer)."""
    records, unit = parse_records(body, kind)
    results: list[dict[str, Any]] = []
    good: list[Event] = []
    good_slots: list[int] = []
    letters: list[DeadLetter] = []
    limits = pipeline.config.limits
    for record in records:
        parsed = record.value if isinstance(record.value, Problem) else parse_event(record.value, limits)
        if isinstance(parsed, Event):
            good_slots.append(len(results))
            good.append(parsed)
            results.append({unit: record.position, "status": "accepted", "event_id": parsed.event_id})
            continue
        problems = [parsed] if isinstance(parsed, Problem) else parsed
        rejection = Rejection(record.position, tuple(problems), unit)
        results.append(
            {
                unit: record.position,
                "status": "rejected",
                "errors": [{"field": p.field, "message": p.message} for p in problems],
            }
        )
        raw = None if isinstance(record.value, Problem) else record.value
        letters.append(letter(rejection, source, record=raw, raw_text=record.raw_text))
    statuses = pipeline.submit(good) if good else []
    for slot, outcome in zip(good_slots, statuses, strict=True):
        results[slot]["status"] = outcome
    if letters:
        dlq.put(letters)
    pipeline.stats.rejected += len(letters)
    accepted = sum(1 for s in statuses if s == "accepted")
    answer = {
        "accepted": accepted,
        "duplicates": len(statuses) - accepted,
        "rejected": len(letters),
        "events": results,
    }
    return (422 if letters and not good else 200), answer


def pipeline_router(pipeline: Pipeline, dlq: DeadLetters, settings: IngestSettings) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/events", tags=["ingest"])
    async def post_events(request: Request) -> Response:
        """Ingest events: a JSON array (or one object) or NDJSON, optionally gzip-encoded.

        Each event is answered as accepted, duplicate (its event_id was already taken) or rejected
        with its reasons; rejected events go to the dead-letter store.
        """
        check_token(request, settings.token)
        kind = media_type(request.headers.get("content-type"))
        body = await read_body(request, settings.max_request_bytes)
        body = decompress(body, request.headers.get("content-encoding"), settings.max_decompressed_bytes)
        client = request.client.host if request.client else "unknown"
        status, answer = await run_in_threadpool(ingest, pipeline, dlq, body, kind, f"http:{client}")
        return json_response(answer, status)

    @router.post("/v1/flush", tags=["ingest"])
    async def flush(request: Request) -> Response:
        """Roll the buffer into the lake now; answers once it is committed."""
        check_token(request, settings.token)
        committed = await run_in_threadpool(pipeline.flush)
        return json_response({"committed": committed, "offset": pipeline.stats.committed_offset})

    @router.get("/v1/pipeline/stats", tags=["ingest"])
    async def stats(request: Request) -> Response:
        check_token(request, settings.token)
        s = pipeline.stats
        return json_response(
            {
                "writer_id": pipeline.writer_id,
                "accepted": s.accepted,
                "duplicates": s.duplicates,
                "rejected": s.rejected,
                "buffered_events": pipeline.buffered_events,
                "flushes": s.flushes,
                "committed_events": s.committed_events,
                "committed_offset": s.committed_offset,
                "replayed_from_wal": s.replayed,
                "last_commit_at": s.last_commit_at,
                "last_error": s.last_error,
            }
        )

    return router
