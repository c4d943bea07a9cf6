"""Request ids and the last line of defence: every answer carries ``X-Request-ID``; an exception no
route handled becomes a 500 problem naming that id — never the exception's text, which is logged."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from typing import Final

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from ulid import ULID

from lakebench.api.problems import RequestProblem, problem_response
from lakebench.core.logs import fields

log = logging.getLogger("lakebench.api")
access = logging.getLogger("lakebench.access")  # one line per request
HEADER: Final = "x-request-id"
_HEADER_BYTES: Final = HEADER.encode()
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
        rid = self.assign_id(scope)
        status = 500
        sent = 0
        clock = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message["headers"] = self.with_id(message.get("headers", []), rid)
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self._call(scope, receive, send_with_id, rid)
        finally:
            self.record(scope, status, sent, time.perf_counter() - clock, rid)

    def assign_id(self, scope: Scope) -> str:
        """The request's id (the client's own ``X-Request-ID`` when it looks like one), kept in its scope."""
        given = b""
        for name, value in scope.get("headers") or ():
            if name == _HEADER_BYTES:
                given = value
        text = given.decode("latin-1")
        rid = text if given and _GIVEN.match(text) else _IDS()
        scope.setdefault("state", {})["request_id"] = rid
        return rid

    def with_id(self, headers: Iterable[tuple[bytes, bytes]], rid: str) -> list[tuple[bytes, bytes]]:
        return [*headers, (_HEADER_BYTES, rid.encode()), *self.headers]

    def record(self, scope: Scope, status: int, sent: int, seconds: float, rid: str) -> None:
        """The request's metrics and access-log line."""
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
            if started:  # the answer is half sent: nothing better to do than end the connection
                unhandled(scope, rid)
                raise
            response = last_resort(scope, rid)
            await response(scope, receive, track)


def unhandled(scope: Scope, rid: str) -> None:
    log.exception(
        "unhandled error on %s %s [request %s]",
        scope.get("method"),
        scope.get("path"),
        rid,
        extra=fields(request_id=rid),
    )


def last_resort(scope: Scope, rid: str) -> Response:
    """The 500 for an exception nothing handled (logged here): it names the request id, never the
    exception's text."""
    unhandled(scope, rid)
    problem = RequestProblem(
        500,
        "internal",
        "Internal Server Error",
        f"the server failed to answer; quote request id {rid} when reporting it",
    )
    return problem_response(problem, str(scope.get("path", "")), rid)


class RequestIds:
    """Request ids: a ULID made when the process first needs one, then a counter — unique across
    processes and restarts, in order within one. A ULID for each request cost more Python than
    the rest of its bookkeeping (python-ulid and base32 are pure Python)."""

    def __init__(self) -> None:
        self._prefix = ""
        self._count = itertools.count(1)
        os.register_at_fork(after_in_child=self._reset)  # a forked process: a prefix of its own

    def _reset(self) -> None:
        self._prefix = ""

    def __call__(self) -> str:
        if not self._prefix:
            self._prefix, self._count = str(ULID()), itertools.count(1)
        return f"{self._prefix}-{next(self._count):x}"


_IDS: Final = RequestIds()
