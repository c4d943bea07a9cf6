"""Bearer-token authentication, declared in the OpenAPI document, answered with problem documents."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from lakebench.api.problems import RequestProblem

bearer = HTTPBearer(auto_error=False, description="the service's token: Authorization: Bearer <token>")


def check_token(credentials: HTTPAuthorizationCredentials | None, token: str | None) -> None:
    """Nothing when ``token`` is None (authentication switched off explicitly) or it matches."""
    if token is None:
        return
    if credentials is None or not credentials.credentials:
        raise RequestProblem(
            401,
            "unauthorized",
            "Unauthorized",
            "missing bearer token: send 'Authorization: Bearer <token>'",
            {"WWW-Authenticate": 'Bearer realm="lakebench"'},
        )
    if not hmac.compare_digest(credentials.credentials.strip().encode(), token.encode()):
        raise RequestProblem(
            401,
            "unauthorized",
            "Unauthorized",
            "the bearer token is not valid",
            {"WWW-Authenticate": 'Bearer realm="lakebench", error="invalid_token"'},
        )


def bearer_credentials(authorization: str | None) -> HTTPAuthorizationCredentials | None:
    """What ``bearer`` (HTTPBearer, auto_error off) reads from an Authorization header."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
        return None
    return HTTPAuthorizationCredentials(scheme=scheme, credentials=credentials)


def require_token(token: str | None) -> Callable[[HTTPAuthorizationCredentials | None], Awaitable[None]]:
    """A route dependency: the bearer token must match ``token``. Async, so FastAPI runs it on the
    event loop instead of handing every request to a worker thread."""

    async def dependency(credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> None:  # noqa: B008
        check_token(credentials, token)

    return dependency
