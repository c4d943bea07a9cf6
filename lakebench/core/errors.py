"""Errors split by what the caller should do about them.

``TerminalError``: retrying will not help; the message says how to fix the input or settings.
``TransientError``: the same call may succeed later (a network blip, a lost commit race).
"""

from __future__ import annotations

import re


class LakebenchError(Exception):
    """Base of every error lakebench raises on purpose."""


class TerminalError(LakebenchError):
    """Retrying will not help: fix the input or the settings."""


class TransientError(LakebenchError):
    """The same call may succeed if retried."""


class ConfigError(TerminalError):
    """A setting is missing or malformed."""


class StorageError(TerminalError):
    """The object store refused a request for a reason retrying will not fix."""


class StorageUnavailable(TransientError):
    """The object store could not be reached or answered with a server error."""


class ObjectNotFound(StorageError):
    """The key does not exist in the object store."""


class InputError(TerminalError):
    """An input file or stream cannot be read at all (as opposed to a bad record in it)."""


# How services say "you may not" (never worth a retry) and "not now" (worth one), in the texts of
# botocore, pyarrow's S3 client (which pyiceberg writes through) and HTTP clients.
_TERMINAL = re.compile(
    r"AccessDenied|ACCESS_DENIED|InvalidAccessKeyId|SignatureDoesNotMatch|NoSuchBucket|NO_SUCH_BUCKET"
    r"|\b(?:HTTP|status(?: code)?|response code)[ :=]*40[13]\b|\bForbidden\b|\bUnauthorized\b",
    re.IGNORECASE,
)
_TRANSIENT = re.compile(
    r"NETWORK_CONNECTION|SLOW_DOWN|SlowDown|INTERNAL_FAILURE|InternalError|SERVICE_UNAVAILABLE|ServiceUnavailable"
    r"|REQUEST_TIMEOUT|RequestTimeout|THROTTL|Throttl|curlCode|Connection reset|Connection refused|timed out"
    r"|\b(?:HTTP|status(?: code)?|response code)[ :=]*(?:5\d\d|429)\b|database is locked",
)
_TRANSIENT_TYPES = frozenset({"OperationalError", "EndpointConnectionError", "ReadTimeoutError", "ConnectTimeoutError"})


def is_transient(exc: BaseException) -> bool:
    """Whether the same call may succeed if retried (the flusher's retry policy decides by this).

    lakebench's own errors say so by type. Of the rest: a refused credential or a missing bucket is
    terminal, whatever carries it; timeouts, dropped connections, throttling, 5xx answers and a busy
    catalog database are transient, whether they come as ``ConnectionError`` or as the plain
    ``OSError`` pyarrow's S3 client raises; anything else (permissions on a folder, programming
    errors, the unknown) is terminal: retrying would only hide it.
    """
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, LakebenchError):
        return False
    text = f"{type(exc).__name__}: {exc}"
    if _TERMINAL.search(text):
        return False
    if isinstance(exc, TimeoutError | ConnectionError) or type(exc).__name__ in _TRANSIENT_TYPES:
        return True
    if isinstance(exc, PermissionError | FileNotFoundError | NotADirectoryError | IsADirectoryError):
        return False
    return isinstance(exc, OSError) and bool(_TRANSIENT.search(text))
