#!/usr/bin/env python3
"""Every option under each network profile, like for like, in one run: the main job's method.

    python bench/profiles.py [--events N] [--avg-size-kb K] [--samples S] [--search-samples S] [--repeat R]
                             [--profiles local,r2,s3-standard,s3-express] [--options …] [--workloads …]
                             [--loops 1,2,4] [--open-rate R] [--json]

This is ``lakebench run`` (lakebench/benchmark/job.py) with the profiles named: the lake lives in a
real S3-protocol server on loopback (moto) and each profile puts a ``ProfiledEndpoint`` in front of
it (lakebench/storage/netem.py: per-request time to first byte drawn from the profile's
log-normal, per-connection bandwidth); every engine reads through it, and its counters give
requests and bytes per query for every option. Every option gets the same queries in the same
order, the same warm-up and sample count, a fresh process with empty caches, answers checked
against the oracle; time to first answer is its own figure; three repetitions with a noisy flag.
With --loops, each option also runs the Zipf lookups in closed loops (and, with --open-rate, open
loops at that rate, wrk2's rule) at each concurrency level. Prints per profile and option the hot
p50/p95, time to first answer and requests per lookup, the ratio of each profile's lookup p50 to
local's for the same option, and the decision per profile.
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
from lakebench.benchmark.options import DEFAULT_OPTIONS
from lakebench.core.config import Settings
from lakebench.generate.synthetic import GeneratorSpec


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2_000, help="events in the lake (size option)")
    parser.add_argument("--avg-size-kb", type=float, default=2.0)
    parser.add_argument("--samples", type=int, default=30, help="timed queries per workload and repetition")
    parser.add_argument("--search-samples", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--profiles", default="local,r2,s3-standard,s3-express")
    parser.add_argument("--options", default=",".join(DEFAULT_OPTIONS))
    parser.add_argument("--workloads", default="lookup-zipf,lookup-missing,search-selective")
    parser.add_argument("--loops", default="", help="concurrency levels of the loops, e.g. 1,2,4")
    parser.add_argument("--open-rate", type=float, help="also open loops at this rate (calls/s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lakebench-bench-profiles-") as folder:
        options = RunOptions(
            spec=GeneratorSpec(count=args.events, avg_size_kb=args.avg_size_kb),
            options=tuple(args.options.split(",")),
            profiles=tuple(args.profiles.split(",")),
            workloads=tuple(args.workloads.split(",")),
            samples=args.samples,
            search_samples=args.search_samples,
            repeat=args.repeat,
            warmup=args.warmup,
            results_dir=Path(folder) / "results",
            loop_levels=tuple(int(v) for v in args.loops.split(",") if v),
            open_rate=args.open_rate,
        )
        result, _ = run_job(Settings(lake=str(Path(folder) / "lake")), options)
    figures: dict[str, dict[str, Any]] = {}
    for o in result.options:
        marks = [b for b in result.benchmarks if b.profile == o.profile and b.engine == o.option]
        zipf = next(b for b in marks if b.name == "lookup-zipf")
        requests = zipf.requests_per_query or {}
        entry = {
            "lookup_p50_ms": zipf.p50_ms,
            "lookup_p95_ms": zipf.p95_ms,
            "noisy": zipf.noisy,
            "first_answer_s": o.first_answer_s,
            "open_s": o.open_s,
            "requests_per_lookup": sum(requests.values()),
            "gets_per_lookup": requests.get("GET", 0.0),
            "kb_per_lookup": (zipf.bytes_per_query or 0.0) / 1e3,
            "cache_hit_ratio": zipf.cache_hit_ratio,
            "wrong_answers": sum(b.errors for b in marks),
            "passed": o.passed,
            "monthly_usd": o.monthly_usd,
            "loops": [{k: v for k, v in loop.items() if k != "samples_us"} for loop in o.loops],
        }
        figures.setdefault(o.profile, {})[o.option] = entry
        first = "-" if o.first_answer_s is None else f"{o.first_answer_s:5.2f} s"
        print(
            f"{o.profile:12s} {o.option:15s} lookup p50 {entry['lookup_p50_ms']:8.2f} ms  p95 "
            f"{entry['lookup_p95_ms']:8.2f} ms{' ~' if zipf.noisy else '  '}  first answer {first}  "
            f"requests/lookup {entry['requests_per_lookup']:.2f} (GET {entry['gets_per_lookup']:.2f})  "
            f"KB/lookup {entry['kb_per_lookup']:7.1f}  wrong {entry['wrong_answers']}",
            flush=True,
        )
        for loop in entry["loops"]:
            rate = f" at {loop['rate_per_s']:g}/s" if loop["rate_per_s"] else ""
            print(
                f"{'':29s}{loop['mode']} loop{rate}, {loop['concurrency']} callers: p50 {loop['p50_ms']:.2f} ms  "
                f"p99 {loop['p99_ms']:.2f} ms  {loop['calls_per_s']} calls/s  wrong {loop['wrong_answers']}"
            )
    for profile, decision in result.decisions.items():
        print(f"{profile:12s} decision: {decision.name} — because {decision.reason}")
    ratios = {}
    if "local" in figures:
        for profile, entries in figures.items():
            for option, entry in entries.items():
                if profile != "local" and option in figures["local"]:
                    base = figures["local"][option]["lookup_p50_ms"]
                    ratios[f"{option}_p50_{profile}_over_local"] = entry["lookup_p50_ms"] / base
    for key, value in ratios.items():
        print(f"  {key} = {value:.2f}")
    if args.json:
        document = {
            "bench": "profiles",
            "events": args.events,
            "avg_size_kb": args.avg_size_kb,
            "figures": figures,
            "ratios": ratios,
            "result": json.loads(result.to_json()),
        }
        print(json.dumps(document))
    return 1 if any(e["wrong_answers"] for entries in figures.values() for e in entries.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
