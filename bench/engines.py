#!/usr/bin/env python3
"""Each query of the workload on each engine, over the same lake, measured in one run.

    python bench/engines.py [--events N] [--avg-size-kb K] [--samples S] [--compare-events M] [--s3] [--json]

Engines: lake-sql (DuckDB over Iceberg, the R2 SQL analogue), lake-indexed (key index + one
ranged GET, tantivy for search), clickhouse (chDB MergeTree, the peer). Queries: direct lookup
(Zipf keys), missing-key lookup, history, search top-10, list page, recent, count by day.
lake-sql's search is its scan (regex token match over every latest version: the LIKE scan).
With --compare-events M, lake-indexed lookups are also measured on an M-event lake, for the
scaling ratio. With --s3, lake-indexed also runs on a loopback S3 server (moto), beside a bare
GET of the same bytes. Every sample is kept in the --json output.
Targets at N = 1,000,000: lake-indexed lookup p50 <= 2 ms and >= 5x faster than clickhouse;
search p50 <= 5 ms and >= 100x faster than lake-sql's scan; p50(1M) <= 1.3 x p50(100k).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lakebench.benchmark.workloads import KeySpace, key_space
from lakebench.core.config import S3Settings, Settings
from lakebench.engines import open_engine
from lakebench.engines.lake_indexed import LakeIndexedEngine
from lakebench.generate.synthetic import GeneratorSpec, generate
from lakebench.lake.catalog import Lake
from lakebench.lake.writer import LakeWriter

ENGINES = ["lake-indexed", "clickhouse", "lake-sql"]


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return samples


def stats(samples: list[float]) -> dict[str, Any]:
    p50, p95, p99 = (float(v) for v in np.percentile(samples, [50, 95, 99]))
    return {"n": len(samples), "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "samples_ms": samples}


def build_lake(settings: Settings, events: int, avg_kb: float) -> tuple[Lake, float]:
    lake = Lake(settings)
    started = time.perf_counter()
    LakeWriter(lake).write(generate(GeneratorSpec(count=events, avg_size_kb=avg_kb, seed=17)))
    return lake, time.perf_counter() - started


def search_terms(lake: Lake, keys: KeySpace) -> list[str]:
    """Real words of the lake's documents outside the most common few hundred: selective, as search terms are."""
    from lakebench.core.text import tokens
    from lakebench.engines.lake_sql import LakeSqlEngine
    from lakebench.generate.text import COMMON

    common = set(COMMON)
    engine = LakeSqlEngine(lake)
    words: list[str] = []
    step = max(1, min(100, len(keys.keys) // 20))  # about 20 entities spread over the key space, small lakes too
    for ns, eid in keys.keys[step : 20 * step + 1 : step]:
        event = engine.lookup(ns, eid)
        if event is not None and event.body:
            body = [t for t in tokens(event.body) if t not in common]
            words += body[len(body) // 2 : len(body) // 2 + 1]
    engine.close()
    if len(words) < 3:
        raise SystemExit(f"the lake's bodies hold {len(words)} uncommon words; use more --events or larger bodies")
    return [*words, f"{words[0]} {COMMON[10]}", f"{words[1]} {words[2]}"]


def run_engine(name: str, lake: Lake, keys: KeySpace, samples: int, rng: np.random.Generator) -> dict[str, Any]:
    started = time.perf_counter()
    engine = open_engine(name, lake)
    opened = time.perf_counter() - started
    zipf = keys.zipf(samples, rng)
    missing = keys.missing(samples, rng)
    namespaces = sorted({ns for ns, _ in keys.keys[:1000]})
    terms = search_terms(lake, keys)
    slow = name == "lake-sql"  # its search is a full scan: a few samples say enough
    scan_search = name in ("lake-sql", "clickhouse")
    queries: dict[str, tuple[Callable[[int], Any], int]] = {
        "lookup": (lambda i: engine.lookup(*zipf[i % len(zipf)]), samples),
        "lookup-missing": (lambda i: engine.lookup(*missing[i % len(missing)]), samples),
        "history": (lambda i: engine.history(*zipf[i % len(zipf)]), 20),
        "search-top10": (
            lambda i: engine.search(terms[i % len(terms)], 10),
            5 if slow else 30 if scan_search else samples,
        ),
        "list-page-100": (
            lambda i: engine.list_namespace(namespaces[i % len(namespaces)], None, 100),
            5 if slow else 30,
        ),
        "recent-20": (lambda i: engine.recent(20), 10),
        "count-by-day": (lambda i: engine.count_by("day"), 5),
    }
    report: dict[str, Any] = {"open_s": opened}
    for query, (fn, n) in queries.items():
        fn(0)  # warm-up
        counter = iter(range(1, 10**9))
        report[query] = stats(timed(lambda fn=fn, counter=counter: fn(next(counter)), n))
    engine.close()
    return report


def bare_get_beside_lookups(lake: Lake, keys: KeySpace, samples: int, rng: np.random.Generator) -> dict[str, Any]:
    """lake-indexed lookups and a bare ranged GET of exactly the bytes each lookup fetched."""
    engine = LakeIndexedEngine(lake)
    chosen = keys.zipf(samples, rng)
    engine.lookup(*chosen[0])
    lookups, gets, requests = [], [], []
    for ns, eid in chosen:
        t0 = time.perf_counter_ns()
        engine.lookup(ns, eid)
        lookups.append((time.perf_counter_ns() - t0) / 1e6)
        requests.append(engine.last_stats.requests.get("GET", 0))
        index = engine._index
        _, hi = index.run(ns, eid)
        file_key = index.files[int(index.file[hi - 1])]
        start, length = engine._footers[file_key].row_group_range(int(index.row_group[hi - 1]))
        t0 = time.perf_counter_ns()
        lake.store.get_range(file_key, start, length)
        gets.append((time.perf_counter_ns() - t0) / 1e6)
    engine.close()
    return {"lookup": stats(lookups), "bare_get": stats(gets), "gets_per_lookup": sorted(set(requests))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000, help="events in the lake (size option)")
    parser.add_argument("--avg-size-kb", type=float, default=2.0)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--compare-events", type=int, default=None, help="a second, smaller lake for lookup scaling")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--s3", action="store_true", help="also run lake-indexed on a loopback S3 server")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lakebench-bench-engines-"))
    import os

    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    rng = np.random.default_rng(5)
    report: dict[str, Any] = {"bench": "engines", "events": args.events, "avg_size_kb": args.avg_size_kb}
    try:
        lake, write_s = build_lake(Settings(lake=str(work / "lake")), args.events, args.avg_size_kb)
        keys = key_space(lake)
        report |= {"write_s": write_s, "entities": len(keys.keys), "engines": {}}
        print(f"{args.events:,} events ({len(keys.keys):,} entities) written in {write_s:.1f} s", flush=True)
        for name in args.engines.split(","):
            result = run_engine(name, lake, keys, args.samples, rng)
            report["engines"][name] = result
            summary = "  ".join(f"{q} {result[q]['p50_ms']:.2f}" for q in result if q != "open_s")
            print(f"{name:13s} open {result['open_s']:6.1f} s | p50 ms: {summary}", flush=True)
        engines = report["engines"]
        ratios: dict[str, float] = {}
        if "lake-indexed" in engines and "clickhouse" in engines:
            ratios["lookup_clickhouse_over_indexed"] = (
                engines["clickhouse"]["lookup"]["p50_ms"] / engines["lake-indexed"]["lookup"]["p50_ms"]
            )
        if "lake-indexed" in engines and "lake-sql" in engines:
            ratios["search_scan_over_indexed"] = (
                engines["lake-sql"]["search-top10"]["p50_ms"] / engines["lake-indexed"]["search-top10"]["p50_ms"]
            )
            ratios["lookup_lakesql_over_indexed"] = (
                engines["lake-sql"]["lookup"]["p50_ms"] / engines["lake-indexed"]["lookup"]["p50_ms"]
            )
        if args.compare_events:
            small, _ = build_lake(Settings(lake=str(work / "small")), args.compare_events, args.avg_size_kb)
            small_result = run_engine("lake-indexed", small, key_space(small), args.samples, rng)
            report["compare"] = {"events": args.compare_events, "lake-indexed": small_result}
            ratios["lookup_p50_large_over_small"] = (
                engines["lake-indexed"]["lookup"]["p50_ms"] / small_result["lookup"]["p50_ms"]
            )
        if args.s3:
            report["s3"] = run_on_s3(work, args, rng)
            s3 = report["s3"]
            print(
                f"on S3 (moto, loopback): lake-indexed lookup p50 {s3['lookup']['p50_ms']:.2f} ms beside a bare GET "
                f"of the same bytes p50 {s3['bare_get']['p50_ms']:.2f} ms; GETs per lookup {s3['gets_per_lookup']}"
            )
        local = bare_get_beside_lookups(lake, keys, args.samples, rng)
        report["local_bare_get"] = local
        print(
            f"local: lake-indexed lookup p50 {local['lookup']['p50_ms']:.2f} ms beside a bare read of the same bytes "
            f"p50 {local['bare_get']['p50_ms']:.2f} ms"
        )
        report["ratios"] = ratios
        for name, value in ratios.items():
            print(f"  {name} = {value:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(report))
    return 0


def run_on_s3(work: Path, args: argparse.Namespace, rng: np.random.Generator) -> dict[str, Any]:
    import subprocess
    import urllib.request

    import boto3

    from tests.integration.servers import free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        creds = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **creds).create_bucket(Bucket="bench")
        settings = Settings(
            lake="s3://bench/lake",
            catalog=f"sqlite:///{work}/s3-catalog.db",
            s3=S3Settings(endpoint=endpoint, access_key_id="bench", secret_access_key="bench"),
        )
        events = min(args.events, 50_000)
        lake, _ = build_lake(settings, events, args.avg_size_kb)
        result = bare_get_beside_lookups(lake, key_space(lake), args.samples, rng)
        result["events"] = events
        return result
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
