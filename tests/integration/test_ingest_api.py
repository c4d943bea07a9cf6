"""The ingest API against a bad-input corpus: each case gets a precise error, the good events of
the same request are kept, and the server stays up (one server serves the whole corpus)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from ulid import ULID

from lakebench.api.app import create_app
from lakebench.api.ingest import IngestSettings
from lakebench.core.config import Settings
from lakebench.core.models import Limits
from lakebench.lake.catalog import Lake
from lakebench.lake.schema import arrow_to_events
from lakebench.pipeline.core import Pipeline, PipelineConfig
from lakebench.pipeline.dlq import DeadLetters

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {**AUTH, "Content-Type": "application/json"}
NDJSON = {**AUTH, "Content-Type": "application/x-ndjson"}
MAX_REQUEST = 200_000
MAX_BODY = 10_000


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return Lake(Settings(lake=str(tmp_path_factory.mktemp("api") / "lake")))


@pytest.fixture(scope="module")
def client(lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    config = PipelineConfig(
        state_dir=tmp_path_factory.mktemp("state"), roll_interval_s=3600, idle_s=3600, limits=Limits(MAX_BODY)
    )
    app = create_app(lake, Pipeline(lake, config), IngestSettings(token=TOKEN, max_request_bytes=MAX_REQUEST))
    with TestClient(app) as c:
        yield c


def good(entity_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": str(ULID()),
        "entity_ns": "en.wikipedia.org",
        "entity_id": entity_id or f"Page {ULID()}",
        "ts": "2025-10-04T12:00:00Z",
        "body": "text",
        **extra,
    }


def problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    document: dict[str, Any] = response.json()
    assert document["type"] == f"urn:lakebench:problem:{slug}" and document["status"] == status
    assert document["detail"]
    return document


@pytest.fixture(autouse=True)
def server_stays_up(client: TestClient) -> Iterator[None]:
    yield
    assert client.get("/healthz").json() == {"status": "ok"}


# -- whole-request problems ------------------------------------------------------------------------

WHOLE_REQUEST_CASES = [
    ("malformed-json", {"content": b'[{"entity_ns": "a.org",', "headers": JSON}, 400, "malformed-json"),
    (
        "text-plain",
        {"content": b"[]", "headers": {**AUTH, "Content-Type": "text/plain"}},
        415,
        "unsupported-media-type",
    ),
    ("no-content-type", {"content": b"[]", "headers": AUTH}, 415, "unsupported-media-type"),
    ("too-large", {"content": b"[" + b" " * MAX_REQUEST + b"]", "headers": JSON}, 413, "payload-too-large"),
    (
        "gzip-bomb",
        {"content": gzip.compress(b"[" + b" " * 60_000_000 + b"]"), "headers": {**JSON, "Content-Encoding": "gzip"}},
        413,
        "payload-too-large",
    ),
    ("bad-gzip", {"content": b"not gzip", "headers": {**JSON, "Content-Encoding": "gzip"}}, 400, "bad-gzip"),
    ("brotli", {"content": b"[]", "headers": {**JSON, "Content-Encoding": "br"}}, 415, "unsupported-encoding"),
    ("empty-body", {"content": b"", "headers": JSON}, 400, "empty-body"),
    ("top-level-number", {"content": b"42", "headers": JSON}, 400, "not-an-array"),
    ("unbalanced-array", {"content": b'[{"entity_id": "x"}, {', "headers": JSON}, 400, "malformed-json"),
    ("trailing-garbage", {"content": b'[{"entity_id": "x"}] tail', "headers": JSON}, 400, "malformed-json"),
    ("no-token", {"content": b"[]", "headers": {"Content-Type": "application/json"}}, 401, "unauthorized"),
    (
        "wrong-token",
        {"content": b"[]", "headers": {"Authorization": "Bearer nope", "Content-Type": "application/json"}},
        401,
        "unauthorized",
    ),
    (
        "basic-auth",
        {"content": b"[]", "headers": {"Authorization": "Basic dTpw", "Content-Type": "application/json"}},
        401,
        "unauthorized",
    ),
]


@pytest.mark.parametrize(
    ("case", "request_args", "status", "slug"), WHOLE_REQUEST_CASES, ids=[c[0] for c in WHOLE_REQUEST_CASES]
)
def test_whole_request_problems(
    client: TestClient, case: str, request_args: dict[str, Any], status: int, slug: str
) -> None:
    response = client.post("/v1/events", **request_args)
    problem(response, status, slug)
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")


# -- per-event problems: the good event in the same request is kept ------------------------------------

DEEP_LIST: Any = 1
for _ in range(31):
    DEEP_LIST = [DEEP_LIST]

EVENT_CASES = [
    ("missing-entity-id", {k: v for k, v in good().items() if k != "entity_id"}, "entity_id"),
    ("missing-namespace", {k: v for k, v in good().items() if k != "entity_ns"}, "entity_ns"),
    ("missing-ts", {k: v for k, v in good().items() if k != "ts"}, "ts"),
    ("id-is-a-number", good(entity_id=None) | {"entity_id": 42}, "entity_id"),
    ("version-is-a-string", good(version="2"), "version"),
    ("version-is-a-bool", good(version=True), "version"),
    ("negative-version", good(version=-1), "version"),
    ("unknown-type", good(type="upsert"), "type"),
    ("namespace-with-spaces", good() | {"entity_ns": "en wikipedia org"}, "entity_ns"),
    ("namespace-unicode", good() | {"entity_ns": "bücher.de"}, "entity_ns"),
    ("namespace-is-url", good() | {"entity_ns": "https://en.wikipedia.org/"}, "entity_ns"),
    ("oversized-body", good(body="x" * (MAX_BODY + 1)), "body"),
    ("entity-id-over-1kib", good() | {"entity_id": "é" * 600}, "entity_id"),
    ("empty-entity-id", good() | {"entity_id": ""}, "entity_id"),
    ("nul-in-entity-id", good() | {"entity_id": "a\u0000b"}, "entity_id"),
    ("attributes-not-object", good(attributes=[1, 2]), "attributes"),
    ("unknown-field", good(colour="red"), "colour"),
    ("bad-event-id", good() | {"event_id": "not-a-ulid"}, "event_id"),
    ("impossible-date", good() | {"ts": "2025-02-30T00:00:00Z"}, "ts"),
    ("ts-is-a-bool", good() | {"ts": True}, "ts"),
    ("ts-overflows-in-utc", good() | {"ts": "9999-12-31T23:00:00-05:00"}, "ts"),
    ("ts-before-year-one-in-utc", good() | {"ts": "0001-01-01T00:00:00+01:00"}, "ts"),
    ("attributes-too-deep", good(attributes={"a": {"b": {"c": DEEP_LIST}}}), "attributes.a.b.c" + "[0]" * 29),
    ("title-is-an-object", good(title={"a": 1}), "title"),
    ("item-not-an-object", "just a string", "(record)"),
]


@pytest.mark.parametrize(("case", "bad", "field"), EVENT_CASES, ids=[c[0] for c in EVENT_CASES])
def test_bad_event_is_rejected_precisely_and_its_neighbour_kept(
    client: TestClient, case: str, bad: Any, field: str
) -> None:
    neighbour = good()
    response = client.post("/v1/events", content=json.dumps([neighbour, bad]), headers=JSON)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (1, 1)
    assert answer["events"][0] == {"index": 0, "status": "accepted", "event_id": neighbour["event_id"]}
    rejected = answer["events"][1]
    assert rejected["index"] == 1 and rejected["status"] == "rejected"
    assert [e["field"] for e in rejected["errors"]] == [field], rejected


def test_unreadable_elements_are_rejected_alone(client: TestClient) -> None:
    """Invalid UTF-8, a lone surrogate, a number no parser holds, nesting past the parser's depth:
    each costs only its own element; the index names it."""
    deep = b'{"entity_ns": "a.org", "entity_id": "deep", "ts": 1, "attributes": ' + b'{"a":' * 3000 + b"1" + b"}" * 3001
    bad = [
        b'{"entity_ns": "a.org", "entity_id": "\xff\xfe", "ts": 1}',
        b'{"entity_ns": "a.org", "entity_id": "x\\ud800", "ts": 1}',
        b'{"entity_ns": "a.org", "entity_id": "huge", "ts": 1, "attributes": {"n": 1e400}}',
        deep,
    ]
    first, last = good(), good()
    body = b"[" + b", ".join([json.dumps(first).encode(), *bad, json.dumps(last).encode()]) + b"]"
    response = client.post("/v1/events", content=body, headers=JSON)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [(e["index"], e["status"]) for e in answer["events"]] == [
        (0, "accepted"),
        (1, "rejected"),
        (2, "rejected"),
        (3, "rejected"),
        (4, "rejected"),
        (5, "accepted"),
    ]
    assert answer["events"][2]["errors"][0]["field"] in ("(json)", "entity_id")  # the surrogate: unreadable or invalid
    assert "nested too deeply" in answer["events"][4]["errors"][0]["message"]


def test_all_rejected_is_422(client: TestClient) -> None:
    response = client.post("/v1/events", content=json.dumps([{"entity_ns": "x.org"}]), headers=JSON)
    assert response.status_code == 422
    assert response.json()["events"][0]["status"] == "rejected"


def test_ndjson_bad_lines_are_numbered_and_good_lines_kept(client: TestClient) -> None:
    a, b = good(), good()
    body = "\n".join([json.dumps(a), "{not json", "", json.dumps(b)]).encode()
    answer = client.post("/v1/events", content=body, headers=NDJSON).json()
    assert [(e["line"], e["status"]) for e in answer["events"]] == [(1, "accepted"), (2, "rejected"), (4, "accepted")]
    assert answer["events"][1]["errors"][0]["field"] == "(json)"


def test_duplicates_within_and_across_requests(client: TestClient) -> None:
    event = good()
    first = client.post("/v1/events", content=json.dumps([event, event]), headers=JSON).json()
    assert [e["status"] for e in first["events"]] == ["accepted", "duplicate"]
    again = client.post("/v1/events", content=json.dumps([event]), headers=JSON).json()
    assert again["events"][0]["status"] == "duplicate" and again["accepted"] == 0


@pytest.mark.parametrize(
    "entity_id", ["Zürich", "東京都", "مرحبا", "e\u0301", "👩‍👩‍👧", "Talk:Cristiano Ronaldo", "a/b?c=d#e"]
)
def test_unicode_edge_ids_are_accepted(client: TestClient, entity_id: str) -> None:
    answer = client.post("/v1/events", content=json.dumps([good(entity_id)]), headers=JSON).json()
    assert answer["accepted"] == 1


def test_gzip_ndjson_and_single_object(client: TestClient) -> None:
    body = gzip.compress((json.dumps(good()) + "\n" + json.dumps(good()) + "\n").encode())
    answer = client.post("/v1/events", content=body, headers={**NDJSON, "Content-Encoding": "gzip"}).json()
    assert answer["accepted"] == 2
    single = client.post("/v1/events", content=json.dumps(good()), headers=JSON).json()
    assert single["accepted"] == 1


def test_good_events_are_committed_and_bad_ones_dead_lettered(client: TestClient, lake: Lake) -> None:
    keep, bad = good("Kept Page"), good() | {"entity_ns": "not a host"}
    client.post("/v1/events", content=json.dumps([keep, bad]), headers=JSON)
    assert client.post("/v1/flush", headers=AUTH).status_code == 200
    events = arrow_to_events(lake.table().scan().to_arrow())
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids))  # every accepted event exactly once
    assert keep["event_id"] in ids and bad["event_id"] not in ids
    letters = [entry for _, entry in DeadLetters(lake.store).entries()]
    assert any(entry.record == bad and entry.problems[0]["field"] == "entity_ns" for entry in letters)
    stats = client.get("/v1/pipeline/stats", headers=AUTH).json()
    assert stats["committed_events"] == len(ids) and stats["buffered_events"] == 0


def test_corpus_size() -> None:
    assert len(WHOLE_REQUEST_CASES) + len(EVENT_CASES) + 1 >= 30


def test_state_dir_holds_the_wal(tmp_path: Path) -> None:
    lake = Lake(Settings(lake=str(tmp_path / "lake")))
    pipeline = Pipeline(lake, PipelineConfig(state_dir=tmp_path / "state"))
    assert (tmp_path / "state" / "writer.id").read_text().strip() == pipeline.writer_id
    pipeline.stop(flush=False)


def test_full_buffer_answers_503_with_retry_after(tmp_path: Path) -> None:
    lake = Lake(Settings(lake=str(tmp_path / "lake")))
    config = PipelineConfig(state_dir=tmp_path / "state", max_buffer_bytes=1_000, roll_interval_s=3600, idle_s=3600)
    app = create_app(lake, Pipeline(lake, config), IngestSettings(token=None))
    with TestClient(app) as client:
        headers = {"Content-Type": "application/json"}
        assert (
            client.post("/v1/events", content=json.dumps([good(body="x" * 2_000)]), headers=headers).status_code == 200
        )
        refused = client.post("/v1/events", content=json.dumps([good()]), headers=headers)
        problem(refused, 503, "backpressure")
        assert int(refused.headers["retry-after"]) >= 1
        client.post("/v1/flush")
        assert client.post("/v1/events", content=json.dumps([good()]), headers=headers).status_code == 200
    lake.close()


def test_the_decompressed_limit_names_the_option_that_moves_it(tmp_path: Path) -> None:
    lake = Lake(Settings(lake=str(tmp_path / "lake")))
    body = gzip.compress(b"\n".join(json.dumps(good(f"id{i}")).encode() for i in range(300)))  # ~50 KB unpacked
    headers = {**AUTH, "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
    for limit, status in ((10_000, 413), (1_000_000, 200)):
        config = PipelineConfig(state_dir=tmp_path / f"state-{limit}", roll_interval_s=3600, idle_s=3600)
        settings = IngestSettings(token=TOKEN, max_request_bytes=MAX_REQUEST, max_decompressed_bytes=limit)
        with TestClient(create_app(lake, Pipeline(lake, config), settings)) as client:
            response = client.post("/v1/events", content=body, headers=headers)
        assert response.status_code == status, response.text
        if status == 413:
            assert "--max-decompressed-mb" in response.json()["detail"]
