"""Errors split by what the caller should do about them.

``TerminalError``: retrying will not help; the message says how to fix the input or settings.
``TransientError``: the same call may succeed later (a network blip, a lost commit race).
"""

from __future__ import annotations


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


_TERMINAL_MARKERS = (
    "AccessDenied",
    "ACCESS_DENIED",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "NoSuchBucket",
    "Forbidden",
    "403",
    "401",
)


def is_transient(exc: BaseException) -> bool:
    """Whether the same call may succeed if retried (the flusher's retry policy decides by this).

    lakebench's own errors say so by type; of the rest, timeouts, dropped connections and a
    database that is busy are transient; refused credentials, missing buckets and folders,
    permissions, programming errors and anything unknown are terminal: retrying would only hide them.
    """
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, LakebenchError):
        return False
    text = str(exc)
    if any(marker in text for marker in _TERMINAL_MARKERS):
        return False
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    name = type(exc).__name__
    # sqlalchemy's OperationalError (a locked SQLite, a PostgreSQL restart); botocore's endpoint errors
    return name in {"OperationalError", "EndpointConnectionError", "ReadTimeoutError", "ConnectTimeoutError"}
