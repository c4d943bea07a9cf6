"""Prometheus metrics of the service (prometheus-client): requests by route and status, latency
per route and per engine query, what the cache did, what ingest took in.

Each app has a registry of its own (tests build several in one process). With several worker
processes, ``PROMETHEUS_MULTIPROC_DIR`` is set before they start and ``/metrics`` adds up the
values every worker wrote there.
"""

from __future__ import annotations

import os
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "lakebench_http_requests", "HTTP requests answered", ["route", "method", "status"], registry=r
        )
        self.http_seconds = Histogram(
            "lakebench_http_request_seconds", "HTTP request latency", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.engine_seconds = Histogram(
            "lakebench_engine_seconds", "engine call latency", ["engine", "query"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.cache_requests = Counter(
            "lakebench_cache_requests", "cache lookups by outcome (fresh and stale are hits)", ["state"], registry=r
        )
        self.cache_engine_calls = Counter("lakebench_cache_engine_calls", "engine reads the cache made", registry=r)
        self.cache_revalidations = Counter(
            "lakebench_cache_revalidations", "background revalidations of stale entries", registry=r
        )
        self.cache_errors = Counter("lakebench_cache_errors", "failures met by the cache", ["kind"], registry=r)
        self.cache_evictions = Counter("lakebench_cache_evictions", "entries evicted for room", registry=r)
        self.cache_stored = Counter("lakebench_cache_stored", "answers stored", registry=r)
        self.cache_refused = Counter(
            "lakebench_cache_refused_stores", "answers read before a purge and not stored after it", registry=r
        )
        self.cache_bytes = Gauge(
            "lakebench_cache_bytes", "bytes the cache backend holds", registry=r, multiprocess_mode="livesum"
        )
        self.ingest_events = Counter(
            "lakebench_ingest_events", "events answered by the ingest API", ["status"], registry=r
        )
        self.ingest_commits = Counter("lakebench_ingest_commits", "commits made by the pipeline", registry=r)
        self.ingest_committed_events = Counter(
            "lakebench_ingest_committed_events", "events committed by the pipeline", registry=r
        )
        self._http: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._states: dict[str, Any] = {}

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One HTTP answer (labelled children are looked up once, then kept: this runs per request)."""
        key = (route, method, status)
        children = self._http.get(key)
        if children is None:
            children = self._http[key] = (
                self.http_requests.labels(route, method, str(status)),
                self.http_seconds.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def cache_listener(self, counter: str, label: str, amount: int) -> None:
        """Hears the cache's counters (lakebench.cache.CacheCounters)."""
        if counter == "requests":
            child = self._states.get(label)
            if child is None:
                child = self._states[label] = self.cache_requests.labels(label)
            child.inc(amount)
        elif counter == "engine_calls":
            self.cache_engine_calls.inc(amount)
        elif counter == "revalidations":
            self.cache_revalidations.inc(amount)
        elif counter in ("backend_errors", "engine_errors"):
            self.cache_errors.labels(counter.removesuffix("_errors")).inc(amount)
        elif counter == "evictions":
            self.cache_evictions.inc(amount)
        elif counter == "stored":
            self.cache_stored.inc(amount)
        elif counter == "refused_stale_store":
            self.cache_refused.inc(amount)

    def exposition(self) -> bytes:
        """The text format, summed over worker processes when there are several."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(registry))
        return bytes(generate_latest(self.registry))
