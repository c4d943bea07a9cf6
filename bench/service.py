#!/usr/bin/env python3
"""The db service over HTTP on loopback, with the load from a separate process (bench/load.py).

    python bench/service.py [--events N] [--avg-size-kb K] [--seconds S] [--repeat R] [--connections C] [--json]

In one run, each a fresh ``lakebench serve --no-ingest`` process, the same Zipf(0.99) key sequence:
- cached lookups, in-process cache and Redis cache (every key requested once before the timed
  runs, so the timed ones are cache hits), with ``GET /health`` of the same server as the ceiling
  (the cheapest answer the server gives: parsing, routing, middleware, JSON), each repetition of the
  lookups followed at once by one of the ceiling; the ratio is the median of the per-repetition ratios;
- uncached lookups (``--cache none``) on each engine.
Each figure is the median of R closed-loop runs of S seconds. Also: an in-process cache hit at
function level (``SwrCache.get`` on a warm key), p50 over 100,000 calls.
Targets: cached lookups >= 70 % of the ceiling's req/s; a function-level hit <= 20 µs p50.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lakebench.cache import CachePolicy, SwrCache
from lakebench.cache.memory import MemoryBackend
from lakebench.core.config import Settings
from lakebench.generate.synthetic import GeneratorSpec, generate
from lakebench.lake.catalog import Lake
from lakebench.lake.writer import LakeWriter
from lakebench.storage.embedded import free_port

HERE = Path(__file__).resolve().parent
TARGET_RATIO = 0.70
TARGET_HIT_US = 20.0


def redis_url() -> str | None:
    try:
        import redis

        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=1).ping()
        return "redis://127.0.0.1:6379/0"
    except Exception:
        return None


class Server:
    def __init__(self, lake: Path, engine: str, cache: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "lakebench.cli", "serve", "--no-auth", "--no-ingest", "--port", str(self.port)]
        command += ["--lake", str(lake), "--engine", engine, "--cache", cache, "--results-dir", str(lake.parent)]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(self.url + "/health", timeout=2).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{engine}/{cache} server did not start") from None
                time.sleep(0.2)

    def warm(self, paths: list[str]) -> None:
        for path in dict.fromkeys(paths):
            urllib.request.urlopen(self.url + path, timeout=60).close()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def load(url: str, paths_file: Path, seconds: float, connections: int) -> dict[str, Any]:
    command = [sys.executable, str(HERE / "load.py"), "--url", url, "--paths", str(paths_file)]
    command += ["--seconds", str(seconds), "--connections", str(connections)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds * 10 + 60)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "requests_per_s": statistics.median(r["requests_per_s"] for r in runs),
        "p50_ms": statistics.median(r["p50_us"] for r in runs) / 1000,
        "p99_ms": statistics.median(r["p99_us"] for r in runs) / 1000,
        "spread_requests_per_s": [min(r["requests_per_s"] for r in runs), max(r["requests_per_s"] for r in runs)],
        "errors": sum(sum(r["errors"].values()) for r in runs),
        "runs": runs,
    }


def function_level_hit(samples: int = 100_000) -> dict[str, Any]:
    cache = SwrCache(MemoryBackend(), CachePolicy())
    body = b"x" * 2_000
    keys = [f"entity\x1fen.wikipedia.org\x1fPage {i}" for i in range(1_000)]
    for key in keys:
        cache.get(key, lambda: (body, True))
    timings = np.empty(samples, dtype=np.int64)
    for i in range(samples):
        key = keys[i % len(keys)]
        started = time.perf_counter_ns()
        cache.get(key, lambda: (body, True))
        timings[i] = time.perf_counter_ns() - started
    cache.close()
    return {
        "samples": samples,
        "p50_us": float(np.percentile(timings, 50)) / 1000,
        "p99_us": float(np.percentile(timings, 99)) / 1000,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_000, help="events in the lake (size option)")
    parser.add_argument("--avg-size-kb", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lakebench-bench-service-"))
    results: dict[str, Any] = {"bench": "service", "events": args.events, "avg_size_kb": args.avg_size_kb}
    try:
        events = list(generate(GeneratorSpec(count=args.events, avg_size_kb=args.avg_size_kb, seed=11)))
        with Lake(Settings(lake=str(work / "lake"))) as lake:
            LakeWriter(lake).write(events)
        keys = sorted({(e.entity_ns, e.entity_id) for e in events})
        ranks = np.arange(1, len(keys) + 1)
        weights = 1.0 / ranks**0.99
        picks = np.random.default_rng(5).choice(len(keys), size=20_000, p=weights / weights.sum())
        paths = [f"/v1/entities/{keys[i][0]}/{quote(keys[i][1], safe='')}" for i in picks]
        lookups = work / "lookups.txt"
        lookups.write_text("\n".join(paths) + "\n", encoding="utf-8")
        health = work / "health.txt"
        health.write_text("/health\n", encoding="utf-8")

        configurations: list[tuple[str, str, str, bool]] = [("cached-memory", "lake-indexed", "memory", True)]
        redis = redis_url()
        if redis:
            configurations.append(("cached-redis", "lake-indexed", redis, True))
        else:
            results["cached-redis"] = "skipped: no Redis on 127.0.0.1:6379"
        configurations += [(f"uncached-{e}", e, "none", False) for e in ("lake-indexed", "lake-sql", "clickhouse")]
        for name, engine, cache, cached in configurations:
            server = Server(work / "lake", engine, cache)
            try:
                if cached:
                    server.warm(paths)
                else:
                    load(server.url, lookups, min(2.0, args.seconds), args.connections)  # the same warm-up for all
                runs, ceiling = [], []
                for _ in range(args.repeat):
                    runs.append(load(server.url, lookups, args.seconds, args.connections))
                    if cached:  # the ceiling of this server, run right after: a drift of the machine hits both
                        ceiling.append(load(server.url, health, args.seconds, args.connections))
                results[name] = summary(runs)
                if cached:
                    results[name]["ceiling_health"] = summary(ceiling)
                    pairs = [r["requests_per_s"] / c["requests_per_s"] for r, c in zip(runs, ceiling, strict=True)]
                    results[name]["ratio_to_ceiling"] = round(statistics.median(pairs), 3)
                    results[name]["ratio_per_repetition"] = [round(p, 3) for p in pairs]
            finally:
                server.stop()
            print(
                f"{name:24s} {results[name]['requests_per_s']:9,.0f} req/s  p50 {results[name]['p50_ms']:7.2f} ms  "
                f"p99 {results[name]['p99_ms']:7.2f} ms  errors {results[name]['errors']}",
                flush=True,
            )
        results["function-level-hit"] = function_level_hit()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ratios = {
        name: results[name]["ratio_to_ceiling"]
        for name in ("cached-memory", "cached-redis")
        if isinstance(results.get(name), dict)
    }
    hit = results["function-level-hit"]
    results["ratios_to_ceiling"] = ratios
    results["targets"] = {
        "cached_over_ceiling": TARGET_RATIO,
        "function_level_hit_p50_us": TARGET_HIT_US,
        "met": all(r >= TARGET_RATIO for r in ratios.values()) and hit["p50_us"] <= TARGET_HIT_US,
    }
    for name, ratio in ratios.items():
        ceiling = results[name]["ceiling_health"]["requests_per_s"]
        print(
            f"{name} / ceiling (GET /health of the same server, {ceiling:,.0f} req/s) = {ratio:.2f}, "
            f"median of per-repetition ratios (target >= {TARGET_RATIO})"
        )
    print(
        f"in-process cache hit, function level: p50 {hit['p50_us']:.1f} µs, p99 {hit['p99_us']:.1f} µs "
        f"(target p50 <= {TARGET_HIT_US:g} µs)"
    )
    if args.json:
        print(json.dumps(results))
    return 0 if results["targets"]["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
