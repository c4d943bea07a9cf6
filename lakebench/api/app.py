"""The HTTP service: one FastAPI app that mounts the routers of the parts it serves."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from lakebench.lake.catalog import Lake
from lakebench.pipeline.core import Backpressure, Pipeline
from lakebench.pipeline.dlq import DeadLetters
from lakebench.pipeline.http import IngestSettings, json_response, pipeline_router
from lakebench.pipeline.requests import RequestProblem

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


def create_app(lake: Lake, pipeline: Pipeline, ingest: IngestSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pipeline.start()
        try:
            yield
        finally:
            pipeline.stop(flush=True)

    app = FastAPI(title="lakebench", version="0.1.0", lifespan=lifespan)
    app.include_router(pipeline_router(pipeline, DeadLetters(lake.store), ingest))

    @app.get("/healthz", tags=["ops"])
    async def health() -> Response:
        return json_response({"status": "ok"})

    @app.exception_handler(RequestProblem)
    async def problem(request: Request, exc: RequestProblem) -> Response:
        return json_response(exc.document(request.url.path), exc.status, PROBLEM, **exc.headers)

    @app.exception_handler(Backpressure)
    async def backpressure(request: Request, exc: Backpressure) -> Response:
        document = RequestProblem(503, "backpressure", "Service Unavailable", str(exc)).document(request.url.path)
        return json_response(document, 503, PROBLEM, **{"Retry-After": str(exc.retry_after)})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path)
        document = RequestProblem(500, "internal", "Internal Server Error", f"{type(exc).__name__}: {exc}")
        return json_response(document.document(request.url.path), 500, PROBLEM)

    return app
