"""The db service end to end: cached reads that learn about commits, every read route, auth and
limits, health, status and metrics — in process, on both cache backends."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient
from ulid import ULID

from lakebench.api.ingest import IngestSettings
from lakebench.api.service import ServiceConfig, build_app
from lakebench.core.config import Settings
from lakebench.core.validate import parse_event
from lakebench.lake.catalog import Lake
from lakebench.lake.writer import LakeWriter
from lakebench.pipeline.core import PipelineConfig

TOKEN = "service-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NS = "en.wikipedia.org"


def event(entity_id: str, body: str, ts: str = "2025-10-04T12:00:00Z", **extra: Any) -> dict[str, Any]:
    return {"event_id": str(ULID()), "entity_ns": NS, "entity_id": entity_id, "ts": ts, "body": body, **extra}


def seed_lake(folder: Path, ids: list[str]) -> Lake:
    lake = Lake(Settings(lake=str(folder / "lake")))
    events = [parse_event(event(i, f"first body of {i} quokka")) for i in ids]
    LakeWriter(lake).write([e for e in events if not isinstance(e, list)])
    return lake


def entity_url(entity_id: str, ns: str = NS) -> str:
    return f"/v1/entities/{ns}/{quote(entity_id, safe='')}"


ServiceFactory = Callable[..., TestClient]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceFactory]:
    clients: list[TestClient] = []

    def make(cache: str | None = "memory", ids: list[str] | None = None, **overrides: Any) -> TestClient:
        lake = seed_lake(tmp_path, ids or ["TypeScript"])
        lake.close()
        config = ServiceConfig(
            settings=Settings(lake=str(tmp_path / "lake")),
            engine=overrides.pop("engine", "lake-sql"),
            cache=cache,
            token=TOKEN,
            pipeline=PipelineConfig(state_dir=tmp_path / "state", roll_interval_s=3600, idle_s=3600),
            ingest_settings=IngestSettings(token=TOKEN),
            results_dir=tmp_path / "results",
            **overrides,
        )
        client = TestClient(build_app(config), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def redis_cache(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("redis_url")
    return url


@pytest.fixture(params=["memory", "redis"])
def cache_url(request: pytest.FixtureRequest) -> str:
    return "memory" if request.param == "memory" else redis_cache(request)


def post(client: TestClient, *events: dict[str, Any]) -> dict[str, Any]:
    answer = client.post(
        "/v1/events", content=json.dumps(list(events)), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert answer.status_code == 200, answer.text
    document: dict[str, Any] = answer.json()
    return document


def test_a_cached_key_updated_through_the_pipeline_reads_new_after_the_flush(
    service: ServiceFactory, cache_url: str
) -> None:
    client = service(cache_url)
    key = client.get("/v1/recent?limit=1").json()["items"][0]["entity_id"]
    first = client.get(entity_url(key))
    assert first.status_code == 200 and first.headers["x-cache"] == "miss"
    again = client.get(entity_url(key))
    assert again.headers["x-cache"] == "fresh" and again.json() == first.json()
    assert again.headers["cache-control"].startswith("public, max-age=3600, stale-while-revalidate=86400")
    assert again.headers["etag"] == first.headers["etag"] and int(again.headers["age"]) >= 0
    unchanged = client.get(entity_url(key), headers={"If-None-Match": first.headers["etag"]})
    assert unchanged.status_code == 304 and unchanged.content == b""

    update = event(key, "second body", ts="2025-10-05T12:00:00Z", version=2)
    assert post(client, update)["accepted"] == 1
    assert client.get(entity_url(key)).json()["version"] == 1  # not committed yet: the cached copy stands
    assert client.post("/v1/flush", headers=AUTH).json()["committed"] == 1
    after = client.get(entity_url(key))
    assert after.headers["x-cache"] == "miss"  # the commit purged it
    assert after.json()["event_id"] == update["event_id"] and after.json()["body"] == "second body"
    history = client.get(entity_url(key) + "/history").json()
    assert [e["version"] for e in history["events"]] == [1, 2]


@pytest.mark.parametrize(
    "entity_id",
    [
        "cpp/container/vector",
        "100% done",
        "Talk:Cristiano Ronaldo",
        "東京/Zürich 🎉",
        "a%2Fb",
        "ends/history",
        "C:\\temp",
    ],
)
def test_any_entity_id_round_trips_through_the_path(service: ServiceFactory, entity_id: str) -> None:
    client = service(ids=[entity_id])
    found = client.get(entity_url(entity_id))
    assert found.status_code == 200, found.text
    assert found.json()["entity_id"] == entity_id
    history = client.get(entity_url(entity_id) + "/history")
    assert [e["entity_id"] for e in history.json()["events"]] == [entity_id]


def test_an_unencoded_slash_is_part_of_the_id(service: ServiceFactory) -> None:
    client = service(ids=["cpp/container/vector"])
    assert client.get(f"/v1/entities/{NS}/cpp/container/vector").json()["entity_id"] == "cpp/container/vector"
    history = client.get(f"/v1/entities/{NS}/cpp/container/vector/history").json()
    assert [e["entity_id"] for e in history["events"]] == ["cpp/container/vector"]


def test_missing_entities_are_404_problems_and_cached_briefly(service: ServiceFactory) -> None:
    client = service()
    first = client.get(entity_url("No Such Page"))
    assert first.status_code == 404 and first.headers["content-type"].startswith("application/problem+json")
    second = client.get(entity_url("No Such Page"))
    assert second.headers["x-cache"] == "negative" and "max-age=5" in second.headers["cache-control"]
    assert client.get(f"/v1/entities/{NS}").status_code == 404


def test_every_read_route_answers(service: ServiceFactory) -> None:
    client = service(ids=[f"Page {i}" for i in range(30)])
    page = client.get(f"/v1/namespaces/{NS}/entities?limit=10").json()
    assert len(page["items"]) == 10 and page["next_cursor"]
    rest = client.get(f"/v1/namespaces/{NS}/entities?limit=100&cursor={page['next_cursor']}").json()
    assert len(rest["items"]) == 20 and rest["next_cursor"] is None
    assert len(client.get("/v1/recent?limit=5").json()["items"]) == 5
    hits = client.get("/v1/search?q=QUOKKA&limit=50").json()
    assert len(hits["hits"]) == 30 and hits["query"] == "QUOKKA"
    counts = client.get("/v1/count?by=entity_ns").json()
    assert counts == {"by": "entity_ns", "counts": [{"value": NS, "count": 30}]}
    since = client.get("/v1/count?by=day&since=2025-10-05T00:00:00Z").json()
    assert since["counts"] == []


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/recent?limit=0", 400),
        ("/v1/recent?limit=1001", 400),
        (f"/v1/namespaces/{NS}/entities?cursor=not-a-cursor!", 400),
        ("/v1/search?q=", 400),
        ("/v1/search?q=" + "x" * 600, 400),
        ("/v1/count?by=body", 400),
        ("/v1/count?since=yesterday", 400),
        (entity_url("x" * 5000), 414),
    ],
)
def test_bad_parameters_get_clear_problems(service: ServiceFactory, path: str, status: int) -> None:
    client = service()
    answer = client.get(path)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json") and answer.json()["detail"]


def test_sql_needs_the_token_and_the_sandbox_holds(service: ServiceFactory) -> None:
    client = service(ids=["A", "B"])
    body = {"query": "SELECT entity_id, ts FROM events WHERE entity_id = ? ORDER BY 1", "params": ["A"]}
    assert client.post("/v1/sql", json=body).status_code == 401
    rows = client.post("/v1/sql", json=body, headers=AUTH).json()
    assert rows["columns"] == ["entity_id", "ts"] and rows["rows"] == [["A", "2025-10-04T12:00:00Z"]]
    refused = client.post("/v1/sql", json={"query": "SELECT * FROM read_text('/etc/passwd')"}, headers=AUTH)
    assert refused.status_code == 400 and refused.json()["type"].endswith("bad-query")


def test_a_read_token_closes_reads(service: ServiceFactory) -> None:
    client = service(read_token="reader")
    assert client.get(entity_url("TypeScript")).status_code == 401
    assert client.get(entity_url("TypeScript"), headers={"Authorization": "Bearer reader"}).status_code == 200
    assert client.get("/health").status_code == 200  # operations stay open


def test_health_status_and_metrics(service: ServiceFactory) -> None:
    client = service()
    health = client.get("/health").json()
    assert health["status"] == "ok" and set(health["checks"]) == {"catalog", "lake", "cache", "pipeline"}
    status = client.get("/status").json()
    assert status["engine"] == "lake-sql" and status["cache"]["backend"] == "memory"
    assert status["thresholds_ms"]["lookup"] == 500 and status["decision"] is None
    client.get(entity_url("TypeScript"))
    metrics = client.get("/metrics").text
    assert 'lakebench_cache_requests_total{state="miss"} 1.0' in metrics
    assert 'lakebench_http_requests_total{method="GET",route="/v1/entities/{ns}/{entity_id}",status="200"}' in metrics


def test_a_cache_backend_that_is_down_degrades_to_engine_reads(service: ServiceFactory) -> None:
    client = service("redis://127.0.0.1:9/0")  # nothing listens there
    answers = [client.get(entity_url("TypeScript")) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert {a.headers["x-cache"] for a in answers} == {"bypass"}
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "degraded"


def test_commits_of_other_processes_are_noticed(service: ServiceFactory, tmp_path: Path) -> None:
    client = service(poll_s=0.1)
    assert client.get(entity_url("TypeScript")).json()["version"] == 1
    other_writer = Lake(Settings(lake=str(tmp_path / "lake")))
    newer = parse_event(event("TypeScript", "written elsewhere", ts="2025-10-06T00:00:00Z", version=3))
    assert not isinstance(newer, list)
    LakeWriter(other_writer).write([newer])
    other_writer.close()
    import time

    deadline = time.monotonic() + 10
    while client.get(entity_url("TypeScript")).json()["version"] != 3:
        assert time.monotonic() < deadline, "the commit was not noticed"
        time.sleep(0.05)


def test_a_zipf_replay_shows_its_hit_ratio_on_metrics(service: ServiceFactory) -> None:
    ids = [f"Key {i}" for i in range(200)]
    client = service(ids=ids)
    rng = np.random.default_rng(7)
    ranks = np.arange(1, len(ids) + 1)
    weights = 1.0 / ranks**0.99
    picks = rng.choice(len(ids), size=1_500, p=weights / weights.sum())
    for pick in picks:
        assert client.get(entity_url(ids[int(pick)])).status_code == 200
    text = client.get("/metrics").text

    def value(name: str) -> float:
        found = re.findall(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
        return sum(float(v) for v in found)

    hits = value('lakebench_cache_requests_total{state="fresh"}') + value(
        'lakebench_cache_requests_total{state="stale"}'
    )
    requests = sum(
        float(v)
        for v in re.findall(r'^lakebench_cache_requests_total\{state="[a-z-]+"\} ([0-9.e+]+)$', text, re.MULTILINE)
    )
    engine_calls = value("lakebench_cache_engine_calls_total")
    assert requests == len(picks)
    assert engine_calls == len(set(picks.tolist()))  # one engine read per distinct key, the rest from the cache
    assert hits / requests == pytest.approx(1 - engine_calls / requests)
