"""The architecture options a run compares, each a real stack reached the same way.

- ``lake-sql`` (the seed's Option 1): SQL over the lake's Parquet (DuckDB, one connection, its object
  cache on), no cache;
- ``lake-sql+cache`` (Option 2): the same behind the stale-while-revalidate cache the db service
  uses (lakebench/cache/swr.py), caching entity and history answers as the service does;
- ``clickhouse`` (Option 3): ClickHouse (chDB) holding the hot window in a key-sorted MergeTree;
- ``lake-indexed`` and ``lake-indexed+cache`` (Option 4): the lake with the key and full-text
  indexes its writer wrote beside the data, with and without the cache.

``OptionRunner.ask`` returns the engine's answer and, for a cached option, whether the cache served
it — what the run's hit ratio is measured from. ``HttpRunner`` reaches the same stack end to end:
the db service with the option's engine and cache, over HTTP.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode

import orjson

from lakebench.benchmark.queries import Query, answer, call
from lakebench.cache.base import CachePolicy
from lakebench.cache.memory import MemoryBackend
from lakebench.cache.swr import SwrCache
from lakebench.core.config import Settings
from lakebench.core.errors import ConfigError
from lakebench.core.process import stop_process
from lakebench.engines import open_engine
from lakebench.engines.base import QueryError
from lakebench.lake.catalog import Lake


@dataclass(frozen=True, slots=True)
class OptionSpec:
    name: str
    engine: str
    cached: bool
    cost_option: int  # the line in the cost model (lakebench/decide/cost.py)
    description: str


OPTIONS: Final[dict[str, OptionSpec]] = {
    o.name: o
    for o in (
        OptionSpec("lake-sql", "lake-sql", False, 1, "Option 1: SQL over the lake (DuckDB), no cache"),
        OptionSpec("lake-sql+cache", "lake-sql", True, 2, "Option 2: lake SQL behind a stale-while-revalidate cache"),
        OptionSpec("clickhouse", "clickhouse", False, 3, "Option 3: ClickHouse (chDB) hot window + the lake"),
        OptionSpec("lake-indexed", "lake-indexed", False, 4, "Option 4: the lake with its written indexes"),
        OptionSpec(
            "lake-indexed+cache", "lake-indexed", True, 5, "Option 4 with the stale-while-revalidate cache in front"
        ),
    )
}
DEFAULT_OPTIONS: Final = ("lake-sql", "lake-sql+cache", "clickhouse", "lake-indexed")
CACHED_KINDS: Final = frozenset({"lookup", "history"})  # what the db service caches


def option_spec(name: str) -> OptionSpec:
    try:
        return OPTIONS[name]
    except KeyError:
        raise ConfigError(f"unknown option {name!r}; choose from {', '.join(OPTIONS)}") from None


class OptionRunner:
    """One option, opened over one lake."""

    def __init__(self, spec: OptionSpec, lake: Lake) -> None:
        self.spec = spec
        self.engine = open_engine(spec.engine, lake)
        # An in-process backend as large as the service's default; entries stay fresh for the run.
        self.cache = SwrCache(MemoryBackend(), CachePolicy()) if spec.cached else None

    def ask(self, query: Query) -> tuple[Any, bool | None]:
        """(the engine's answer, or the cached body's bytes; whether the cache served it: None when the
        option has no cache for this query). ``canonical`` turns either into the compared form."""
        if self.cache is None or query.kind not in CACHED_KINDS:
            return call(self.engine, query), None
        key = "\x1f".join([query.kind, *map(str, query.args)])
        served = self.cache.get(key, lambda: self._load(query))
        return served.body, served.state in ("fresh", "stale", "negative")

    @staticmethod
    def canonical(query: Query, raw: Any) -> Any:
        if not isinstance(raw, bytes):
            return answer(query, raw)
        body = orjson.loads(raw)
        if query.kind == "lookup":
            return None if body is None else body["event_id"]
        return [e["event_id"] for e in body]

    def _load(self, query: Query) -> tuple[bytes, bool]:
        raw = call(self.engine, query)
        if query.kind == "lookup":
            return (orjson.dumps(raw.to_json_dict()), True) if raw is not None else (b"null", False)
        return orjson.dumps([e.to_json_dict() for e in raw]), bool(raw)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
        self.engine.close()


class HttpRunner:
    """The option as its users reach it: the db service (``lakebench serve``) in a process of its own,
    with the option's engine and cache (none for an uncached option), asked over HTTP on one
    keep-alive connection. Answers are the service's JSON documents; ``X-Cache`` says whether the
    cache served one."""

    def __init__(self, spec: OptionSpec, settings: Settings, startup_timeout_s: float = 180.0) -> None:
        from lakebench.storage.embedded import die_with_parent, free_port

        self.spec = spec
        port = free_port()
        command = [sys.executable, "-m", "lakebench.cli", "serve", "--engine", spec.engine]
        command += ["--cache", "memory" if spec.cached else "none", "--no-auth", "--no-ingest"]
        command += ["--poll-interval", "86400"]  # nothing commits during a run: no catalog polls among the queries
        command += ["--no-warm-index"]  # every request the option makes belongs to a query, as in process
        command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--lake", settings.lake]
        if settings.catalog:
            command += ["--catalog", settings.catalog]
        env = {**os.environ, "AWS_REGION": settings.s3.region}
        if settings.s3.endpoint:
            env["LAKEBENCH_S3_ENDPOINT"] = settings.s3.endpoint
        if settings.s3.access_key_id and settings.s3.secret_access_key:
            env |= {
                "AWS_ACCESS_KEY_ID": settings.s3.access_key_id,
                "AWS_SECRET_ACCESS_KEY": settings.s3.secret_access_key,
            }
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close(); a file: a chatty server never blocks
        self._proc = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
        self._http = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        deadline = time.monotonic() + startup_timeout_s
        while True:
            try:
                if self._get("/health")[0] == 200:
                    return
            except OSError:
                self._http.close()
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._log.seek(0)
                why = self._log.read()
                self.close()
                last = why.decode(errors="replace").strip().splitlines()[-1:] or ["it did not answer /health"]
                raise ConfigError(f"the db service for {spec.name} did not start: {last[0]}")
            time.sleep(0.05)

    def _get(self, path: str) -> tuple[int, bytes, str | None]:
        self._http.request("GET", path)
        response = self._http.getresponse()
        return response.status, response.read(), response.getheader("X-Cache")

    def ask(self, query: Query) -> tuple[Any, bool | None]:
        a = query.args
        match query.kind:
            case "lookup":
                path = f"/v1/entities/{quote(a[0], safe='')}/{quote(a[1], safe='')}"
            case "history":
                path = f"/v1/entities/{quote(a[0], safe='')}/{quote(a[1], safe='')}/history"
            case "list":
                path = f"/v1/namespaces/{quote(a[0], safe='')}/entities?{urlencode({'limit': a[1]})}"
            case "recent":
                path = f"/v1/recent?{urlencode({'limit': a[0]})}"
            case "count":
                path = f"/v1/count?{urlencode({'by': a[0], **({'since': a[1]} if a[1] else {})})}"
            case "search":
                path = f"/v1/search?{urlencode({'q': a[0], 'limit': a[1]})}"
        status, body, state = self._get(path)
        if status == 404 and query.kind in CACHED_KINDS:
            document: Any = None
        elif status != 200:
            raise QueryError(f"{path}: HTTP {status}: {body[:200]!r}")
        else:
            document = orjson.loads(body)
        served = (
            None if not self.spec.cached or query.kind not in CACHED_KINDS else state in ("fresh", "stale", "negative")
        )
        return ("http", document), served

    @staticmethod
    def canonical(query: Query, raw: Any) -> Any:
        _, d = raw
        match query.kind:
            case "lookup":
                return None if d is None else d["event_id"]
            case "history":
                return [] if d is None else [e["event_id"] for e in d["events"]]
            case "list" | "recent":
                return [[r["entity_ns"], r["entity_id"]] for r in d["items"]]
            case "count":
                return sorted([str(r["value"]), int(r["count"])] for r in d["counts"])
            case "search":
                return sorted([h["entity_ns"], h["entity_id"], h["event_id"]] for h in d["hits"])
        raise ValueError(f"unknown query kind {query.kind!r}")

    def close(self) -> None:
        self._http.close()
        stop_process(self._proc)
        self._log.close()
