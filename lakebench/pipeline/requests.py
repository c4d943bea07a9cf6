"""Decoding an ingest request body into records, with a precise error for what cannot be read.

Whole-request problems (too large, wrong content type, undecodable) raise ``RequestProblem``;
a bad record inside a readable request is that record's problem only.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from lakebench.core.validate import Problem

JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"})


@dataclass
class RequestProblem(Exception):
    """An RFC 9457 problem: the whole request was refused."""

    status: int
    slug: str
    title: str
    detail: str
    headers: dict[str, str] = field(default_factory=dict)

    def document(self, instance: str) -> dict[str, Any]:
        return {
            "type": f"urn:lakebench:problem:{self.slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
        }


@dataclass(frozen=True, slots=True)
class Record:
    position: int
    value: Any  # parsed JSON, or a Problem when the record could not be parsed
    raw_text: str | None = None


def too_large(size: int | str, limit: int, what: str = "request body") -> RequestProblem:
    return RequestProblem(
        413,
        "payload-too-large",
        "Payload Too Large",
        f"the {what} is {size if isinstance(size, str) else f'{size:,}'} bytes; the limit is {limit:,} bytes "
        "(split the batch, or raise --max-request-mb)",
    )


def decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    coding = (encoding or "identity").strip().lower()
    if coding in ("identity", ""):
        return body
    if coding not in ("gzip", "x-gzip"):
        raise RequestProblem(
            415, "unsupported-encoding", "Unsupported Media Type", f"Content-Encoding {coding!r}; use gzip or none"
        )
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise RequestProblem(400, "bad-gzip", "Bad Request", f"the gzip body cannot be decompressed: {exc}") from None
    if len(data) > max_bytes or inflater.unconsumed_tail:
        raise too_large("more than " + f"{max_bytes:,}", max_bytes, "decompressed body")
    if not inflater.eof:
        raise RequestProblem(400, "bad-gzip", "Bad Request", "the gzip body is truncated")
    return data


def media_type(content_type: str | None) -> str:
    if not content_type:
        raise RequestProblem(
            415,
            "unsupported-media-type",
            "Unsupported Media Type",
            "no Content-Type; send application/json (an array of events) or application/x-ndjson",
        )
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind not in JSON_TYPES | NDJSON_TYPES:
        raise RequestProblem(
            415,
            "unsupported-media-type",
            "Unsupported Media Type",
            f"Content-Type {kind!r}; send application/json (an array of events) or application/x-ndjson",
        )
    return kind


def parse_records(body: bytes, kind: str) -> tuple[list[Record], str]:
    """(records, unit): JSON arrays are numbered by index from 0, NDJSON by line from 1."""
    if not body.strip():
        raise RequestProblem(400, "empty-body", "Bad Request", "the request body is empty; send at least one event")
    if kind in JSON_TYPES:
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise RequestProblem(400, "malformed-json", "Bad Request", f"the body is not valid JSON: {exc}") from None
        if isinstance(value, dict):
            return [Record(0, value)], "index"
        if not isinstance(value, list):
            raise RequestProblem(
                400, "not-an-array", "Bad Request", "the JSON body must be an array of event objects (or one object)"
            )
        return [Record(i, item) for i, item in enumerate(value)], "index"
    records: list[Record] = []
    for lineno, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(Record(lineno, orjson.loads(line)))
        except orjson.JSONDecodeError as exc:
            text = line.decode("utf-8", "replace")
            records.append(Record(lineno, Problem("(json)", f"malformed JSON: {exc}"), text))
    return records, "line"
