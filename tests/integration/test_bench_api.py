"""The db service's benchmark routes, in process: a real (tiny) run from start to decisions and an
HTML report, one run at a time, runs stopped with the service, the problems of bad requests, and
synthetic events generated through the service's pipeline."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from ulid import ULID

from lakebench.api.bench import BenchLimits
from lakebench.api.ingest import IngestSettings
from lakebench.api.service import ServiceConfig, build_app
from lakebench.core.config import Settings
from lakebench.core.process import stat_fields
from lakebench.generate.synthetic import GeneratorSpec, generate
from lakebench.pipeline.core import PipelineConfig
from tests.integration.test_service import entity_url, seed_lake

TOKEN = "bench-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROBLEM = "application/problem+json"
TINY: dict[str, str | int | float] = {  # one option, one profile, a handful of samples: seconds, not minutes
    "type": "all",
    "count": 30,
    "avg_size_kb": 1,
    "samples": 2,
    "search_samples": 1,
    "repeat": 1,
    "warmup": 1,
    "options": "lake-sql",
    "profiles": "local",
}

Factory = Callable[..., TestClient]

# One heavy run at a time, and this module's shared run made once: every test of it in one worker.
pytestmark = pytest.mark.xdist_group("benchmark-run")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Factory]:
    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        seed_lake(tmp_path, ["TypeScript"]).close()
        config = ServiceConfig(
            settings=Settings(lake=str(tmp_path / "lake")),
            engine="lake-sql",
            token=TOKEN,
            pipeline=overrides.pop(
                "pipeline", PipelineConfig(state_dir=tmp_path / "state", roll_interval_s=3600, idle_s=3600)
            ),
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


def lake_files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def assert_problem(answer: Any, status: int, *words: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    document: dict[str, Any] = answer.json()
    assert document["status"] == status and document["type"].startswith("urn:lakebench:problem:")
    for word in words:
        assert word in document["detail"], document["detail"]
    return document


def wait_for(client: TestClient, url: str, timeout_s: float = 180.0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's final document, and every document seen while it ran."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        document: dict[str, Any] = client.get(url).json()
        if document["status"] != "running":
            return document, seen
        seen.append(document)
        time.sleep(0.25)
    raise AssertionError(f"the run at {url} did not finish in {timeout_s:g} s: {seen[-1] if seen else None}")


def test_a_run_goes_from_start_to_decisions_and_an_html_report(service: Factory, tmp_path: Path) -> None:
    client = service()
    served_lake = lake_files(tmp_path / "lake")
    started = client.get("/benchmark", params=TINY, headers=AUTH)
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    assert started.json()["status_url"] == started.headers["location"] == f"/benchmark/{run_id}"

    final, running = wait_for(client, f"/benchmark/{run_id}")
    assert final["status"] == "done", final.get("error")
    assert running and all(isinstance(d["step"], str) and d["done"] >= 0 for d in running)
    assert any(d["total"] for d in running)  # the measuring steps know their size
    assert final["params"]["options"] == ["lake-sql"] and final["params"]["profiles"] == ["local"]
    decision = final["decisions"]["local"]
    assert decision["name"] == "lake-sql" and decision["option"] == 1 and decision["reason"]
    result = Path(final["result_path"])
    assert result.is_file() and result.resolve().is_relative_to((tmp_path / "results").resolve())
    assert lake_files(tmp_path / "lake") == served_lake  # the run staged its own dataset

    report = client.get(final["report_url"])
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "<svg" in report.text and "lake-sql" in report.text
    assert "default-src 'none'" in report.headers["content-security-policy"]
    assert client.get("/report").content == report.content  # the newest
    assert result.stem == run_id  # the result file is named by the run's id

    status = client.get("/status").json()["decision"]
    assert status["run_id"] == result.stem and status["result_path"] == str(result)
    assert status["decisions"] == final["decisions"] and status["name"] == "lake-sql"


def test_one_run_at_a_time_and_the_service_stops_its_run(service: Factory, tmp_path: Path) -> None:
    client = service()
    first = client.get("/benchmark", params=TINY, headers=AUTH)
    assert first.status_code == 202
    second = client.get("/benchmark", params={**TINY, "type": "lookup"}, headers=AUTH)
    assert_problem(second, 409, first.json()["run_id"], "is running")
    assert second.headers["location"] == first.headers["location"]
    [run] = [pid for pid, (parent, _) in processes().items() if parent == os.getpid() and b"bench_runs" in cmdline(pid)]
    time.sleep(1.5)  # into the run: its S3-protocol server and first steps are up

    client.__exit__(None, None, None)  # shutting down stops the run, its process group and all
    with (tmp_path / "results" / ".benchmark.lock").open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # released: the run's process is gone
    deadline = time.monotonic() + 10  # a SIGKILLed process leaves /proc a moment later
    while (left := [pid for pid, (_, group) in processes().items() if group == run]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left


def processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group), from /proc; without the zombies this process does not
    reap (ended: only their parent's wait is missing, and a container's PID 1 may never reap what
    is handed to it), with those it should."""
    out = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = stat_fields(entry.name)
        except OSError:
            continue
        if fields[0] != "Z" or int(fields[1]) == os.getpid():
            out[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return out


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"type": "writes"}, ["'type'", "'lookup', 'search' or 'all'"]),
        ({"samples": 0}, ["'samples'", "greater than or equal to 1"]),
        ({"samples": 201}, ["'samples'", "less than or equal to 200"]),
        ({"repeat": 6}, ["'repeat'", "less than or equal to 5"]),
        ({"count": "many"}, ["'count'", "integer"]),
        ({"count": 20_000, "avg_size_kb": 1000}, ["'count' x 'avg_size_kb'", "at most 256 MB"]),
        ({"options": "lake-sql,duckdb"}, ["'options'", "'duckdb'", "lake-sql+cache"]),
        ({"profiles": "direct"}, ["'profiles'", "r2", "never touches"]),
    ],
)
def test_a_bad_start_is_a_422_problem_naming_the_parameter(
    service: Factory, params: dict[str, Any], words: list[str]
) -> None:
    client = service()
    assert_problem(client.get("/benchmark", params={**TINY, **params}, headers=AUTH), 422, *words)


def test_unknown_runs_and_missing_reports_are_problems(service: Factory) -> None:
    client = service()
    assert_problem(client.get("/benchmark", params=TINY), 401, "bearer token")
    unknown = str(ULID())
    assert_problem(client.get(f"/benchmark/{unknown}"), 404, unknown)
    assert_problem(client.get("/benchmark/not-a-run-id"), 422, "'run_id'")
    assert_problem(client.get("/report"), 404, "no benchmark run has written a report")
    assert_problem(client.get(f"/report/{unknown}"), 404, unknown)
    assert_problem(client.get(f"/report/{unknown.lower()}"), 422, "'run_id'")  # names a file: one form only
    assert_problem(client.get("/report/..%2F..%2Fetc%2Fpasswd"), 404)  # no such route
    assert client.get("/status").json()["decision"] is None


def test_a_read_token_closes_run_states_and_reports(service: Factory) -> None:
    client = service(read_token="reader")
    assert_problem(client.get(f"/benchmark/{ULID()}"), 401)
    assert_problem(client.get("/report"), 401)
    assert_problem(client.get("/report", headers={"Authorization": "Bearer reader"}), 404)


def generate_body(**fields: Any) -> dict[str, Any]:
    return {"count": 20, "avgSizeKB": 1, **fields}


def test_generated_events_go_through_the_pipeline_and_read_after_the_flush(service: Factory) -> None:
    client = service()
    assert_problem(client.post("/generate", json=generate_body(seed=7)), 401, "bearer token")
    answer = client.post("/generate", json=generate_body(seed=7), headers=AUTH)
    assert answer.status_code == 200, answer.text
    assert answer.json() | {"bytes": 0, "seconds": 0} == {
        "requested": 20,
        "accepted": 20,
        "duplicates": 0,
        "rejected": 0,
        "seed": 7,
        "dataset": "synthetic:count=20:avg_size_kb=1:seed=7",
        "bytes": 0,
        "seconds": 0,
    }
    again = client.post("/generate", json=generate_body(seed=7), headers=AUTH).json()
    assert (again["accepted"], again["duplicates"]) == (0, 20)  # same seed, same events, same ids
    stats = client.get("/v1/pipeline/stats", headers=AUTH).json()
    assert stats["accepted"] == 20 and stats["buffered_events"] == 20

    events = list(generate(GeneratorSpec(count=20, avg_size_kb=1, seed=7)))
    latest = next(e for e in reversed(events) if e.entity_id != "TypeScript")  # seeded into the lake too
    assert client.get(entity_url(latest.entity_id, latest.entity_ns)).status_code == 404  # not flushed yet
    assert client.post("/v1/flush", headers=AUTH).json()["committed"] == 20
    read = client.get(entity_url(latest.entity_id, latest.entity_ns))
    assert read.status_code == 200 and read.json()["event_id"] == latest.event_id

    unseeded = client.post("/generate", json={"count": 5, "avgSizeKB": 0.5}, headers=AUTH).json()
    assert unseeded["accepted"] == 5 and isinstance(unseeded["seed"], int)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (generate_body(count=0), 422, ["'count'", "greater than or equal to 1"]),
        (generate_body(count=100_001), 422, ["'count'", "less than or equal to 100000"]),
        (generate_body(avgSizeKB=0), 422, ["'avgSizeKB'", "greater than 0"]),
        (generate_body(avgSizeKB=2048), 422, ["'avgSizeKB'", "less than or equal to 1024"]),
        ({"count": 20}, 422, ["'avgSizeKB'", "required"]),
        (generate_body(avg_size_kb=1), 422, ["'avg_size_kb'", "not permitted"]),
        (generate_body(count="twenty"), 422, ["'count'", "integer"]),
        (generate_body(count=100_000, avgSizeKB=1), 422, ["'count'", "100.0 MB", "at most 64 MB"]),
        ([generate_body()], 422, ["'body'", "dictionary"]),
    ],
)
def test_a_bad_generate_body_is_a_422_problem_naming_the_field(
    service: Factory, body: Any, status: int, words: list[str]
) -> None:
    client = service()
    assert_problem(client.post("/generate", json=body, headers=AUTH), status, *words)


def test_a_generate_body_that_is_not_json_is_refused(service: Factory) -> None:
    client = service()
    headers = {**AUTH, "Content-Type": "application/json"}
    assert_problem(client.post("/generate", content=b'{"count": ', headers=headers), 400, "not JSON")
    text = {**AUTH, "Content-Type": "text/plain"}
    assert_problem(client.post("/generate", content=b'{"count": 1, "avgSizeKB": 1}', headers=text), 415)


def test_generate_under_backpressure_says_how_much_was_taken(service: Factory, tmp_path: Path) -> None:
    pipeline = PipelineConfig(state_dir=tmp_path / "state", roll_interval_s=3600, idle_s=3600, max_buffer_bytes=50_000)
    client = service(pipeline=pipeline)
    answer = client.post("/generate", json=generate_body(count=1_200, seed=3), headers=AUTH)
    assert_problem(answer, 503, "buffer full", "500 of 1,200 events were taken", "seed 3")
    assert answer.headers["retry-after"]


def test_the_limits_are_the_servers_and_its_openapi_document_says_them(service: Factory) -> None:
    client = service(bench=BenchLimits(max_samples=10, max_generate_count=50, max_generate_mb=1))
    assert_problem(client.get("/benchmark", params={**TINY, "samples": 11}, headers=AUTH), 422, "10")
    assert_problem(client.post("/generate", json=generate_body(count=51), headers=AUTH), 422, "50")
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    assert {"/benchmark", "/benchmark/{run_id}", "/report", "/report/{run_id}", "/generate"} <= set(paths)
    samples = next(p for p in paths["/benchmark"]["get"]["parameters"] if p["name"] == "samples")
    assert samples["schema"]["maximum"] == 10
    assert document["components"]["schemas"]["GenerateIn"]["properties"]["count"]["maximum"] == 50
    assert set(paths["/benchmark"]["get"]["responses"]) >= {"202", "401", "409", "422"}
    assert "text/html" in paths["/report/{run_id}"]["get"]["responses"]["200"]["content"]
    assert paths["/generate"]["post"]["security"] == [{"HTTPBearer": []}]


def test_a_run_of_another_worker_process_is_a_409_too(service: Factory, tmp_path: Path) -> None:
    client = service()
    (tmp_path / "results").mkdir(exist_ok=True)
    with (tmp_path / "results" / ".benchmark.lock").open("a+") as held:  # as another worker holds it
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert_problem(client.get("/benchmark", params=TINY, headers=AUTH), 409, "another process of this service")
        assert "location" not in client.get("/benchmark", params=TINY, headers=AUTH).headers
