"""An ingest request body into records, with a precise error for what cannot be read.

Whole-body problems (too large, wrong content type or encoding, not JSON at all) raise
``BodyError``; a record that cannot be read inside a readable body is that record's problem only:
JSON arrays are parsed whole when they can be, and otherwise cut into their elements, each
parsed on its own, so one element nested too deeply or holding a number no parser represents
does not cost its neighbours.
"""

from __future__ import annotations

import re
import zlib
from typing import Any, Final, Literal, NamedTuple

import msgspec

from lakebench.core.errors import InputError
from lakebench.core.validate import WIRE_BATCH_DECODER, WIRE_DECODER, Problem, WireEvent

JSON_TYPES: Final = frozenset({"application/json"})
NDJSON_TYPES: Final = frozenset(
    {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}
)
MAX_RAW_TEXT: Final = 4096  # of an unreadable record, kept for the dead-letter store
MAX_GZIP_MEMBERS: Final = 100  # cat a.gz b.gz ...: each member's leftover input is copied, so they are few
MAX_RECORDS: Final = 100_000  # records in one request: its answer lists each one
_JSON_SPACE: Final = b" \t\r\n"  # what JSON calls whitespace (not \x0b, \x0c)

BodyErrorKind = Literal[
    "payload-too-large",
    "unsupported-media-type",
    "unsupported-encoding",
    "bad-gzip",
    "malformed-json",
    "empty-body",
    "not-an-array",
    "too-many-records",
]


class BodyError(InputError):
    """The body as a whole cannot be read; ``kind`` says how (the HTTP layer maps it to a status)."""

    def __init__(self, kind: BodyErrorKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class Record(NamedTuple):  # a tuple: made once per record, cheaply
    position: int  # array index from 0, or line number from 1
    value: Any  # a WireEvent (typed), else the parsed JSON value, or a Problem when it could not be parsed
    raw_text: str | None = None  # the record's text when it could not be parsed (truncated)


def too_large(size: int | str, limit: int, what: str, option: str) -> BodyError:
    shown = size if isinstance(size, str) else f"{size:,}"
    return BodyError(
        "payload-too-large",
        f"the {what} is {shown} bytes; the limit is {limit:,} bytes (split the batch, or raise {option})",
    )


def decompress(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """The body decoded: identity, or gzip — every member of a multi-member stream (``pigz``,
    ``cat a.gz b.gz``), never only the first."""
    coding = (encoding or "identity").strip().lower()
    if coding in ("identity", ""):
        return body
    if coding not in ("gzip", "x-gzip"):
        raise BodyError("unsupported-encoding", f"Content-Encoding {coding!r} is not supported; use gzip or none")
    out = bytearray()
    data = body
    members = 0
    while True:
        if members == MAX_GZIP_MEMBERS:
            raise BodyError(
                "bad-gzip", f"the gzip body has more than {MAX_GZIP_MEMBERS} members; compress the batch as one stream"
            )
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(data, max_bytes + 1 - len(out))
        except zlib.error as exc:
            where = f"member {members + 1}" if members else "the body"
            raise BodyError("bad-gzip", f"the gzip body cannot be decompressed ({where}): {exc}") from None
        if len(out) > max_bytes or inflater.unconsumed_tail:
            raise too_large(f"more than {max_bytes:,}", max_bytes, "decompressed body", "--max-decompressed-mb")
        if not inflater.eof:
            raise BodyError("bad-gzip", f"the gzip body is truncated (member {members + 1} does not end)")
        members += 1
        data = inflater.unused_data
        if not data.strip(b"\0"):  # the end, or the zero padding some writers add
            return bytes(out)


def media_type(content_type: str | None) -> str:
    expected = "send application/json (an array of events, or one event) or application/x-ndjson"
    if not content_type:
        raise BodyError("unsupported-media-type", f"no Content-Type; {expected}")
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind not in JSON_TYPES | NDJSON_TYPES:
        raise BodyError("unsupported-media-type", f"Content-Type {kind!r} is not accepted; {expected}")
    return kind


_DECODER: Final = msgspec.json.Decoder()
# The characters that matter to find an array's elements: quotes, escapes, brackets, commas.
_SPECIAL: Final = re.compile(rb'[\\"\[\]{},]')


def _raw(text: bytes) -> str:
    shown = text[:MAX_RAW_TEXT].decode("utf-8", "replace")
    return shown + ("…(truncated)" if len(text) > MAX_RAW_TEXT else "")


def _problem(exc: Exception) -> Problem:
    message = str(exc)
    if "recursion" in message or "depth" in message:
        message = "nested too deeply to read"
    return Problem("(json)", f"malformed JSON: {message}")


def _elements(body: bytes) -> list[bytes] | None:
    """The elements of a top-level JSON array, as byte slices, or None when the body is not one.

    One pass over the special characters, tracking strings and escapes (linear: no pattern that
    could retry from every quote); each element is parsed on its own afterwards.
    """
    start = len(body) - len(body.lstrip(_JSON_SPACE))
    if body[start : start + 1] != b"[":
        return None
    depth = 0
    in_string = False
    skip = -1
    elements: list[bytes] = []
    begin = start + 1
    for match in _SPECIAL.finditer(body, start):
        at = match.start()
        if at == skip:
            continue
        char = body[at]
        if in_string:
            if char == 0x5C:  # a backslash escapes the next character, whatever it is
                skip = at + 1
            elif char == 0x22:
                in_string = False
            continue
        if char == 0x22:
            in_string = True
        elif char in b"[{":
            depth += 1
        elif char in b"]}":
            depth -= 1
            if depth == 0:
                last = body[begin:at].strip(_JSON_SPACE)
                if last or elements:
                    elements.append(last)
                return elements if not body[at + 1 :].strip(_JSON_SPACE) else None
            if depth < 0:
                return None
        elif char == 0x2C and depth == 1:
            elements.append(body[begin:at].strip(_JSON_SPACE))
            begin = at + 1
            if len(elements) > MAX_RECORDS:
                raise _too_many()
        elif char == 0x5C:
            return None  # a backslash outside a string: not JSON
    return None


def _too_many() -> BodyError:
    return BodyError(
        "too-many-records", f"the request holds more than {MAX_RECORDS:,} records; split it into smaller batches"
    )


def parse_json(body: bytes) -> list[Record]:
    """A JSON array of records (numbered from 0), or one object (record 0).

    Well-formed records are decoded typed (``WireEvent``) in one pass; a body where any record
    does not fit is read again as plain JSON, each record to be judged on its own."""
    try:
        typed = WIRE_BATCH_DECODER.decode(body)
    except (msgspec.DecodeError, RecursionError):
        pass
    else:
        if isinstance(typed, WireEvent):
            return [Record(0, typed)]
        if len(typed) > MAX_RECORDS:
            raise _too_many()
        return [Record(i, item) for i, item in enumerate(typed)]
    try:
        value = _DECODER.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        elements = _elements(body)
        if elements is None:
            raise BodyError("malformed-json", f"the body is not valid JSON: {_problem(exc).message}") from None
        return [_one(i, element) for i, element in enumerate(elements)]
    if isinstance(value, dict):
        return [Record(0, _typed(value))]
    if not isinstance(value, list):
        raise BodyError("not-an-array", "the JSON body must be an array of event objects (or one object)")
    if len(value) > MAX_RECORDS:
        raise _too_many()
    return [Record(i, _typed(item)) for i, item in enumerate(value)]


def _typed(value: Any) -> Any:
    """A record as a WireEvent when it fits one (the fast path), else as it is."""
    try:
        return msgspec.convert(value, WireEvent)
    except msgspec.ValidationError:
        return value


def _one(position: int, text: bytes) -> Record:
    try:
        return Record(position, WIRE_DECODER.decode(text))
    except (msgspec.DecodeError, RecursionError):
        pass
    try:
        return Record(position, _DECODER.decode(text))
    except (msgspec.DecodeError, RecursionError) as exc:
        return Record(position, _problem(exc), _raw(text))


def parse_ndjson(body: bytes) -> list[Record]:
    """One record per non-blank line, numbered from 1."""
    if body.count(b"\n") > MAX_RECORDS and sum(1 for line in body.split(b"\n") if line.strip()) > MAX_RECORDS:
        raise _too_many()
    return [_one(n, line) for n, line in enumerate(body.split(b"\n"), start=1) if line.strip()]


def parse_records(body: bytes, kind: str) -> tuple[list[Record], str]:
    """(records, unit): JSON arrays are numbered by index from 0, NDJSON by line from 1."""
    if not body.strip():
        raise BodyError("empty-body", "the request body is empty; send at least one event")
    if kind in JSON_TYPES:
        return parse_json(body), "index"
    return parse_ndjson(body), "line"
