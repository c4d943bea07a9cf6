"""RFC 9457 problem documents and JSON answers: what every lakebench router answers with."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

PROBLEM: Final = "application/problem+json"


class ProblemDocument(BaseModel):
    """An RFC 9457 problem: the whole request was refused, or failed."""

    type: str = Field(description="urn:lakebench:problem:<slug>", examples=["urn:lakebench:problem:malformed-json"])
    title: str
    status: int
    detail: str
    instance: str = Field(description="the request path")
    request_id: str | None = Field(default=None, description="quote it when reporting a server error")


@dataclass
class RequestProblem(Exception):
    """Raise to answer with a problem document."""

    status: int
    slug: str
    title: str
    detail: str
    headers: dict[str, str] = field(default_factory=dict)

    def document(self, instance: str, request_id: str | None = None) -> dict[str, Any]:
        document: dict[str, Any] = {
            "type": f"urn:lakebench:problem:{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
        }
        if request_id is not None:
            document["request_id"] = request_id
        return document


def json_response(document: Any, status: int = 200, media: str = "application/json", **headers: str) -> Response:
    return Response(orjson.dumps(document), status_code=status, media_type=media, headers=headers or None)


def problem_response(problem: RequestProblem, instance: str, request_id: str | None = None) -> Response:
    return json_response(problem.document(instance, request_id), problem.status, PROBLEM, **problem.headers)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries: each status answered with a problem document."""
    titles = {
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        408: "Request Timeout",
        409: "Conflict",
        413: "Payload Too Large",
        415: "Unsupported Media Type",
        422: "Unprocessable Content",
        500: "Internal Server Error",
        503: "Service Unavailable",
    }
    schema = {"$ref": "#/components/schemas/ProblemDocument"}
    return {
        status: {"description": titles.get(status, "Problem"), "content": {PROBLEM: {"schema": schema}}}
        for status in statuses
    }


_WHERE: Final = {"query": "query parameter", "path": "path parameter", "body": "body field", "header": "header"}


def unprocessable(errors: Sequence[Any]) -> RequestProblem:
    """422, naming each invalid field (at most three) and what is wrong with it."""
    parts = []
    for error in list(errors)[:3]:
        loc = [str(p) for p in error.get("loc", ())]
        where = _WHERE.get(loc[0]) if loc else None
        name = ".".join(loc[1:] if where else loc) or "body"
        parts.append(f"{where + ' ' if where else ''}{name!r}: {error.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return RequestProblem(422, "unprocessable", "Unprocessable Content", ("; ".join(parts) + more)[:1000])


class ProblemRoute(APIRoute):
    """A route whose invalid parameters answer 422 problems naming each field (the app's default for
    them is 400). Document it with ``problem_responses(422)``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as exc:
                raise unprocessable(exc.errors()) from None

        return handler
