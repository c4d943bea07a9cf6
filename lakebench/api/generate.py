"""``POST /generate``: synthetic events (lakebench/generate/synthetic.py) into the service's pipeline,
taken in the way ``POST /v1/events`` takes them (lakebench/pipeline/intake.py): durable in the
write-ahead log when answered, readable once the pipeline has flushed. Bounded by ``BenchLimits``.
"""

from __future__ import annotations

import functools
import random
import time
from typing import Any, Final

import orjson
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from starlette.concurrency import run_in_threadpool

from lakebench.api.auth import require_token
from lakebench.api.bench import BenchLimits
from lakebench.api.ingest import read_body, unavailable
from lakebench.api.metrics import Metrics
from lakebench.api.problems import RequestProblem, json_response, problem_responses, unprocessable
from lakebench.core.errors import TransientError
from lakebench.pipeline.core import Backpressure, Pipeline, PipelineStopped
from lakebench.pipeline.decode import Record
from lakebench.pipeline.dlq import DeadLetters
from lakebench.pipeline.intake import take_in

BATCH_EVENTS: Final = 500  # events handed to the pipeline at a time
BATCH_BYTES: Final = 4 << 20
MAX_BODY: Final = 16_384  # bytes of the request's own body


class GenerateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=1, description="events to generate")
    avgSizeKB: float = Field(gt=0, description="their average body size, in KB (log-normal)")
    seed: int | None = Field(
        default=None, ge=0, le=2**32 - 1, description="the same seed generates the same events (same ids)"
    )


@functools.cache
def generate_model(limits: BenchLimits) -> type[GenerateIn]:
    """``GenerateIn`` with a server's bounds: what it validates is what its OpenAPI document says."""
    return create_model(
        "GenerateIn",
        __base__=GenerateIn,
        count=(int, Field(ge=1, le=limits.max_generate_count, description="events to generate")),
        avgSizeKB=(
            float,
            Field(
                gt=0,
                le=limits.max_generate_avg_size_kb,
                description=f"their average body size, in KB (log-normal); count x avgSizeKB at most "
                f"{limits.max_generate_mb:g} MB",
            ),
        ),
    )


class GenerateAnswer(BaseModel):
    requested: int
    accepted: int
    duplicates: int = Field(description="events of this seed taken before (their ids are derived from it)")
    rejected: int
    seed: int
    dataset: str
    bytes: int = Field(description="bytes of generated bodies")
    seconds: float


def openapi_models(limits: BenchLimits) -> tuple[type[BaseModel], ...]:
    """Models the app adds to components/schemas (bodies the routes read themselves)."""
    return (generate_model(limits),)


GENERATE_BODY: Final = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GenerateIn"}}},
    }
}


def generate_router(
    pipeline: Pipeline, dlq: DeadLetters, limits: BenchLimits, *, token: str | None, metrics: Metrics | None = None
) -> APIRouter:
    """``POST /generate``: synthetic events into the pipeline, through the ingest path."""
    router = APIRouter(dependencies=[Depends(require_token(token))], tags=["benchmark"])

    @router.post(
        "/generate",
        response_model=GenerateAnswer,
        openapi_extra=GENERATE_BODY,
        responses=problem_responses(400, 401, 408, 413, 415, 422, 500, 503),
    )
    async def generate_events(request: Request) -> Response:
        """Generate ``count`` synthetic events (bodies of ``avgSizeKB`` on average, log-normal) and
        take them in as ``POST /v1/events`` does: durable in the write-ahead log when answered,
        readable after the pipeline's next flush. A seed generates the same events again (their
        ids too, so they answer as duplicates); without one, a random seed, returned."""
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise RequestProblem(
                415, "unsupported-media-type", "Unsupported Media Type", "send the body as application/json"
            )
        raw = await read_body(request, MAX_BODY, 10.0, 30.0)
        try:
            body = generate_model(limits).model_validate(orjson.loads(raw))
        except orjson.JSONDecodeError as exc:
            raise RequestProblem(400, "malformed-json", "Bad Request", f"the body is not JSON: {exc}") from None
        except ValidationError as exc:
            raise unprocessable(exc.errors()) from None
        megabytes = body.count * body.avgSizeKB / 1000
        if megabytes > limits.max_generate_mb:
            raise unprocessable(
                [
                    {
                        "loc": ("count",),
                        "msg": f"count x avgSizeKB is {megabytes:,.1f} MB; at most {limits.max_generate_mb:,.0f} MB "
                        "per request (send several, each with its own seed)",
                    }
                ]
            )
        seed = body.seed if body.seed is not None else random.randrange(2**32)
        try:
            answer = await run_in_threadpool(_generate_into, pipeline, dlq, body.count, body.avgSizeKB, seed)
        except _Partly as partly:
            problem = unavailable(partly.cause)
            problem.detail = (
                f"{problem.detail} — {partly.accepted:,} of {body.count:,} events were taken before it; send the same "
                f"request with seed {seed} to add the rest (those taken answer as duplicates)"
            )
            raise problem from None
        if metrics is not None:
            for status, key in (("accepted", "accepted"), ("duplicate", "duplicates"), ("rejected", "rejected")):
                if answer[key]:
                    metrics.ingest_events.labels(status).inc(answer[key])
        return json_response(answer)

    return router


class _Partly(Exception):
    def __init__(self, accepted: int, cause: Exception) -> None:
        super().__init__(str(cause))
        self.accepted, self.cause = accepted, cause


def _generate_into(pipeline: Pipeline, dlq: DeadLetters, count: int, avg_size_kb: float, seed: int) -> dict[str, Any]:
    from lakebench.generate.synthetic import GeneratorSpec, generate

    spec = GeneratorSpec(count=count, avg_size_kb=avg_size_kb, seed=seed)
    began = time.perf_counter()
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
    generated = 0
    batch: list[Record] = []
    size = 0

    def take() -> None:
        try:
            answer = take_in(pipeline, dlq, batch, "index", "generate", size)
        except (Backpressure, PipelineStopped, TransientError) as exc:
            raise _Partly(totals["accepted"] + totals["duplicates"], exc) from exc
        totals["accepted"] += answer.accepted
        totals["duplicates"] += answer.duplicates
        totals["rejected"] += answer.rejected
        batch.clear()

    for index, event in enumerate(generate(spec)):
        body = len(event.body or "")
        generated += body
        batch.append(Record(index, event.to_json_dict()))
        size += body
        if len(batch) >= BATCH_EVENTS or size >= BATCH_BYTES:
            take()
            size = 0
    if batch:
        take()
    return {
        "requested": count,
        **totals,
        "seed": seed,
        "dataset": spec.dataset_id,
        "bytes": generated,
        "seconds": round(time.perf_counter() - began, 3),
    }
