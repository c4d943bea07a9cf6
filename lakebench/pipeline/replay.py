"""Re-submitting dead letters: validate again, write what now passes, keep what still fails."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from lakebench.core.errors import StorageUnavailable
from lakebench.core.models import Event, Limits
from lakebench.core.validate import parse_event
from lakebench.lake.catalog import Lake
from lakebench.lake.writer import LakeWriter
from lakebench.pipeline.dlq import DeadLetter, DeadLetters


def _post(url: str, token: str | None, events: list[Event]) -> None:
    body = "\n".join(e.to_json() for e in events).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/v1/events", data=body, method="POST", headers={"Content-Type": "application/x-ndjson"}
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    except OSError as exc:
        raise StorageUnavailable(f"re-submitting to {url} failed: {exc}") from exc
    if answer.get("rejected"):
        raise StorageUnavailable(f"{url} rejected {answer['rejected']} re-validated events; nothing was removed")


def replay_dead_letters(
    lake: Lake, limits: Limits, *, url: str | None = None, token: str | None = None
) -> dict[str, Any]:
    letters = DeadLetters(lake.store)
    replayed = still = 0
    for key in letters.files():
        passing: list[Event] = []
        remaining: list[DeadLetter] = []
        for entry in letters.read(key):
            parsed = parse_event(entry.record, limits) if entry.record is not None else None
            if isinstance(parsed, Event):
                passing.append(parsed)
            else:
                remaining.append(entry)
        if passing:
            if url:
                _post(url, token, passing)
            else:
                LakeWriter(lake).write(passing, summary={"lakebench.source": f"dlq:{key}"})
        letters.replace(key, remaining)  # only after the passing ones are written
        replayed += len(passing)
        still += len(remaining)
    return {"replayed": replayed, "still_rejected": still}
