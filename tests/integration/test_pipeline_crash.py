"""Exactly-once across real crashes: SIGKILL the pipeline at each dangerous point, with one worker
process or several behind the port (each with its own log, all committing to the one table)."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from ulid import ULID

from lakebench.core.config import Settings
from lakebench.lake.catalog import Lake
from lakebench.storage.embedded import free_port
from tests.integration.servers import REPO, Server, start_server

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


def post_in_requests(server: Server, batch: list[dict[str, Any]], per_request: int) -> dict[str, int]:
    """Several requests, each on a connection of its own: with several workers they spread."""
    totals = {"accepted": 0, "duplicates": 0}
    for i in range(0, len(batch), per_request):
        answer = server.post_events(batch[i : i + per_request])
        totals["accepted"] += answer["accepted"]
        totals["duplicates"] += answer["duplicates"]
    return totals


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("fault", ["files_written", "committed"])
def test_sigkill_during_flush_loses_nothing_and_duplicates_nothing(tmp_path: Path, fault: str, workers: int) -> None:
    lake, state = tmp_path / "lake", tmp_path / "state"
    batch = events(200, fault)
    server = start_server(lake, state, crash_at=fault, workers=workers)
    try:
        assert post_in_requests(server, batch, 25)["accepted"] == 200  # acknowledged: in an fsync'd log
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            server.post("/v1/flush")  # the worker that flushes kills itself part-way through
        if workers == 1:
            assert server.proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        server.crash()  # and the machine goes down with whatever else was running
    committed = table_ids(lake)
    assert len(committed) == len(set(committed)) and set(committed) <= {e["event_id"] for e in batch}
    if fault == "committed" and workers == 1:
        assert sorted(committed) == sorted(e["event_id"] for e in batch)  # committed, WAL not yet cut

    restarted = start_server(lake, state, workers=workers)
    try:
        # The client never saw the flush finish: it retries, maybe on another worker than before.
        retry = post_in_requests(restarted, batch, 25)
        assert retry["accepted"] + retry["duplicates"] == 200
        if workers == 1:
            assert retry["duplicates"] == 200
        restarted.post("/v1/flush")
    finally:
        restarted.stop()
    ids = table_ids(lake)
    assert len(ids) == len(set(ids)) == 200  # each event once, whichever worker took the retry
    assert set(ids) == {e["event_id"] for e in batch}


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_after_acknowledgement_keeps_every_acknowledged_event(tmp_path: Path, workers: int) -> None:
    lake, state = tmp_path / "lake", tmp_path / "state"
    first, second = events(50, "first"), events(50, "second")
    server = start_server(lake, state, workers=workers)
    try:
        post_in_requests(server, first, 10)
        server.post("/v1/flush")
        post_in_requests(server, second, 10)  # acknowledged, only in the workers' logs
    finally:
        server.crash()
    assert set(table_ids(lake)) == {e["event_id"] for e in first}
    restarted = start_server(lake, state, workers=workers)
    try:
        stats = restarted.post("/v1/flush")  # every worker's log replayed and committed
        assert stats["committed"] == 50
    finally:
        restarted.stop()
    ids = table_ids(lake)
    assert len(ids) == len(set(ids)) == 100


def test_sigkill_during_group_commits_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """One event per request from many connections at once, so requests share fsyncs; the server
    (two workers) is killed while they are in flight. Every acknowledged event is in the table
    after a restart, once; an event sent but not acknowledged may be there or not, once at most."""
    lake, state = tmp_path / "lake", tmp_path / "state"
    server = start_server(lake, state, workers=2)
    host, port = server.url.removeprefix("http://").split(":")
    acked: list[str] = []
    sent: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def client(n: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            send_until_stopped(conn, n)
        finally:
            conn.close()

    def send_until_stopped(conn: http.client.HTTPConnection, n: int) -> None:
        i = 0
        while not stop.is_set():
            event = events(1, f"client {n} event {i}")[0]
            i += 1
            with lock:
                sent.append(event["event_id"])
            try:
                conn.request("POST", "/v1/events", json.dumps(event), {"Content-Type": "application/json"})
                response = conn.getresponse()
                answer = json.loads(response.read())
            except (OSError, http.client.HTTPException, ValueError):
                return  # the server went down mid-request: not acknowledged
            if response.status == 200 and answer["accepted"] == 1:
                with lock:
                    acked.append(event["event_id"])

    clients = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for t in clients:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = [json.loads(urllib.request.urlopen(server.url + "/v1/pipeline/stats").read()) for _ in range(4)]
    server.crash()  # mid-flight: some requests are in a group commit, some not yet answered
    stop.set()
    for t in clients:
        t.join()
    assert len(acked) >= 300, "the load did not get going"
    assert any(s["wal_syncs"] < s["acknowledged_requests"] for s in stats), stats  # fsyncs were shared

    restarted = start_server(lake, state, workers=2)
    try:
        restarted.post("/v1/flush")
    finally:
        restarted.stop()
    ids = table_ids(lake)
    assert len(ids) == len(set(ids))
    assert set(acked) <= set(ids), f"{len(set(acked) - set(ids))} acknowledged events lost"
    assert set(ids) <= set(sent)


def test_a_worker_count_that_would_strand_a_log_is_refused(tmp_path: Path) -> None:
    lake, state = tmp_path / "lake", tmp_path / "state"
    server = start_server(lake, state, workers=2)
    try:
        post_in_requests(server, events(20, "stranded"), 5)  # in the two workers' logs only
    finally:
        server.crash()
    command = [sys.executable, "-m", "lakebench.cli", "serve", "pipeline", "--no-auth", "--port", str(free_port())]
    command += ["--lake", str(lake), "--state-dir", str(state)]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "holds acknowledged events that are not committed" in refused.stderr
    restarted = start_server(lake, state, workers=2)  # as they ran: their logs are committed
    try:
        assert restarted.post("/v1/flush")["committed"] == 20
    finally:
        restarted.stop()
