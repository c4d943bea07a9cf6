"""A started server settles its process (core/process.py ``settled_server``): start-up objects frozen
out of the garbage collector's full passes, Arrow's jemalloc pool where the build has it; and when
its last app stops, the process gets both back (an app started inside a longer process, as here)."""

from __future__ import annotations

import gc
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lakebench.api.app import create_app
from lakebench.api.ingest import IngestSettings
from lakebench.api.service import ServiceConfig, build_app
from lakebench.core.config import Settings
from lakebench.lake.catalog import Lake
from lakebench.pipeline.core import Pipeline, PipelineConfig


def _jemalloc_built() -> bool:
    try:
        pa.jemalloc_memory_pool()
    except NotImplementedError:
        return False
    return True


def ingest_app(folder: Path) -> FastAPI:
    lake = Lake(Settings(lake=str(folder / "lake")))
    config = PipelineConfig(state_dir=folder / "state", roll_interval_s=3600, idle_s=3600)
    return create_app(lake, Pipeline(lake, config), IngestSettings(token=None))


def db_service(folder: Path) -> FastAPI:
    config = ServiceConfig(
        settings=Settings(lake=str(folder / "lake")),
        engine="lake-sql",
        cache="memory",
        pipeline=PipelineConfig(state_dir=folder / "state", roll_interval_s=3600, idle_s=3600),
        results_dir=folder / "results",
    )
    return build_app(config)


@pytest.mark.parametrize("make", [ingest_app, db_service], ids=["serve-pipeline", "serve"])
def test_a_running_server_is_settled_and_a_stopped_one_gives_it_back(
    make: Callable[[Path], FastAPI], tmp_path: Path
) -> None:
    gc.unfreeze()
    pool = pa.default_memory_pool().backend_name
    with TestClient(make(tmp_path)) as client:
        assert gc.get_freeze_count() > 10_000  # the modules, classes and objects made at start-up
        assert pa.default_memory_pool().backend_name == ("jemalloc" if _jemalloc_built() else pool)
        assert client.get("/healthz").status_code == 200
    assert gc.get_freeze_count() == 0
    assert pa.default_memory_pool().backend_name == pool


def test_two_apps_of_one_process_stay_settled_until_the_last_stops(tmp_path: Path) -> None:
    gc.unfreeze()
    with TestClient(ingest_app(tmp_path / "one")):
        with TestClient(db_service(tmp_path / "two")):
            pass
        assert gc.get_freeze_count() > 10_000  # the other app still runs: still settled
    assert gc.get_freeze_count() == 0


def test_the_pipeline_stats_count_the_collectors_passes(tmp_path: Path) -> None:
    with TestClient(ingest_app(tmp_path)) as client:
        before = client.get("/v1/pipeline/stats").json()
        for _ in range(3):
            gc.collect()
        after = client.get("/v1/pipeline/stats").json()
    assert after["gc_collections"][2] >= before["gc_collections"][2] + 3
    assert after["gc_seconds"] > before["gc_seconds"]
    assert 0 < after["gc_longest_pause_ms"] <= after["gc_seconds"] * 1000
