"""Turn untrusted records into events, reporting every problem with its field path.

Validation never stops at the first problem: a record gets the full list, so one round trip is
enough to fix it. A batch gets one result per record (``validate_batch``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import orjson

from lakebench.core.ids import new_event_id, normalise_ulid
from lakebench.core.models import EPOCH, EVENT_TYPES, MICROSECOND, Event, EventRow, EventType, Limits

# A host-like namespace: DNS labels of letters, digits and hyphens (underscores tolerated), dot-separated.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_NAMESPACE_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_KNOWN = frozenset(("event_id", "entity_ns", "entity_id", "ts", "type", "title", "body", "version", "attributes"))
_MIN_TS = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_TS = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with one record: where (a field path) and what."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that was not accepted: its position in the input and every problem found."""

    position: int  # 1-based line number for line-oriented inputs, else the record index
    problems: tuple[Problem, ...]
    unit: str = "line"

    def __str__(self) -> str:
        details = "; ".join(str(p) for p in self.problems)
        return f"{self.unit} {self.position}: {details}"


@dataclass(slots=True)
class BatchResult:
    accepted: list[Event] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def _utf8_len(value: str, path: str, problems: list[Problem]) -> int | None:
    if value.isascii():  # the common case, checked in C: bytes == characters, no surrogates
        return len(value)
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        problems.append(Problem(path, f"is not valid Unicode (lone surrogate at character {exc.start})"))
        return None


def _text(raw: Mapping[str, Any], name: str, problems: list[Problem], *, required: bool, max_bytes: int) -> str | None:
    if name not in raw or raw[name] is None:
        if required:
            problems.append(Problem(name, "required field is missing"))
        return None
    value = raw[name]
    if not isinstance(value, str):
        problems.append(Problem(name, f"must be a string, got {_type_name(value)}"))
        return None
    size = _utf8_len(value, name, problems)
    if size is not None and size > max_bytes:
        problems.append(Problem(name, f"is {size:,} bytes, over the limit of {max_bytes:,} bytes"))
        return None
    return value


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what JSON readers downstream (orjson, ClickHouse, DuckDB) hold


def _shape_problem(value: dict[str, Any], max_depth: int) -> Problem | None:
    """The first thing in a JSON object no reader downstream can hold: nesting deeper than
    ``max_depth``, an integer outside 64 bits, a non-finite number. Iterative: depth is unbounded."""
    stack: list[tuple[Any, str, int]] = [(value, "attributes", 1)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > max_depth:
                return Problem(path[:200], f"is nested deeper than {max_depth} levels")
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in items:
                stack.append((child, f"{path}.{key}" if isinstance(node, dict) else f"{path}[{key}]", depth + 1))
        elif isinstance(node, bool) or node is None or isinstance(node, str):
            continue
        elif isinstance(node, int) and not _INT_MIN <= node <= _INT_MAX:
            return Problem(path[:200], "is an integer outside the 64-bit range (send it as a string)")
        elif isinstance(node, float) and not math.isfinite(node):
            return Problem(path[:200], "is not a finite number")
    return None


def parse_timestamp(value: object) -> datetime | str:
    """A UTC datetime from an ISO-8601 string or epoch seconds; a message string when invalid."""
    if isinstance(value, bool) or value is None:
        return f"must be an ISO-8601 timestamp or epoch seconds, got {_type_name(value)}"
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return "must be a finite number of epoch seconds"
        try:
            parsed = datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return f"epoch seconds {value} is out of range"
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return f"{value[:60]!r} is not an ISO-8601 timestamp (e.g. 2025-10-04T12:00:00Z)"
        try:
            parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00, 9999-12-31T23:00-05:00: outside datetime in UTC
            return f"{value[:60]!r} is outside 1970-01-01..9999-12-31 in UTC"
    else:
        return f"must be an ISO-8601 timestamp or epoch seconds, got {_type_name(value)}"
    if not _MIN_TS <= parsed <= _MAX_TS:
        return f"{parsed.isoformat()} is outside 1970-01-01..9999-12-31"
    return parsed


def parse_event(raw: object, limits: Limits = Limits()) -> Event | list[Problem]:
    """Validate one record; an Event, or every problem found in it."""
    if not isinstance(raw, Mapping):
        return [Problem("(record)", f"must be a JSON object, got {_type_name(raw)}")]
    problems: list[Problem] = []
    unknown = sorted(str(k) for k in raw if k not in _KNOWN)
    for name in unknown:
        problems.append(Problem(name, "unknown field (free-form data belongs under 'attributes')"))

    event_id: str | None = None
    raw_id = raw.get("event_id")
    if raw_id is not None:
        if not isinstance(raw_id, str):
            problems.append(Problem("event_id", f"must be a ULID string, got {_type_name(raw_id)}"))
        elif (event_id := normalise_ulid(raw_id)) is None:
            problems.append(Problem("event_id", f"{raw_id[:40]!r} is not a ULID (26 Crockford base32 chars)"))

    namespace = _text(raw, "entity_ns", problems, required=True, max_bytes=253)
    if namespace is not None:
        namespace = namespace.strip().lower()
        if not _NAMESPACE_RE.match(namespace):
            problems.append(Problem("entity_ns", f"{namespace[:60]!r} is not host-like (e.g. 'en.wikipedia.org')"))
    entity_id = _text(raw, "entity_id", problems, required=True, max_bytes=limits.max_entity_id_bytes)
    if entity_id is not None and (entity_id == "" or entity_id.isspace()):
        problems.append(Problem("entity_id", "must not be empty"))
    elif entity_id is not None and "\x00" in entity_id:
        problems.append(Problem("entity_id", "must not contain NUL characters"))

    ts: datetime | None = None
    if raw.get("ts") is None:
        problems.append(Problem("ts", "required field is missing"))
    else:
        parsed = parse_timestamp(raw["ts"])
        if isinstance(parsed, str):
            problems.append(Problem("ts", parsed))
        else:
            ts = parsed

    event_type: EventType = "update"
    raw_type = raw.get("type")
    if raw_type is not None:
        if raw_type in EVENT_TYPES:
            event_type = raw_type
        else:
            shown = repr(raw_type) if len(repr(raw_type)) <= 60 else repr(raw_type)[:60] + "…"
            problems.append(Problem("type", f"must be one of {', '.join(EVENT_TYPES)}, got {shown}"))

    title = _text(raw, "title", problems, required=False, max_bytes=limits.max_title_bytes)
    body = _text(raw, "body", problems, required=False, max_bytes=limits.max_body_bytes)

    version = 1
    raw_version = raw.get("version")
    if raw_version is not None:
        if isinstance(raw_version, bool) or not isinstance(raw_version, int):
            problems.append(Problem("version", f"must be an integer, got {_type_name(raw_version)}"))
        elif not 0 <= raw_version < 2**63:
            problems.append(Problem("version", f"must be between 0 and 2^63-1, got {raw_version}"))
        else:
            version = raw_version

    attributes: dict[str, Any] = {}
    raw_attributes = raw.get("attributes")
    if raw_attributes is not None:
        if not isinstance(raw_attributes, dict):
            problems.append(Problem("attributes", f"must be an object, got {_type_name(raw_attributes)}"))
        elif (shape := _shape_problem(raw_attributes, limits.max_attributes_depth)) is not None:
            problems.append(shape)
        else:
            try:
                encoded = orjson.dumps(raw_attributes)
            except orjson.JSONEncodeError as exc:
                problems.append(Problem("attributes", f"is not JSON-serialisable: {exc}"))
            else:
                if len(encoded) > limits.max_attributes_bytes:
                    problems.append(
                        Problem(
                            "attributes",
                            f"is {len(encoded):,} bytes as JSON, over the limit of "
                            f"{limits.max_attributes_bytes:,} bytes",
                        )
                    )
                else:
                    attributes = raw_attributes

    if problems or namespace is None or entity_id is None or ts is None:
        return problems
    return Event(
        event_id=event_id or new_event_id(ts),
        entity_ns=namespace,
        entity_id=entity_id,
        ts=ts,
        type=event_type,
        title=title,
        body=body,
        version=version,
        attributes=attributes,
    )


def validate_batch(records: Iterable[object], limits: Limits = Limits(), *, unit: str = "record") -> BatchResult:
    """One result per record: accepted events in order, rejections with their 1-based position."""
    result = BatchResult()
    for position, raw in enumerate(records, start=1):
        parsed = parse_event(raw, limits)
        if isinstance(parsed, Event):
            result.accepted.append(parsed)
        else:
            result.rejected.append(Rejection(position, tuple(parsed), unit))
    return result


# -- the fast path: typed decoding straight from bytes (msgspec), then the same rules ---------------


class WireEvent(msgspec.Struct, forbid_unknown_fields=True):
    """An event record as typed JSON: what a well-formed record decodes into in one C pass.

    A record that does not fit (a missing key, a wrong type, an unknown field) is not an error
    here: it is read again as plain JSON and judged by ``parse_event``, which names every problem.
    """

    entity_ns: str
    entity_id: str
    ts: str | int | float
    event_id: str | None = None
    type: str | None = None
    title: str | None = None
    body: str | None = None
    version: int | None = None
    attributes: dict[str, Any] | None = None


WIRE_DECODER: Final = msgspec.json.Decoder(WireEvent)
WIRE_BATCH_DECODER: Final = msgspec.json.Decoder(list[WireEvent] | WireEvent)


def _fits(value: str | None, max_bytes: int) -> bool:
    """Whether a text is valid Unicode of at most ``max_bytes`` UTF-8 bytes (None fits)."""
    if value is None:
        return True
    if value.isascii():
        return len(value) <= max_bytes
    if len(value) > max_bytes:  # every character is at least one byte
        return False
    try:
        return len(value.encode("utf-8")) <= max_bytes
    except UnicodeEncodeError:
        return False


def _wire_row(wire: WireEvent, limits: Limits) -> EventRow | None:
    """The row ``parse_event`` would make of this record, or None when any rule might not hold
    (then ``parse_event`` decides, and words the problems). Never accepts what it would refuse."""
    ns, entity_id, title, body = wire.entity_ns, wire.entity_id, wire.title, wire.body
    if not (_fits(ns, 253) and _fits(entity_id, limits.max_entity_id_bytes)):
        return None
    if not entity_id or entity_id.isspace() or "\x00" in entity_id:
        return None
    if not (_fits(title, limits.max_title_bytes) and _fits(body, limits.max_body_bytes)):
        return None
    ns = ns.strip().lower()
    if not _NAMESPACE_RE.match(ns):
        return None
    parsed = parse_timestamp(wire.ts)
    if isinstance(parsed, str):
        return None
    kind = wire.type if wire.type is not None else "update"
    if kind not in EVENT_TYPES:
        return None
    version = wire.version if wire.version is not None else 1
    if not 0 <= version < 2**63:
        return None
    attributes: str | None = None
    if wire.attributes:
        try:  # refuses integers outside 64 bits, as _shape_problem; JSON has no non-finite numbers
            encoded = orjson.dumps(wire.attributes)
        except orjson.JSONEncodeError:
            return None
        if len(encoded) > limits.max_attributes_bytes:
            return None
        # Nesting can only be too deep with more brackets than levels allowed: walk it only then.
        brackets = encoded.count(b"{") + encoded.count(b"[")
        if brackets > limits.max_attributes_depth and _shape_problem(wire.attributes, limits.max_attributes_depth):
            return None
        attributes = encoded.decode()
    event_id = new_event_id(parsed) if wire.event_id is None else normalise_ulid(wire.event_id)
    if event_id is None:
        return None
    return EventRow(event_id, ns, entity_id, (parsed - EPOCH) // MICROSECOND, kind, title, body, version, attributes)


def parse_wire(wire: WireEvent, limits: Limits = Limits()) -> EventRow | list[Problem]:
    """``parse_event`` for a typed record, as a row: the same acceptance, the same problems."""
    row = _wire_row(wire, limits)
    if row is not None:
        return row
    parsed = parse_event(msgspec.structs.asdict(wire), limits)
    return parsed.row() if isinstance(parsed, Event) else parsed
