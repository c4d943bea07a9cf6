"""One ingest request: every record answered, and the answer decided before anything is durable.

Order: parse and validate every record; serialise the dead letters within their bounds; check the
pipeline takes events at all; then write the dead letters, then append the good events to the
write-ahead log (the acknowledgement). A failure before the log append leaves no event accepted
and the whole request can be retried: its dead letters are named by a digest of the request, so
the retry rewrites the same file and a replay derives the same event ids from them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from lakebench.core.models import Event
from lakebench.core.validate import Problem, Rejection, parse_event
from lakebench.pipeline.core import Pipeline
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
    answer = IntakeAnswer()
    good: list[Event] = []
    good_slots: list[int] = []
    letters: list[DeadLetter] = []
    limits = pipeline.config.limits
    for record in records:
        parsed = record.value if isinstance(record.value, Problem) else parse_event(record.value, limits)
        if isinstance(parsed, Event):
            good_slots.append(len(answer.events))
            good.append(parsed)
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
        raw = None if isinstance(record.value, Problem) else record.value
        letters.append(letter(Rejection(record.position, tuple(problems), unit), source, raw, record.raw_text, request))

    content, kept, dropped = dlq.prepare(letters, request_bytes)
    pipeline.admit()  # stopped or full: refuse the whole request before writing anything
    dlq.put_prepared(content, request)
    statuses = pipeline.submit(good) if good else []
    for slot, outcome in zip(good_slots, statuses, strict=True):
        answer.events[slot]["status"] = outcome
    answer.accepted = sum(1 for s in statuses if s == "accepted")
    answer.duplicates = len(statuses) - answer.accepted
    answer.rejected = len(letters)
    answer.dead_letters_stored, answer.dead_letters_dropped = kept, dropped
    pipeline.stats.rejected += len(letters)
    pipeline.stats.dead_letters += kept
    pipeline.stats.dead_letters_dropped += dropped
    return answer
