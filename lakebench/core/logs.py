"""Log lines an operator can read, or a log shipper can parse: stdlib ``logging`` on stderr.

Every record may carry fields (``log.info("commit", extra={"fields": {...}})``): the text form
prints them as ``key=value`` after the message, the JSON form (``--log-json``) as keys of one JSON
object per line. The server writes one line per request (``lakebench.access``), one per commit
(``lakebench.pipeline``) and every error with the request id it answered.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any, Final

import orjson

LEVELS: Final = ("debug", "info", "warning", "error")
FIELDS: Final = "fields"  # the attribute of a record holding its structured fields


def fields(**values: Any) -> dict[str, Any]:
    """``extra=`` for a log call: ``log.info("commit", extra=fields(events=10))``."""
    return {FIELDS: values}


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text_value(value: Any) -> str:
    text = str(value)
    return text if text and not any(c in text for c in ' "=\n') else orjson.dumps(text).decode()


class TextFormatter(logging.Formatter):
    """``2026-12-03T03:07:03.123Z INFO lakebench.access GET /v1/recent 200 status=200 ms=1.2``"""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name} {record.getMessage()}"
        extra: dict[str, Any] = getattr(record, FIELDS, None) or {}
        if extra:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in extra.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the record's fields, and the error."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra: dict[str, Any] = getattr(record, FIELDS, None) or {}
        document |= {k: v for k, v in extra.items() if k not in document}  # a field never hides these
        if record.exc_info:
            document["error"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()


def configure(level: str = "info", as_json: bool = False, stream: IO[str] | None = None, access: bool = True) -> None:
    """Send lakebench's and uvicorn's logs to ``stream`` (stderr) at ``level``, as text or JSON;
    ``access`` False: no line per request (at thousands of requests a second, a cost of its own)."""
    if level not in LEVELS:
        from lakebench.core.errors import ConfigError

        raise ConfigError(f"--log-level must be one of {', '.join(LEVELS)}, got {level!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)  # libraries: warnings and errors only
    logging.getLogger("lakebench").setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(max(logging.INFO, logging.getLevelName(level.upper())))
    logging.getLogger("uvicorn.access").disabled = True  # lakebench.access writes the request lines
    logging.getLogger("lakebench.access").disabled = not access
