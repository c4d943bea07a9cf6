"""Ingest under the inputs and faults that used to lose or misreport data: multi-member gzip, deep
nesting, numbers past 64 bits, stalled bodies, floods of rejects, a store that fails for good or
for a while, and a server error that must not leak its cause."""

from __future__ import annotations

import gzip
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from ulid import ULID

from lakebench.api.app import create_app
from lakebench.api.ingest import IngestSettings
from lakebench.core.config import Settings
from lakebench.lake.catalog import Lake
from lakebench.lake.schema import arrow_to_events
from lakebench.pipeline.core import Pipeline, PipelineConfig
from lakebench.pipeline.dlq import REQUEST_ALLOWANCE, DeadLetters
from lakebench.storage.faulty import FaultyStore
from tests.integration.servers import start_server

JSON = {"Content-Type": "application/json"}
NDJSON = {"Content-Type": "application/x-ndjson"}


def good(entity_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": str(ULID()),
        "entity_ns": "en.wikipedia.org",
        "entity_id": entity_id or f"Page {ULID()}",
        "ts": "2025-10-04T12:00:00Z",
        "body": "text",
        **extra,
    }


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[Lake]:
    with Lake(Settings(lake=str(tmp_path / "lake"))) as opened:
        yield opened


AppFactory = Callable[..., TestClient]


@pytest.fixture
def app_for(lake: Lake, tmp_path: Path) -> Iterator[AppFactory]:
    """A server over the lake (no token), with pipeline and dead-letter settings a test chooses."""
    clients: list[TestClient] = []

    def make(dlq: DeadLetters | None = None, **config: Any) -> TestClient:
        settings = {"state_dir": tmp_path / "state", "roll_interval_s": 3600, "idle_s": 3600, **config}
        pipeline = Pipeline(lake, PipelineConfig(**settings))
        client = TestClient(create_app(lake, pipeline, IngestSettings(token=None), dlq), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def table_ids(lake: Lake) -> list[str]:
    table = lake.table()
    return [] if table.current_snapshot() is None else [e.event_id for e in arrow_to_events(table.scan().to_arrow())]


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# -- bodies ----------------------------------------------------------------------------------------


def test_every_gzip_member_is_read(app_for: AppFactory, lake: Lake) -> None:
    client = app_for()
    events = [good() for _ in range(6)]
    lines = [json.dumps(e).encode() + b"\n" for e in events]
    body = b"".join(gzip.compress(b"".join(lines[i : i + 2])) for i in range(0, 6, 2))  # cat a.gz b.gz c.gz
    answer = client.post("/v1/events", content=body, headers={**NDJSON, "Content-Encoding": "gzip"}).json()
    assert answer["accepted"] == 6
    array = [json.dumps(e).encode() for e in [good(), good()]]
    split = gzip.compress(b"[" + array[0] + b",") + gzip.compress(array[1] + b"]")  # one JSON array, two members
    assert (
        client.post("/v1/events", content=split, headers={**JSON, "Content-Encoding": "gzip"}).json()["accepted"] == 2
    )
    assert client.post("/v1/flush").json()["committed"] == 8


def test_a_damaged_later_member_refuses_the_whole_request(app_for: AppFactory) -> None:
    client = app_for()
    first = gzip.compress(json.dumps(good()).encode() + b"\n")
    second = gzip.compress(json.dumps(good()).encode() + b"\n")
    for body, reason in [(first + second[:-6], "truncated"), (first + b"\x1f\x8bgarbage", "member 2")]:
        response = client.post("/v1/events", content=body, headers={**NDJSON, "Content-Encoding": "gzip"})
        assert response.status_code == 400 and reason in response.json()["detail"], response.text
    stats = client.get("/v1/pipeline/stats").json()
    assert stats["accepted"] == 0 and stats["buffered_events"] == 0  # never a partial accept


def test_deep_nesting_and_big_numbers_reject_only_their_event(app_for: AppFactory, lake: Lake) -> None:
    client = app_for()
    before, after = good(), good()
    bad = [
        good(attributes=nested(40)),  # past the attribute depth limit, within the parser's
        good(attributes=nested(300)),  # past what orjson can write back (the WAL, the dead letters)
        good(title=nested(300)),  # a wrong type, nested deeply: its dead letter must still be written
        good(attributes={"n": 2**70}),  # an integer no 64-bit reader holds
        good(attributes={"ok": 2**63, "n": -(2**63) - 1}),
    ]
    response = client.post("/v1/events", content=json.dumps([before, *bad, after]), headers=JSON)
    assert response.status_code == 200, response.text
    answer = response.json()
    statuses = [(e["index"], e["status"]) for e in answer["events"]]
    assert statuses == [(0, "accepted"), *((i, "rejected") for i in range(1, 6)), (6, "accepted")]
    fields = [e["errors"][0]["field"] for e in answer["events"][1:6]]
    assert fields[0].startswith("attributes.a.a") and fields[1].startswith("attributes.a.a")
    assert fields[2:] == ["title", "attributes.n", "attributes.n"]
    assert answer["dead_letters"] == {"stored": 5, "dropped": 0}
    letters = [entry for _, entry in DeadLetters(lake.store).entries()]
    assert len(letters) == 5 and any(entry.raw_text and "not stored as JSON" in entry.raw_text for entry in letters)
    assert client.post("/v1/flush").json()["committed"] == 2
    assert sorted(table_ids(lake)) == sorted([before["event_id"], after["event_id"]])


def test_a_stalled_body_gets_408_and_the_server_stays_up(tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "lake", tmp_path / "state", extra=["--body-timeout", "0.5", "--body-deadline", "2"]
    )
    try:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            head = (
                "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            )
            conn.sendall(head.encode() + b'[{"entity_ns": ')  # ... and nothing more
            started = time.monotonic()
            received = b""
            while chunk := conn.recv(65536):  # the server answers, then closes the connection
                received += chunk
            waited = time.monotonic() - started
            answer = received.decode()
        assert answer.startswith("HTTP/1.1 408"), answer[:200]
        assert "request-timeout" in answer and waited < 5
        # A trickle (a byte every 0.3 s, never idle for 0.5 s) meets the deadline instead.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(head.encode())
            started = time.monotonic()
            trickle = b""
            while time.monotonic() - started < 6:
                try:
                    conn.sendall(b" ")
                except OSError:
                    break
                conn.settimeout(0.3)
                try:
                    trickle = conn.recv(65536)
                    break
                except TimeoutError:
                    continue
            waited = time.monotonic() - started
        assert trickle.startswith(b"HTTP/1.1 408") and 1.5 < waited < 5, (trickle[:100], waited)
        # A client that goes away mid-body costs nothing and leaves no traceback in the log.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(head.encode() + b"[")
            conn.shutdown(socket.SHUT_WR)
        assert server.post_events([good()])["accepted"] == 1  # other clients are served
    finally:
        server.stop()
    assert "Traceback" not in server.log.read_text()


# -- dead letters ----------------------------------------------------------------------------------


def test_too_many_records_or_gzip_members_are_refused_whole(app_for: AppFactory) -> None:
    client = app_for()
    lines = client.post("/v1/events", content=b"{}\n" * 100_001, headers=NDJSON)
    assert lines.status_code == 413 and "100,000 records" in lines.json()["detail"]
    array = client.post("/v1/events", content=b"[" + b"{}," * 100_000 + b"{}]", headers=JSON)
    assert array.status_code == 413 and array.json()["type"].endswith("too-many-records")
    members = b"".join(gzip.compress(b"{}\n") for _ in range(101))
    many = client.post("/v1/events", content=members, headers={**NDJSON, "Content-Encoding": "gzip"})
    assert many.status_code == 400 and "more than 100 members" in many.json()["detail"]
    feed = client.post("/v1/events", content=b"\x0c" + json.dumps([good()]).encode(), headers=JSON)
    assert feed.status_code == 400  # a form feed is no JSON whitespace
    assert client.get("/v1/pipeline/stats").json()["accepted"] == 0


def test_dead_letters_of_a_small_compressed_request_stay_small(app_for: AppFactory, lake: Lake) -> None:
    client = app_for()
    body = gzip.compress(b"{}\n" * 90_000)  # a few hundred bytes on the wire
    answer = client.post("/v1/events", content=body, headers={**NDJSON, "Content-Encoding": "gzip"}).json()
    assert answer["rejected"] == 90_000
    assert sum(o.size for o in lake.store.list("dlq/")) <= 2 * len(body) + REQUEST_ALLOWANCE


def test_dead_letters_are_bounded_per_request(app_for: AppFactory, lake: Lake) -> None:
    client = app_for()
    body = b"{}\n" * 20_000  # 60 kB of tiny invalid records
    answer = client.post("/v1/events", content=body, headers=NDJSON).json()
    assert answer["rejected"] == 20_000
    stored, dropped = answer["dead_letters"]["stored"], answer["dead_letters"]["dropped"]
    assert stored + dropped == 20_000 and dropped > 0
    written = sum(o.size for o in lake.store.list("dlq/"))
    assert written <= 2 * len(body) + REQUEST_ALLOWANCE
    assert len([entry for _, entry in DeadLetters(lake.store).entries()]) == stored
    stats = client.get("/v1/pipeline/stats").json()
    assert (stats["dead_letters"], stats["dead_letters_dropped"]) == (stored, dropped)


def test_dead_letters_are_bounded_in_total(app_for: AppFactory, lake: Lake) -> None:
    client = app_for(dlq=DeadLetters(lake.store, max_total_bytes=3_000))
    for _ in range(3):
        client.post("/v1/events", content=b'{"entity_ns": "x.org"}\n' * 20, headers=NDJSON)
    assert sum(o.size for o in lake.store.list("dlq/")) <= 3_000
    stats = client.get("/v1/pipeline/stats").json()
    assert stats["dead_letters"] + stats["dead_letters_dropped"] == 60 and stats["dead_letters_dropped"] > 0


def test_nothing_is_accepted_when_the_dead_letters_cannot_be_written(app_for: AppFactory, lake: Lake) -> None:
    dlq = DeadLetters(FaultyStore(lake.store, fail_writes=1, prefix="dlq/"))
    client = app_for(dlq=dlq)
    batch = [good(), {"entity_ns": "not a host"}]
    refused = client.post("/v1/events", content=json.dumps(batch), headers=JSON)
    assert refused.status_code == 503 and refused.headers["retry-after"], refused.text
    assert client.get("/v1/pipeline/stats").json()["accepted"] == 0  # decided before anything was durable
    retried = client.post("/v1/events", content=json.dumps(batch), headers=JSON).json()
    assert (retried["accepted"], retried["rejected"]) == (1, 1)


# -- faults ----------------------------------------------------------------------------------------


def test_a_permanent_store_error_stops_the_flusher_visibly(app_for: AppFactory, lake: Lake, tmp_path: Path) -> None:
    healthy = lake.store
    lake.store = FaultyStore(healthy, fail_writes=10**9, terminal=True, prefix="events/")
    client = app_for(roll_interval_s=0.05, idle_s=0.05)
    event = good()
    assert client.post("/v1/events", content=json.dumps([event]), headers=JSON).json()["accepted"] == 1
    wait_for(lambda: client.get("/healthz").status_code == 503)
    health = client.get("/healthz").json()
    assert health["status"] == "failing" and "AccessDenied" in health["reason"]
    stats = client.get("/v1/pipeline/stats").json()
    assert stats["state"] == "stopped" and "AccessDenied" in stats["last_error"]
    refused = client.post("/v1/events", content=json.dumps([good()]), headers=JSON)
    assert refused.status_code == 503 and refused.json()["type"].endswith("pipeline-stopped")
    assert "AccessDenied" in refused.json()["detail"]
    assert lake.store.failures == 1  # stopped at the first refusal: no retry loop
    client.__exit__(None, None, None)
    lake.store = healthy  # the operator fixes the credential and restarts: the acknowledged event commits
    restarted = app_for()
    assert restarted.post("/v1/flush").json()["committed"] == 1
    assert table_ids(lake) == [event["event_id"]]


def test_a_transient_store_error_is_retried_with_backoff(app_for: AppFactory, lake: Lake) -> None:
    lake.store = FaultyStore(lake.store, fail_writes=3, prefix="events/")
    client = app_for(roll_interval_s=0.05, idle_s=0.05, retry_max_wait_s=0.2)
    events = [good() for _ in range(5)]
    assert client.post("/v1/events", content=json.dumps(events), headers=JSON).json()["accepted"] == 5
    wait_for(lambda: client.get("/v1/pipeline/stats").json()["committed_events"] == 5)
    stats = client.get("/v1/pipeline/stats").json()
    assert stats["state"] == "running" and stats["flush_retries"] >= 3
    assert client.get("/healthz").json() == {"status": "ok"}
    assert sorted(table_ids(lake)) == sorted(e["event_id"] for e in events)


def test_a_server_error_names_a_request_id_and_hides_its_cause(
    app_for: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = app_for()

    def broken() -> int:
        raise RuntimeError("secret detail: /etc/lakebench/credentials")

    monkeypatch.setattr(Pipeline, "flush", lambda self: broken())
    response = client.post("/v1/flush")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    document = response.json()
    assert "secret" not in response.text and "RuntimeError" not in response.text
    assert document["request_id"] == response.headers["x-request-id"] and document["request_id"] in document["detail"]
    given = client.post("/v1/flush", headers={"X-Request-ID": "client-chosen-42"})
    assert given.json()["request_id"] == "client-chosen-42"
