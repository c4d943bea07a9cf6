#!/usr/bin/env python3
"""Every query of the workload on every engine, like for like, through the main job's method.

    python bench/engines.py [--events N] [--avg-size-kb K] [--samples S] [--search-samples S] [--repeat R]
                            [--profiles direct|local,r2,…] [--compare-events M] [--json]

This is ``lakebench run`` with every workload (lookups Zipf, uniform, latest-written and missing;
history, list page, recent, count by day; full-text search selective, common, two-term AND, no hit)
and the three engines as options (lake-sql, clickhouse, lake-indexed) — so the same method holds
(lakebench/benchmark/job.py): the same queries in the same order for every engine, the same sample
count and warm-up, each engine in a fresh process with empty caches, every answer checked against
the oracle outside the timing, time to first answer apart, three repetitions with a noisy flag.
ClickHouse is configured as its users would: a hot window covering the whole dataset in a
key-sorted MergeTree, no scan of a cold part it does not need. The default profile ``direct`` reads
a local folder with its files dropped from the page cache before each engine's process; name
emulated profiles (``local,r2``) to put the lake behind the S3-protocol endpoint instead.

Ratios are of medians measured in the same run: lake-indexed against clickhouse (the peer) and
against lake-sql, per workload. With --compare-events M, a second run at M events gives the
lookup scaling ratio p50(N) / p50(M) per engine.
Targets (issue 5, at N = 1,000,000): lake-indexed lookup p50 <= 2 ms and >= 5x faster than
clickhouse; search p50 <= 5 ms and >= 100x faster than lake-sql's scan; p50(1M) <= 1.3 x p50(100k).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lakebench.benchmark.job import RunOptions, run_job
from lakebench.benchmark.queries import ALL_WORKLOADS
from lakebench.benchmark.results import RunResult
from lakebench.core.config import Settings
from lakebench.generate.synthetic import GeneratorSpec

ENGINES = ("lake-sql", "clickhouse", "lake-indexed")


def measure(events: int, args: argparse.Namespace, work: Path) -> RunResult:
    options = RunOptions(
        spec=GeneratorSpec(count=events, avg_size_kb=args.avg_size_kb),
        options=ENGINES,
        profiles=tuple(args.profiles.split(",")),
        workloads=ALL_WORKLOADS,
        samples=args.samples,
        search_samples=args.search_samples,
        repeat=args.repeat,
        warmup=args.warmup,
        results_dir=work / "results",
    )
    result, _ = run_job(Settings(lake=str(work / f"lake-{events}")), options)
    return result


def table(result: RunResult) -> dict[str, Any]:
    """{profile: {workload: {engine: figures}}} and ratios of medians."""
    out: dict[str, Any] = {}
    for b in result.benchmarks:
        out.setdefault(b.profile, {}).setdefault(b.name, {})[b.engine] = {
            "p50_ms": b.p50_ms,
            "p95_ms": b.p95_ms,
            "noisy": b.noisy,
            "wrong": b.errors,
            "gets_per_query": None if b.requests_per_query is None else b.requests_per_query.get("GET", 0.0),
        }
    for workloads in out.values():
        for figures in workloads.values():
            mine = figures.get("lake-indexed", {}).get("p50_ms")
            for peer in ("clickhouse", "lake-sql"):
                theirs = figures.get(peer, {}).get("p50_ms")
                if mine and theirs:
                    figures[f"ratio_{peer}_over_lake-indexed"] = theirs / mine
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2_000, help="events in the lake (size option)")
    parser.add_argument("--avg-size-kb", type=float, default=2.0)
    parser.add_argument("--samples", type=int, default=30, help="timed queries per workload and repetition")
    parser.add_argument("--search-samples", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--profiles", default="direct")
    parser.add_argument("--compare-events", type=int, help="a second lake size, for the lookup scaling ratio")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lakebench-bench-engines-") as folder:
        result = measure(args.events, args, Path(folder))
        report: dict[str, Any] = {
            "bench": "engines",
            "events": args.events,
            "avg_size_kb": args.avg_size_kb,
            "method": result.method,
            "first_answer_s": {f"{o.profile} {o.option}": o.first_answer_s for o in result.options},
            "open_to_first_s": {f"{o.profile} {o.option}": o.open_to_first_s for o in result.options},
            "profiles": table(result),
            "result": json.loads(result.to_json()),
        }
        for profile, workloads in report["profiles"].items():
            print(f"profile {profile}: p50 / p95 ms per engine (same queries, same order; ~ noisy)")
            for name, figures in workloads.items():
                cells = "  ".join(
                    f"{e} {f['p50_ms']:9.3f} / {f['p95_ms']:9.3f}{'~' if f['noisy'] else ' '}"
                    + (f" WRONG {f['wrong']}" if f["wrong"] else "")
                    for e in ENGINES
                    if (f := figures.get(e))
                )
                ratios = "  ".join(
                    f"{k.removeprefix('ratio_')} {v:,.1f}x" for k, v in figures.items() if k[:6] == "ratio_"
                )
                print(f"  {name:17s} {cells}  {ratios}")
        for key, seconds in report["first_answer_s"].items():
            opening = report["open_to_first_s"][key]
            print(
                f"  first answer {key}: {seconds:.2f} s after the process started, "
                f"{'?' if opening is None else f'{opening * 1000:.0f} ms'} after open_engine"
            )
        if args.compare_events:
            other = table(measure(args.compare_events, args, Path(folder)))
            report["compare_events"] = args.compare_events
            scaling = {}
            for profile, workloads in report["profiles"].items():
                for engine in ENGINES:
                    big = workloads["lookup-zipf"][engine]["p50_ms"]
                    small = other[profile]["lookup-zipf"][engine]["p50_ms"]
                    scaling[f"{profile} {engine}"] = big / small
                    sizes = f"{args.events:,} / {args.compare_events:,}"
                    print(f"  lookup p50 scaling {engine} ({profile}): {sizes} = {big / small:.2f}")
            report["lookup_scaling"] = scaling
    wrong = sum(b.errors for b in result.benchmarks)
    if args.json:
        print(json.dumps(report))
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
