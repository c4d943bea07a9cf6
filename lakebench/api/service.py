"""``lakebench serve``: the db service — reads (cached), ingest, health, status and metrics in one app.

How it learns about new data:
- commits of its own pipeline: after each flush, the engine is refreshed and every key the commit
  touched is soft-purged in the cache (``Pipeline.hooks.flushed``);
- commits of other processes: every ``poll_s`` the catalog's snapshot is compared; new data files
  are read for their keys, which are purged, and the engine refreshed. With Redis, purges are
  shared at once, and a reader refreshes its engine before any read that follows one (swr.py).

With ``workers`` > 1 (uvicorn worker processes behind one port) each worker has a pipeline of its
own — a state folder slot ``<state>/worker-N`` it locks — and ``POST /v1/flush`` on any of them
flushes all of them: the request is broadcast through Redis, which ``workers`` > 1 requires.

It also starts benchmark runs and serves their reports, and generates synthetic events into its
pipeline (lakebench/api/bench.py); ``/status`` names the newest run's decisions.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import orjson
from fastapi import APIRouter, FastAPI, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from lakebench.api.app import App, install_error_handlers, install_openapi
from lakebench.api.bench import BenchLimits, LastDecision, bench_router, last_decision
from lakebench.api.bench_runs import BenchRuns
from lakebench.api.generate import generate_router, openapi_models
from lakebench.api.ingest import FastIngest, IngestSettings, pipeline_router
from lakebench.api.metrics import Metrics
from lakebench.api.middleware import RequestContext
from lakebench.api.problems import json_response
from lakebench.api.read import ReadService, cache_key, read_router
from lakebench.api.siblings import claim_pipeline
from lakebench.cache import CachePolicy, SwrCache, open_backend
from lakebench.cache.redis import Subscription
from lakebench.core.config import Settings
from lakebench.core.errors import ConfigError, TransientError
from lakebench.core.logs import fields
from lakebench.core.models import Event, EventRow
from lakebench.core.process import settled_server
from lakebench.decide.thresholds import LOOKUP_CACHE_LIMIT_MS, LOOKUP_THRESHOLD_MS, SEARCH_THRESHOLD_MS
from lakebench.engines import open_engine
from lakebench.lake.catalog import Lake
from lakebench.pipeline.core import Pipeline, PipelineConfig
from lakebench.pipeline.dlq import DeadLetters
from lakebench.storage.parquet_io import read_column

log = logging.getLogger(__name__)
WORKER = f"pid-{os.getpid()}"  # which worker process answered (X-Served-By)
HEALTH_TTL_S = 2.0


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    settings: Settings
    engine: str = "lake-indexed"
    cache: str | None = "memory"  # a backend URL (memory, memory://?max_mb=N, redis://...), None: no cache
    policy: CachePolicy = CachePolicy()
    token: str | None = None  # ingest and SQL; None only when explicitly serving without authentication
    read_token: str | None = None  # reads are open unless set
    ingest: bool = True
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    ingest_settings: IngestSettings = field(default_factory=lambda: IngestSettings(token=None))
    dlq_max_bytes: int = 1 << 30
    poll_s: float = 2.0  # how often other processes' commits are looked for
    warm_index: bool = True  # lake-indexed: fetch its index blocks and footers in the background
    workers: int = 1
    results_dir: Path = Path("results")  # benchmark runs write here; /status and /report read here
    bench: BenchLimits = field(default_factory=BenchLimits)


class Health(BaseModel):
    status: Literal["ok", "degraded", "failing"]
    checks: dict[str, dict[str, Any]]


class Status(BaseModel):
    engine: str
    cache: dict[str, Any]
    thresholds_ms: dict[str, float]
    decision: LastDecision | None = Field(description="the newest result file's decisions; null when none")
    workers: int
    ingest: bool


def touched_keys(events: Sequence[Event | EventRow]) -> list[str]:
    keys = {(e.entity_ns, e.entity_id) for e in events}
    return [cache_key(kind, ns, eid) for ns, eid in keys for kind in ("entity", "history")]


class CommitWatcher:
    """Notices commits made by other processes (by polling the catalog), refreshes the engine and
    purges the keys the new files hold."""

    def __init__(self, lake: Lake, reader: ReadService, cache: SwrCache | None, interval_s: float) -> None:
        self._lake, self._reader, self._cache, self._interval = lake, reader, cache, interval_s
        self._files: set[str] | None = None
        self._snapshot: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lakebench-commit-watcher", daemon=True)

    def start(self) -> None:
        self._snapshot, files = self._lake.snapshot_files()
        self._files = set(files)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.check()
            except Exception:
                log.exception("looking for new commits failed; trying again in %.1f s", self._interval)

    def check(self) -> int:
        """Look once; returns how many keys were purged."""
        snapshot, files = self._lake.snapshot_files()
        if snapshot == self._snapshot:
            return 0
        new = {url: size for url, size in files.items() if url not in (self._files or set())}
        keys: list[str] = []
        for url, size in new.items():
            key = self._lake.key_of(url)
            ns = read_column(self._lake.store, key, size, "entity_ns").to_pylist()
            ids = read_column(self._lake.store, key, size, "entity_id").to_pylist()
            keys += [cache_key(kind, n, i) for n, i in set(zip(ns, ids, strict=True)) for kind in ("entity", "history")]
        self._reader.refresh()
        if self._cache is not None and keys:
            self._cache.purge(keys)
        self._snapshot, self._files = snapshot, set(files)
        return len(keys)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)


class FlushBroadcast:
    """``POST /v1/flush`` on one worker flushes every worker's pipeline, through Redis pub/sub."""

    def __init__(self, redis_url: str, channel: str, flush: Callable[[], int]) -> None:
        import redis

        self._client: Any = redis.Redis.from_url(redis_url)
        self._channel = channel
        self._flush = flush
        self._me = uuid.uuid4().hex
        self._acks: dict[str, list[int]] = {}
        self._lock = threading.Condition()
        self._subscription = Subscription(redis_url, channel, self._on_message)

    def _on_message(self, message: dict[str, Any]) -> None:
        note = orjson.loads(message["data"])
        if note["kind"] == "flush" and note["origin"] != self._me:
            committed = self._flush()
            reply = {"kind": "ack", "id": note["id"], "origin": self._me, "committed": committed}
            self._client.publish(self._channel, orjson.dumps(reply))
        elif note["kind"] == "ack":
            with self._lock:
                if note["id"] in self._acks:
                    self._acks[note["id"]].append(int(note["committed"]))
                    self._lock.notify_all()

    def flush_all(self, timeout_s: float = 60.0) -> int:
        committed = self._flush()
        flush_id = uuid.uuid4().hex
        with self._lock:
            self._acks[flush_id] = []
        note = orjson.dumps({"kind": "flush", "id": flush_id, "origin": self._me})
        # Redis says how many subscribers got it (this worker too): the workers that are up. One still
        # starting has not subscribed yet, and holds nothing to flush.
        others = int(self._client.publish(self._channel, note)) - 1
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while len(self._acks[flush_id]) < others:
                left = deadline - time.monotonic()
                if left <= 0:
                    acks = self._acks.pop(flush_id)
                    raise TransientError(f"only {len(acks)} of {others} other workers confirmed the flush")
                self._lock.wait(left)
            return committed + sum(self._acks.pop(flush_id))

    def close(self) -> None:
        self._subscription.close()
        self._client.close()


def _lake_namespace(lake: Lake) -> str:
    """The cache's namespace: one per table (several lakes may share a Redis)."""
    identity = f"{lake.url}\n{lake.table(create=False).metadata.table_uuid}"
    return hashlib.blake2b(identity.encode(), digest_size=8).hexdigest()


def check_config(config: ServiceConfig) -> None:
    """What can be told wrong before anything starts: a bad engine name, a cache that is not there,
    several workers without a shared cache."""
    from lakebench.engines import ENGINES

    if config.engine not in ENGINES:
        raise ConfigError(f"unknown engine {config.engine!r}; choose one of: {', '.join(sorted(ENGINES))}")
    if config.workers > 1 and not (config.cache or "").startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("--workers above 1 needs a shared cache: --cache redis://host:port/db")
    if config.cache:
        backend = open_backend(config.cache)
        ok, detail = backend.healthy()
        backend.close()
        if not ok and config.workers > 1:
            raise ConfigError(f"the cache at {config.cache} does not answer ({detail}); the workers need it")


def _warm(warm: Callable[[], dict[str, float]]) -> None:
    try:
        done = warm()
        log.info("index warmed", extra=fields(**done))
    except Exception:
        log.exception("warming the index failed; lookups fetch what they need instead")


def build_app(config: ServiceConfig) -> FastAPI:
    check_config(config)
    lake = Lake(config.settings)
    lake.table(create=config.ingest)  # a service that only reads creates nothing
    metrics = Metrics()
    engine = open_engine(config.engine, lake)
    cache: SwrCache | None = None
    reader = ReadService(engine, None, metrics, config.policy)
    if config.cache:
        backend = open_backend(config.cache, namespace=_lake_namespace(lake))
        cache = SwrCache(backend, config.policy, refresh=reader.refresh)
        cache.counters.listener = metrics.cache_listener
        if hasattr(backend, "on_evict"):
            backend.on_evict = lambda n: cache.counters.add("evictions", n) if cache else None
        reader.cache = cache
    pipeline = claim_pipeline(lake, config.pipeline, config.workers) if config.ingest else None
    watcher = CommitWatcher(lake, reader, cache, config.poll_s)
    runs = BenchRuns(config.settings, config.results_dir, keep=config.bench.keep_runs)
    broadcast: FlushBroadcast | None = None

    def on_commit(events: list[EventRow]) -> None:
        reader.refresh()  # first: a read after the purge must see the commit
        if cache is not None:
            cache.purge(touched_keys(events))
        metrics.ingest_commits.inc()
        metrics.ingest_committed_events.inc(len(events))

    if pipeline is not None:
        pipeline.hooks.flushed.append(on_commit)

    def flush_and_hear() -> int:
        """Flush this worker's pipeline, then wait until its near cache has heard every purge so far:
        a flush answered means every worker that confirmed it reads the new versions."""
        assert pipeline is not None
        committed = pipeline.flush()
        sync = getattr(cache.backend, "sync", None) if cache is not None else None
        if sync is not None and not sync():
            raise TransientError("this worker did not hear the cache purges in time")
        return committed

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal broadcast
        if pipeline is not None:
            pipeline.start()
            if config.workers > 1 and config.cache:
                channel = f"lakebench:{_lake_namespace(lake)}:flush"
                broadcast = FlushBroadcast(config.cache, channel, flush_and_hear)
        watcher.start()
        warm = getattr(engine, "warm", None)  # lake-indexed: its index blocks and footers, in the background
        if warm is not None and config.warm_index:
            threading.Thread(target=_warm, args=(warm,), name="lakebench-index-warm", daemon=True).start()
        try:
            with settled_server():
                yield
        finally:
            runs.close()
            watcher.stop()
            if broadcast is not None:
                broadcast.close()
            if pipeline is not None:
                pipeline.stop(flush=pipeline.failure is None)
            if cache is not None:
                cache.close()
            engine.close()
            lake.close()

    app = App(
        title="lakebench",
        version="0.1.0",
        lifespan=lifespan,
        description="Events and documents on object storage: read (cached), ingest, health, metrics and "
        "the benchmark that decides between the architecture options.",
    )
    observe, served_by = _observer(metrics), ((b"x-served-by", WORKER.encode()),)
    app.add_middleware(RequestContext, observe=observe, headers=served_by)
    if pipeline is not None:
        dlq = DeadLetters(lake.store, max_total_bytes=config.dlq_max_bytes)
        settings = replace(config.ingest_settings, token=config.token)
        app.fast_ingest = FastIngest(pipeline, dlq, settings, metrics, observe, served_by)

        def flush() -> int:
            return broadcast.flush_all() if broadcast is not None else flush_and_hear()

        app.include_router(pipeline_router(pipeline, dlq, settings, flush=flush, metrics=metrics))
        app.include_router(generate_router(pipeline, dlq, config.bench, token=config.token, metrics=metrics))
    app.include_router(read_router(reader, read_token=config.read_token, sql_token=config.token))
    app.include_router(
        bench_router(runs, config.results_dir, config.bench, token=config.token, read_token=config.read_token)
    )
    app.include_router(_ops_router(config, lake, reader, cache, pipeline, metrics))
    install_error_handlers(app)
    install_openapi(app, openapi_models(config.bench))
    return app


def _ops_router(
    config: ServiceConfig,
    lake: Lake,
    reader: ReadService,
    cache: SwrCache | None,
    pipeline: Pipeline | None,
    metrics: Metrics,
) -> APIRouter:
    router = APIRouter(tags=["ops"])

    def health_checks() -> dict[str, dict[str, Any]]:
        checks: dict[str, dict[str, Any]] = {}
        try:
            snapshot = lake.table(create=False).current_snapshot()
            checks["catalog"] = {"ok": True, "detail": f"snapshot {snapshot.snapshot_id if snapshot else 'none'}"}
        except Exception as exc:
            checks["catalog"] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"[:300]}
        try:
            objects = sum(1 for _ in zip(range(1), lake.store.list(lake.data_prefix + "/"), strict=False))
            checks["lake"] = {"ok": True, "detail": f"{lake.url} answers ({objects} object listed)"}
        except Exception as exc:
            checks["lake"] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"[:300]}
        if cache is not None:
            ok, detail = cache.backend.healthy()
            checks["cache"] = {"ok": ok, "detail": f"{cache.backend.name}: {detail}", "optional": True}
        if pipeline is not None:
            checks["pipeline"] = {
                "ok": pipeline.failure is None,
                "detail": pipeline.failure or f"{pipeline.buffered_events} events buffered",
            }
        return checks

    checked: dict[str, Any] = {"at": -1e9, "checks": {}}
    checking = threading.Lock()

    async def current_checks() -> dict[str, dict[str, Any]]:
        """The dependencies' state, looked at again at most every HEALTH_TTL_S (one look at a time):
        a health probe under load costs what a liveness answer costs."""
        if time.monotonic() - checked["at"] > HEALTH_TTL_S and checking.acquire(blocking=False):
            try:
                checked["checks"] = await run_in_threadpool(health_checks)
                checked["at"] = time.monotonic()
            finally:
                checking.release()
        result: dict[str, dict[str, Any]] = checked["checks"]
        return result

    @router.get("/health", response_model=Health, responses={503: {"model": Health, "description": "failing"}})
    async def health() -> Response:
        """Liveness and the state of each dependency (looked at every 2 s at most). A cache that is
        down degrades (reads go to the engine); a lake, catalog or pipeline that fails is failing (503)."""
        checks = await current_checks()
        failing = any(not c["ok"] for c in checks.values() if not c.get("optional"))
        degraded = any(not c["ok"] for c in checks.values())
        status = "failing" if failing else "degraded" if degraded else "ok"
        return json_response({"status": status, "checks": checks}, 503 if failing else 200)

    @router.get("/healthz", response_model=Health, responses={503: {"model": Health}}, include_in_schema=False)
    async def healthz() -> Response:
        if pipeline is not None and pipeline.failure is not None:
            return json_response({"status": "failing", "reason": pipeline.failure}, 503)
        return json_response({"status": "ok"})

    @router.get("/status", response_model=Status)
    async def status() -> Response:
        """The engine, the cache's settings, the thresholds, and the newest benchmark run's decisions
        (from the newest result file in the results folder)."""
        cache_info: dict[str, Any] = {"backend": None}
        if cache is not None:
            policy = cache.policy
            cache_info = {
                "backend": cache.backend.name,
                "cache_control": policy.cache_control(),
                "max_age_s": policy.max_age_s,
                "stale_while_revalidate_s": policy.stale_while_revalidate_s,
                "stale_if_error_s": policy.stale_if_error_s,
                "negative_ttl_s": policy.negative_ttl_s,
                "counters": {
                    "requests": dict(cache.counters.requests),
                    "engine_calls": cache.counters.engine_calls,
                    "revalidations": cache.counters.revalidations,
                },
            }
        document = {
            "engine": reader.engine.name,
            "cache": cache_info,
            "thresholds_ms": {
                "lookup": LOOKUP_THRESHOLD_MS,
                "lookup_with_cache": LOOKUP_CACHE_LIMIT_MS,
                "search": SEARCH_THRESHOLD_MS,
            },
            "decision": await run_in_threadpool(last_decision, config.results_dir),
            "workers": config.workers,
            "ingest": pipeline is not None,
        }
        return json_response(document)

    @router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus() -> Response:
        """Prometheus text format: requests, latencies, cache outcomes, ingest."""
        if cache is not None:
            metrics.cache_bytes.set(await run_in_threadpool(_bytes_held, cache))
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return router


def _bytes_held(cache: SwrCache) -> int:
    try:
        return cache.backend.bytes_held()
    except Exception:
        return 0


def _observer(metrics: Metrics) -> Callable[[Any, int, float], None]:
    def observe(scope: Any, status: int, seconds: float) -> None:
        metrics.request(getattr(scope.get("route"), "path", "unmatched"), scope.get("method", ""), status, seconds)

    return observe


__all__ = ["ServiceConfig", "build_app", "touched_keys"]
