"""Several pipeline processes write one table through a PostgreSQL Iceberg catalog."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from ulid import ULID

from lakebench.core.config import Settings
from lakebench.lake.catalog import Lake
from tests.integration.servers import Server, start_server

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_catalog(postgres_url: str) -> str:
    return postgres_url


def events(n: int, writer: int) -> list[dict[str, Any]]:
    return [
        {
            "event_id": str(ULID()),
            "entity_ns": "en.wikipedia.org",
            "entity_id": f"Page {i % 37}",  # the writers' events share keys
            "ts": f"2025-10-04T12:{i % 60:02d}:00Z",
            "body": f"writer {writer} event {i} key{i % 37}",
        }
        for i in range(n)
    ]


def test_three_writers_store_every_event_exactly_once(tmp_path: Path, pg_catalog: str) -> None:
    lake_dir = tmp_path / "lake"
    catalog_name = f"test_{uuid.uuid4().hex[:10]}"
    env = {"LAKEBENCH_CATALOG": pg_catalog, "LAKEBENCH_CATALOG_NAME": catalog_name}
    settings = Settings(lake=str(lake_dir), catalog=pg_catalog, catalog_name=catalog_name)
    with Lake(settings) as lake:
        lake.table()  # create it once
    servers: list[Server] = []
    try:
        for i in range(3):
            servers.append(start_server(lake_dir, tmp_path / f"state-{i}", env=env))
        batches = [[events(40, w) for _ in range(5)] for w in range(3)]

        def drive(w: int) -> int:
            accepted = 0
            for batch in batches[w]:
                accepted += servers[w].post_events(batch)["accepted"]
                servers[w].post("/v1/flush")  # each flush is a commit racing the other writers
            return accepted

        with ThreadPoolExecutor(3) as pool:
            assert list(pool.map(drive, range(3))) == [200, 200, 200]
    finally:
        for server in servers:
            server.stop()
    with Lake(settings) as lake:
        table = lake.table()
        ids = table.scan(selected_fields=("event_id",)).to_arrow()["event_id"].to_pylist()
    expected = {e["event_id"] for w in batches for batch in w for e in batch}
    assert len(ids) == len(set(ids)) == 600 and set(ids) == expected
    writers = [k for k in table.properties if k.startswith("lakebench.wal.")]
    assert len(writers) == 3  # each writer's committed offset is recorded in the table
    # The writers raced on the full-text index too: every entity is found by its own term, at its
    # newest event (each commit re-applied its documents on the index of the commit that beat it).
    from lakebench.benchmark.oracle import Oracle
    from lakebench.core.validate import parse_event
    from lakebench.engines.lake_indexed import LakeIndexedEngine

    oracle = Oracle([parse_event(e) for w in batches for batch in w for e in batch])  # type: ignore[misc]
    with Lake(replace(settings, read_only=True)) as lake:
        engine = LakeIndexedEngine(lake)
        try:
            assert engine.notices == []
            for n in range(37):
                latest = oracle.lookup("en.wikipedia.org", f"Page {n}")
                assert latest is not None
                hits = engine.search(f"key{n}", 10)
                assert [(h.entity_id, h.event_id) for h in hits] == [(f"Page {n}", latest.event_id)], n
                assert engine.lookup("en.wikipedia.org", f"Page {n}") == latest
        finally:
            engine.close()
