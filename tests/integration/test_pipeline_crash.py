"""Exactly-once across real crashes: SIGKILL the pipeline process at each dangerous point."""

from __future__ import annotations

import signal
import urllib.error
from pathlib import Path
from typing import Any

import pytest
from ulid import ULID

from lakebench.core.config import Settings
from lakebench.lake.catalog import Lake
from tests.integration.servers import start_server

pytestmark = pytest.mark.slow


def events(n: int, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "event_id": str(ULID()),
            "entity_ns": "en.wikipedia.org",
            "entity_id": f"{tag} {i}",
            "ts": "2025-10-04T12:00:00Z",
            "body": f"body {i} " * 50,
        }
        for i in range(n)
    ]


def table_ids(lake_dir: Path) -> list[str]:
    table = Lake(Settings(lake=str(lake_dir))).table()
    if table.current_snapshot() is None:
        return []
    return list(table.scan(selected_fields=("event_id",)).to_arrow()["event_id"].to_pylist())


@pytest.mark.parametrize("fault", ["files_written", "committed"])
def test_sigkill_during_flush_loses_nothing_and_duplicates_nothing(tmp_path: Path, fault: str) -> None:
    lake, state = tmp_path / "lake", tmp_path / "state"
    batch = events(200, fault)
    server = start_server(lake, state, crash_at=fault)
    try:
        answer = server.post_events(batch)
        assert answer["accepted"] == 200  # acknowledged: in the fsync'd WAL
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            server.post("/v1/flush")  # the process kills itself part-way through the flush
        assert server.proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        server.stop()
    if fault == "committed":
        assert sorted(table_ids(lake)) == sorted(e["event_id"] for e in batch)  # committed, WAL not yet cut

    restarted = start_server(lake, state)
    try:
        retry = restarted.post_events(batch)  # the client never saw the flush finish: it retries
        assert retry["accepted"] == 0 and retry["duplicates"] == 200
        restarted.post("/v1/flush")
    finally:
        restarted.stop()
    ids = table_ids(lake)
    assert len(ids) == len(set(ids)) == 200
    assert set(ids) == {e["event_id"] for e in batch}


def test_sigkill_after_acknowledgement_keeps_every_acknowledged_event(tmp_path: Path) -> None:
    lake, state = tmp_path / "lake", tmp_path / "state"
    first, second = events(50, "first"), events(50, "second")
    server = start_server(lake, state)
    try:
        server.post_events(first)
        server.post("/v1/flush")
        server.post_events(second)  # acknowledged, only in the WAL
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(timeout=30)
    finally:
        server.stop()
    assert set(table_ids(lake)) == {e["event_id"] for e in first}
    restarted = start_server(lake, state)
    try:
        stats = restarted.post("/v1/flush")
        assert stats["committed"] == 50
    finally:
        restarted.stop()
    ids = table_ids(lake)
    assert len(ids) == len(set(ids)) == 100
