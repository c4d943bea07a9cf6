"""The HTTP service: one FastAPI app that mounts the routers of the parts it serves."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any, Literal

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from lakebench.api.ingest import OPENAPI_MODELS, FastIngest, IngestSettings, pipeline_router
from lakebench.api.middleware import RequestContext, request_id
from lakebench.api.problems import ProblemDocument, RequestProblem, json_response, problem_response
from lakebench.api.siblings import SiblingFlush
from lakebench.core.errors import TransientError
from lakebench.core.process import settled_server
from lakebench.engines.base import QueryError
from lakebench.lake.catalog import Lake
from lakebench.pipeline.core import Pipeline
from lakebench.pipeline.dlq import DeadLetters

log = logging.getLogger(__name__)


class Health(BaseModel):
    status: Literal["ok", "failing"]
    reason: str | None = None


class App(FastAPI):
    """FastAPI, with ``POST /v1/events`` (when ``fast_ingest`` is set) answered before FastAPI's own
    layers: at thousands of one-event requests a second, they cost more than the work."""

    fast_ingest: FastIngest | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_ingest
        if fast is not None and fast.handles(scope):
            await fast(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(
    lake: Lake,
    pipeline: Pipeline,
    ingest: IngestSettings,
    dlq: DeadLetters | None = None,
    siblings: SiblingFlush | None = None,
) -> FastAPI:
    """The ingest service; ``siblings``: the other worker processes of the same server."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pipeline.start()
        if siblings is not None:
            siblings.start()
        try:
            with settled_server():
                yield
        finally:
            if siblings is not None:
                siblings.close()
            pipeline.stop(flush=pipeline.failure is None)

    app = App(title="lakebench", version="0.1.0", lifespan=lifespan)
    letters = dlq or DeadLetters(lake.store)
    app.add_middleware(RequestContext)
    app.fast_ingest = FastIngest(pipeline, letters, ingest)
    app.include_router(pipeline_router(pipeline, letters, ingest, flush=siblings.flush_all if siblings else None))

    @app.get(
        "/healthz",
        tags=["ops"],
        response_model=Health,
        responses={503: {"description": "the pipeline stopped committing", "model": Health}},
    )
    async def health() -> Response:
        """Liveness, and whether the pipeline still commits (503 with the reason when it stopped)."""
        if pipeline.failure is not None:
            return json_response({"status": "failing", "reason": pipeline.failure}, 503)
        return json_response({"status": "ok"})

    install_error_handlers(app)
    install_openapi(app)
    return app


def install_error_handlers(app: FastAPI) -> None:
    """Every error an RFC 9457 problem: refused requests, invalid parameters, refused queries, and
    faults a retry may fix (503)."""

    @app.exception_handler(RequestProblem)
    async def problem(request: Request, exc: RequestProblem) -> Response:
        return problem_response(exc, request.url.path, request_id(request.scope))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Starlette's own refusals (no such route, method not allowed, a body that does not parse)."""
        title = HTTPStatus(exc.status_code).phrase if exc.status_code in HTTPStatus._value2member_map_ else "Error"
        slug = title.lower().replace(" ", "-")
        problem = RequestProblem(exc.status_code, slug, title, str(exc.detail), dict(exc.headers or {}))
        return problem_response(problem, request.url.path, request_id(request.scope))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        detail = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return problem_response(RequestProblem(400, "bad-request", "Bad Request", detail[:500]), request.url.path)

    @app.exception_handler(QueryError)
    async def bad_query(request: Request, exc: QueryError) -> Response:
        return problem_response(RequestProblem(400, "bad-query", "Bad Request", str(exc)[:1000]), request.url.path)

    @app.exception_handler(TransientError)
    async def unavailable(request: Request, exc: TransientError) -> Response:
        problem = RequestProblem(503, "unavailable", "Service Unavailable", f"{exc}; retry", {"Retry-After": "5"})
        return problem_response(problem, request.url.path, request_id(request.scope))


def install_openapi(app: FastAPI, models: tuple[type[BaseModel], ...] = ()) -> None:
    """The OpenAPI document with the problem and event schemas the routes refer to, and ``models``
    (bodies a route reads itself, named by ``$ref``)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, routes=app.routes, description=app.description)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            named: tuple[type[BaseModel], ...] = (ProblemDocument, *OPENAPI_MODELS, *models)
            for model in named:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
