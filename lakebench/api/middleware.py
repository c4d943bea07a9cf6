"""Request ids and the last line of defence: every answer carries ``X-Request-ID``; an exception no
route handled becomes a 500 problem naming that id — never the exception's text, which is logged."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from ulid import ULID

from lakebench.api.problems import RequestProblem, problem_response
from lakebench.core.logs import fields

log = logging.getLogger("lakebench.api")
access = logging.getLogger("lakebench.access")  # one line per request
HEADER: Final = "x-request-id"
_GIVEN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")  # a client's own id is kept when it looks like one


def request_id(scope: Scope) -> str | None:
    value = scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else None


Observer = Callable[[Scope, int, float], None]  # (scope after routing, status, seconds)


class RequestContext:
    """Pure ASGI (no per-request task, as Starlette's BaseHTTPMiddleware would add): a request id,
    ``headers`` added to every answer, an ``observe`` hook for metrics, and the 500 of last resort."""

    def __init__(
        self, app: ASGIApp, observe: Observer | None = None, headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        self.app = app
        self.observe = observe
        self.headers = list(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(HEADER.encode(), b"").decode("latin-1")
        rid = given if _GIVEN.match(given) else str(ULID())
        scope.setdefault("state", {})["request_id"] = rid
        status = 500
        sent = 0
        clock = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), (HEADER.encode(), rid.encode()), *self.headers]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self._call(scope, receive, send_with_id, rid)
        finally:
            seconds = time.perf_counter() - clock
            if self.observe is not None:
                self.observe(scope, status, seconds)
            if access.isEnabledFor(logging.INFO):
                access.info(
                    "%s %s %d",
                    scope.get("method"),
                    scope.get("path"),
                    status,
                    extra=fields(status=status, bytes=sent, ms=round(seconds * 1000, 3), request_id=rid),
                )

    async def _call(self, scope: Scope, receive: Receive, send_with_id: Send, rid: str) -> None:
        started = False

        async def track(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send_with_id(message)

        try:
            await self.app(scope, receive, track)
        except Exception:
            log.exception(
                "unhandled error on %s %s [request %s]",
                scope.get("method"),
                scope.get("path"),
                rid,
                extra=fields(request_id=rid),
            )
            if started:  # the answer is half sent: nothing better to do than end the connection
                raise
            problem = RequestProblem(
                500,
                "internal",
                "Internal Server Error",
                f"the server failed to answer; quote request id {rid} when reporting it",
            )
            response = problem_response(problem, str(scope.get("path", "")), rid)
            await response(scope, receive, track)
