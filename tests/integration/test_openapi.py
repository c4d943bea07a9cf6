"""The served OpenAPI document describes the API as it behaves: schemathesis generates requests from
it (JSON and NDJSON ingest bodies included) and every answer must conform — no server error, a
documented status, content type, headers and body."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from lakebench.api.app import create_app
from lakebench.api.bench import BenchLimits
from lakebench.api.ingest import IngestSettings
from lakebench.core.config import Settings
from lakebench.lake.catalog import Lake
from lakebench.pipeline.core import Pipeline, PipelineConfig

TOKEN = "openapi-test-token"


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: Any, value: Any) -> bytes | None:
    """Schemathesis generates the NDJSON body as an array of events; the wire format is a line each."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    items = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


def make_app(folder: Path) -> Any:
    lake = Lake(Settings(lake=str(folder / "lake")))
    config = PipelineConfig(state_dir=folder / "state", roll_interval_s=3600, idle_s=3600)
    return create_app(lake, Pipeline(lake, config), IngestSettings(token=TOKEN))


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from fastapi.testclient import TestClient

    with TestClient(make_app(tmp_path_factory.mktemp("openapi-doc"))) as client:
        yield client.get("/openapi.json").json()


def test_the_ingest_body_errors_and_security_are_documented(document: dict[str, Any]) -> None:
    post = document["paths"]["/v1/events"]["post"]
    content = post["requestBody"]["content"]
    assert set(content) == {"application/json", "application/x-ndjson"}
    event = document["components"]["schemas"]["EventIn"]
    assert {"entity_ns", "entity_id", "ts"} <= set(event["required"]) and event["additionalProperties"] is False
    for status in ("400", "401", "408", "413", "415", "500", "503"):
        schema = post["responses"][status]["content"]["application/problem+json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ProblemDocument"}, status
    assert document["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "the service's token: Authorization: Bearer <token>",
    }
    assert post["security"] == [{"HTTPBearer": []}]


CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
]


def fuzz(operation: Any, mode: GenerationMode, statuses: Counter[tuple[str, str, int]]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def conforms(case: Any) -> None:
        response = case.call_and_validate()
        statuses[(operation.path, mode.value, response.status_code)] += 1

    conforms()


def test_every_generated_request_gets_a_conforming_answer(tmp_path: Path) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", make_app(tmp_path))
    schema.config.update(headers={"Authorization": f"Bearer {TOKEN}"})
    schema.config.checks.update(included_check_names=CHECKS)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /v1/events",
        "POST /v1/flush",
        "GET /v1/pipeline/stats",
        "GET /healthz",
    }
    statuses: Counter[tuple[str, str, int]] = Counter()
    for operation in operations:
        # Negative cases (schema-violating bodies, missing token) where there is a body to break.
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if operation.body else [])
        for mode in modes:
            fuzz(operation, mode, statuses)
    # The generated bodies reach the validator both ways: some accepted, some rejected per event.
    assert statuses[("/v1/events", "positive", 200)] > 0
    assert sum(n for (path, mode, status), n in statuses.items() if path == "/v1/events" and status >= 400) > 0


def make_service(folder: Path) -> Any:
    from lakebench.api.service import ServiceConfig, build_app
    from lakebench.core.validate import parse_event
    from lakebench.lake.writer import LakeWriter

    lake = Lake(Settings(lake=str(folder / "lake")))
    events = [
        parse_event({"entity_ns": "en.wikipedia.org", "entity_id": f"Page {i}", "ts": 1_750_000_000 + i, "body": "x"})
        for i in range(20)
    ]
    LakeWriter(lake).write([e for e in events if not isinstance(e, list)])
    lake.close()
    config = ServiceConfig(
        settings=Settings(lake=str(folder / "lake")),
        engine="lake-sql",
        token=TOKEN,
        pipeline=PipelineConfig(state_dir=folder / "state", roll_interval_s=3600, idle_s=3600),
        ingest_settings=IngestSettings(token=TOKEN),
        results_dir=folder / "results",
        bench=BenchLimits(max_generate_count=200, max_generate_mb=1.0),  # fuzzed /generate stays small
    )
    return build_app(config)


def test_the_db_service_conforms_to_its_document(tmp_path: Path) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", make_service(tmp_path))
    schema.config.update(headers={"Authorization": f"Bearer {TOKEN}"})
    schema.config.checks.update(included_check_names=CHECKS)
    operations = [result.ok() for result in schema.get_all_operations()]
    paths = {f"{op.method.upper()} {op.path}" for op in operations}
    assert {"GET /v1/entities/{ns}/{entity_id}", "POST /v1/sql", "GET /health", "GET /status"} <= paths
    statuses: Counter[tuple[str, str, int]] = Counter()
    for operation in operations:
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if operation.body else [])
        for mode in modes:
            fuzz(operation, mode, statuses)
    assert all(status < 500 for (_, _, status) in statuses)
