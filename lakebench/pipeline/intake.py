"""One ingest request: every record answered, and the answer decided before anything is durable.

Order: parse and validate every record; serialise the dead letters within their bounds; check the
pipeline takes events at all; then write the dead letters, then append the good events to the
write-ahead log (the acknowledgement). A failure before the log append leaves no event accepted
and the whole request can be retried: its dead letters are named by a digest of the request, so
the retry rewrites the same file and a replay derives the same event ids from them.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from typing import Any

import msgspec

from lakebench.core.models import Event, EventRow, Limits
from lakebench.core.validate import Problem, Rejection, WireEvent, parse_event, parse_wire
from lakebench.pipeline.core import Pipeline, Status
from lakebench.pipeline.decode import Record
from lakebench.pipeline.dlq import DeadLetter, DeadLetters, letter


@dataclass(slots=True)
class IntakeAnswer:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    dead_letters_stored: int = 0
    dead_letters_dropped: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def all_rejected(self) -> bool:
        return self.rejected > 0 and self.accepted + self.duplicates == 0

    def document(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "dead_letters": {"stored": self.dead_letters_stored, "dropped": self.dead_letters_dropped},
            "events": self.events,
        }


def request_digest(body: bytes, encoding: str | None = None) -> str:
    """What names a request's dead letters: a retry of the same request names the same ones."""
    return hashlib.blake2b(body + b"\0" + (encoding or "").encode(), digest_size=12).hexdigest()


@dataclass(slots=True)
class Judged:
    """A request's records judged: the answer so far, the good rows (and their slots in it), the dead letters."""

    answer: IntakeAnswer
    rows: list[EventRow]
    slots: list[int]
    letters: list[DeadLetter]


def judge(records: list[Record], unit: str, limits: Limits, source: str, request: str | None = None) -> Judged:
    """Validate every record (CPU only: nothing is written)."""
    answer = IntakeAnswer()
    rows: list[EventRow] = []
    slots: list[int] = []
    letters: list[DeadLetter] = []
    for record in records:
        value = record.value
        if isinstance(value, WireEvent):
            parsed: EventRow | Problem | list[Problem] = parse_wire(value, limits)
        elif isinstance(value, Problem):
            parsed = value
        else:
            event = parse_event(value, limits)
            parsed = event.row() if isinstance(event, Event) else event
        if isinstance(parsed, EventRow):
            slots.append(len(answer.events))
            rows.append(parsed)
            answer.events.append({unit: record.position, "status": "accepted", "event_id": parsed.event_id})
            continue
        problems = [parsed] if isinstance(parsed, Problem) else parsed
        answer.events.append(
            {
                unit: record.position,
                "status": "rejected",
                "errors": [{"field": p.field, "message": p.message} for p in problems],
            }
        )
        raw = None if isinstance(value, Problem) else _plain(value)
        letters.append(letter(Rejection(record.position, tuple(problems), unit), source, raw, record.raw_text, request))
    return Judged(answer, rows, slots, letters)


def _plain(value: object) -> object:
    """A record as the client sent it, for its dead letter."""
    if isinstance(value, WireEvent):  # the fields it sent (a null and an absent field mean the same)
        return {k: v for k, v in msgspec.structs.asdict(value).items() if v is not None}
    return value


def _letters(pipeline: Pipeline, dlq: DeadLetters, judged: Judged, request_bytes: int) -> tuple[bytes, int, int]:
    """The dead letters' file within its bounds; then refuse the whole request, before anything is
    written, if the pipeline takes no events now (stopped, or full)."""
    content, kept, dropped = dlq.prepare(judged.letters, request_bytes) if judged.letters else (b"", 0, 0)
    pipeline.admit()
    return content, kept, dropped


def _conclude(pipeline: Pipeline, judged: Judged, statuses: list[Status], kept: int, dropped: int) -> IntakeAnswer:
    answer = judged.answer
    for slot, outcome in zip(judged.slots, statuses, strict=True):
        answer.events[slot]["status"] = outcome
    answer.accepted = sum(1 for s in statuses if s == "accepted")
    answer.duplicates = len(statuses) - answer.accepted
    answer.rejected = len(judged.letters)
    answer.dead_letters_stored, answer.dead_letters_dropped = kept, dropped
    pipeline.stats.rejected += len(judged.letters)
    pipeline.stats.dead_letters += kept
    pipeline.stats.dead_letters_dropped += dropped
    return answer


def take_in(
    pipeline: Pipeline,
    dlq: DeadLetters,
    records: list[Record],
    unit: str,
    source: str,
    request_bytes: int,
    request: str | None = None,
) -> IntakeAnswer:
    """Answer every record. ``request`` (a digest of the body) names its dead letters: a client's
    retry of a request that failed after they were written rewrites them instead of adding more."""
    judged = judge(records, unit, pipeline.config.limits, source, request)
    content, kept, dropped = _letters(pipeline, dlq, judged, request_bytes)
    dlq.put_prepared(content, request)
    statuses = pipeline.submit(judged.rows) if judged.rows else []
    return _conclude(pipeline, judged, statuses, kept, dropped)


async def take_in_async(
    pipeline: Pipeline,
    dlq: DeadLetters,
    judged: Judged,
    request_bytes: int,
    request: str | None = None,
) -> IntakeAnswer:
    """``take_in`` on an event loop, for records already judged: the dead letters are written on a
    thread, the wait for the log's fsync holds none."""
    content, kept, dropped = _letters(pipeline, dlq, judged, request_bytes)
    if content:
        await asyncio.to_thread(dlq.put_prepared, content, request)
    statuses = await pipeline.submit_async(judged.rows) if judged.rows else []
    return _conclude(pipeline, judged, statuses, kept, dropped)
