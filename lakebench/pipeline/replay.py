"""Re-submitting dead letters: validate again, write what now passes, keep what still fails.

Idempotent: an event that arrived without an ``event_id`` gets one derived from its dead letter
(when and where it was received, its place in the request), the same on every replay; each dead
letter file is written in one commit whose snapshot names the file and the ids it wrote, and a
replay that finds that commit already made (a crash between the commit and the removal of the
file) does not write it again. Re-submitted to a pipeline (``--url``), the stable ids make its
dedupe window answer ``duplicate``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from lakebench.core.errors import InputError, StorageUnavailable
from lakebench.core.ids import stable_event_id
from lakebench.core.models import Event, Limits
from lakebench.core.validate import parse_event
from lakebench.lake.catalog import Lake
from lakebench.lake.writer import LakeWriter
from lakebench.pipeline.dlq import DeadLetter, DeadLetters

if TYPE_CHECKING:
    from pyiceberg.table import Table

SUMMARY_KEY = "lakebench.dlq-replay"


MAX_POST_BYTES = 4_000_000  # under the ingest service's default request limit (5 MB)


def _post(url: str, token: str | None, events: list[Event]) -> None:
    """Send events to a running pipeline, in requests under its size limit."""
    batch: list[bytes] = []
    size = 0
    for line in (e.to_json().encode() for e in events):
        if batch and size + len(line) + 1 > MAX_POST_BYTES:
            _post_batch(url, token, batch)
            batch, size = [], 0
        batch.append(line)
        size += len(line) + 1
    if batch:
        _post_batch(url, token, batch)


def _post_batch(url: str, token: str | None, lines: list[bytes]) -> None:
    request = urllib.request.Request(
        url.rstrip("/") + "/v1/events",
        data=b"\n".join(lines),
        method="POST",
        headers={"Content-Type": "application/x-ndjson"},
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode("utf-8", "replace")
        if exc.code >= 500 or exc.code in (408, 429):
            raise StorageUnavailable(f"{url} answered {exc.code}: {detail}; nothing was removed, retry") from None
        raise InputError(f"{url} refused the dead letters ({exc.code}): {detail}; nothing was removed") from None
    except OSError as exc:
        raise StorageUnavailable(f"re-submitting to {url} failed: {exc}; nothing was removed, retry") from exc
    if answer.get("rejected"):
        raise InputError(
            f"{url} rejected {answer['rejected']} re-validated events (its limits differ?); nothing was removed"
        )


def _revalidate(entry: DeadLetter, limits: Limits) -> Event | None:
    if entry.record is None:
        return None
    parsed = parse_event(entry.record, limits)
    if not isinstance(parsed, Event):
        return None
    if isinstance(entry.record, dict) and entry.record.get("event_id") is None:
        parsed = dataclasses.replace(parsed, event_id=stable_event_id(parsed.ts, "dlq", *entry.identity))
    return parsed


def _marker(key: str, events: list[Event]) -> str:
    digest = hashlib.blake2b("\n".join(sorted(e.event_id for e in events)).encode(), digest_size=12).hexdigest()
    return f"{key}#{digest}"


def _already_written(marker: str) -> Any:
    def check(table: Table) -> bool:
        return any(s.summary is not None and s.summary.get(SUMMARY_KEY) == marker for s in table.snapshots())

    return check


def replay_dead_letters(
    lake: Lake, limits: Limits, *, url: str | None = None, token: str | None = None
) -> dict[str, Any]:
    letters = DeadLetters(lake.store)
    replayed = still = 0
    for key in letters.files():
        passing: list[Event] = []
        remaining: list[DeadLetter] = []
        for entry in letters.read(key):
            event = _revalidate(entry, limits)
            if event is None:
                remaining.append(entry)
            else:
                passing.append(event)
        if passing:
            if url:
                _post(url, token, passing)
            else:
                marker = _marker(key, passing)
                LakeWriter(lake).write(
                    passing, summary={SUMMARY_KEY: marker}, already_committed=_already_written(marker)
                )
        letters.replace(key, remaining)  # only after the passing ones are written
        replayed += len(passing)
        still += len(remaining)
    return {"replayed": replayed, "still_rejected": still}
