#!/usr/bin/env python3
"""Direct lookups on every engine under each network profile, like for like, in one run.

    python bench/profiles.py [--events N] [--avg-size-kb K] [--samples S] [--repeat R]
                             [--profiles local,r2,s3-standard,s3-express] [--engines …] [--json]

The lake lives in a real S3-protocol server (moto, on loopback). Each profile puts a
``ProfiledEndpoint`` in front of it (lakebench/storage/netem.py: per-request time to first byte
drawn from the profile's log-normal, per-connection bandwidth), and every engine — DuckDB's httpfs,
chDB's s3(), boto3 — reads through it, so the endpoint's counters give GETs and bytes per lookup
for every engine in one place. Method, the same for every engine and profile:
- the same Zipf(0.99) key sequence (plus missing keys), the same warm-up, the same sample count;
- each answer checked outside the timing against the oracle (lake-sql on the `local` profile,
  computed first): a wrong answer counts, and the engine's figures say so;
- hot: R repetitions of the timed sequence in one process; the figure is the median of the
  per-repetition p50 / p95, with their spread; a spread of either over 10 % of its median is
  flagged noisy; each engine under each profile starts with empty local caches;
- time to first answer: a fresh ``lakebench lookup`` process (process start to the answer, and the
  opening part of it), its own figure, never folded into the hot ones;
- with --open-rate R, the same keys also in an open loop at R calls/s (latency from each call's due
  time, wrk2's rule) beside a closed loop, one caller each (lakebench/benchmark/loop.py);
- per profile, the seed's decision from lake-sql's hot p95 (Option 1 < 500 ms <= Option 2 < 2000 ms
  <= Option 3).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lakebench.benchmark.loop import closed_loop, open_loop
from lakebench.benchmark.workloads import key_space
from lakebench.core.config import S3Settings, Settings
from lakebench.decide.thresholds import decide
from lakebench.engines import open_engine
from lakebench.generate.synthetic import GeneratorSpec, generate
from lakebench.lake.catalog import Lake
from lakebench.lake.writer import LakeWriter
from lakebench.storage.netem import PROFILES, profiled

ENGINES = ["lake-sql", "lake-indexed", "clickhouse"]
NOISY = 0.10


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
            return proc, url
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto did not start") from None
            time.sleep(0.1)


CREDENTIALS = {"access_key_id": "bench", "secret_access_key": "bench"}


def settings_for(endpoint: str, bucket: str, catalog: Path) -> Settings:
    s3 = S3Settings(endpoint=endpoint, region="us-east-1", **CREDENTIALS)
    return Settings(lake=f"s3://{bucket}/lake", catalog=f"sqlite:///{catalog}", s3=s3)


def first_answer(settings: Settings, engine: str, key: tuple[str, str], cache: Path) -> dict[str, float]:
    """A fresh process: ``lakebench lookup``, process start to the answer (its own report)."""
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(cache),  # a new process with no local caches
        "LAKEBENCH_S3_ENDPOINT": settings.s3.endpoint or "",
        "AWS_ACCESS_KEY_ID": CREDENTIALS["access_key_id"],
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS["secret_access_key"],
    }
    command = [sys.executable, "-m", "lakebench.cli", "lookup", *key, "--engine", engine, "--json"]
    command += ["--lake", settings.lake, "--catalog", settings.catalog or ""]
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=True)
    wall = time.perf_counter() - started
    document = json.loads(out.stdout)
    return {"first_answer_s": document["first_answer_s"], "open_s": document["open_s"], "wall_s": wall}


def percentiles(samples: list[float]) -> dict[str, float]:
    p50, p95, p99 = (float(v) for v in np.percentile(samples, [50, 95, 99]))
    return {"p50_ms": p50, "p95_ms": p95, "p99_ms": p99}


def hot(
    settings: Settings,
    engine_name: str,
    keys: list[tuple[str, str]],
    warmup: list[tuple[str, str]],
    oracle: dict[tuple[str, str], str | None],
    repeat: int,
    endpoint: Any,
    open_rate: float | None = None,
) -> dict[str, Any]:
    with Lake(settings) as lake:
        engine = open_engine(engine_name, lake)
        try:
            for key in warmup:
                engine.lookup(*key)
            runs = []
            for _ in range(repeat):
                endpoint.stats.reset()
                samples, wrong = [], 0
                for key in keys:
                    started = time.perf_counter_ns()
                    event = engine.lookup(*key)
                    samples.append((time.perf_counter_ns() - started) / 1e6)
                    if (event.event_id if event is not None else None) != oracle[key]:
                        wrong += 1
                traffic = endpoint.stats.snapshot()
                requests = sum(traffic["requests"].values())
                runs.append(
                    {
                        **percentiles(samples),
                        "samples_ms": samples,
                        "wrong_answers": wrong,
                        "requests_per_lookup": {k: v / len(keys) for k, v in traffic["requests"].items()},
                        "all_requests_per_lookup": requests / len(keys),
                        "bytes_per_lookup": traffic["bytes_out"] / len(keys),
                    }
                )
            loops = {}
            if open_rate:  # the same keys at a constant rate, latency from when each was due
                loops["open"] = open_loop(lambda k: engine.lookup(*k), keys, open_rate).summary()
                loops["closed"] = closed_loop(lambda k: engine.lookup(*k), keys).summary()
        finally:
            engine.close()
    p50s = [r["p50_ms"] for r in runs]
    p95s = [r["p95_ms"] for r in runs]
    median_p50, median_p95 = statistics.median(p50s), statistics.median(p95s)
    spread = max(
        (max(p50s) - min(p50s)) / median_p50 if median_p50 else 0.0,
        (max(p95s) - min(p95s)) / median_p95 if median_p95 else 0.0,
    )
    return {
        "p50_ms": median_p50,
        "p95_ms": median_p95,
        "p50_spread": [min(p50s), max(p50s)],
        "noisy": spread > NOISY,
        "wrong_answers": sum(r["wrong_answers"] for r in runs),
        "requests_per_lookup": statistics.median(r["all_requests_per_lookup"] for r in runs),
        "gets_per_lookup": statistics.median(r["requests_per_lookup"].get("GET", 0.0) for r in runs),
        "bytes_per_lookup": statistics.median(r["bytes_per_lookup"] for r in runs),
        "loops": loops,
        "runs": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2_000, help="events in the lake (size option)")
    parser.add_argument("--avg-size-kb", type=float, default=2.0)
    parser.add_argument("--samples", type=int, default=100, help="timed lookups per repetition")
    parser.add_argument("--missing", type=int, default=20, help="of which keys not in the lake")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profiles", default="local,r2")
    parser.add_argument("--open-rate", type=float, help="also run the keys in an open loop at this rate (calls/s)")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()
    profiles = [p for p in args.profiles.split(",") if p]
    engines = [e for e in args.engines.split(",") if e]
    for name in profiles:
        if name not in PROFILES:
            parser.error(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}")

    work = Path(tempfile.mkdtemp(prefix="lakebench-bench-profiles-"))
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # lake-indexed's local caches start empty
    moto, upstream = start_moto()
    report: dict[str, Any] = {"bench": "profiles", "events": args.events, "avg_size_kb": args.avg_size_kb}
    try:
        import boto3

        bucket = f"bench-{uuid.uuid4().hex[:10]}"
        client = boto3.client(
            "s3",
            endpoint_url=upstream,
            region_name="us-east-1",
            **{
                "aws_access_key_id": CREDENTIALS["access_key_id"],
                "aws_secret_access_key": CREDENTIALS["secret_access_key"],
            },
        )
        client.create_bucket(Bucket=bucket)
        catalog = work / "catalog.db"
        with Lake(settings_for(upstream, bucket, catalog)) as lake:
            written = LakeWriter(lake).write(generate(GeneratorSpec(count=args.events, avg_size_kb=args.avg_size_kb)))
            space = key_space(lake)
        rng = np.random.default_rng(7)
        keys = space.zipf(args.samples - args.missing, rng) + space.missing(args.missing, rng)
        order = rng.permutation(len(keys))
        keys = [keys[int(i)] for i in order]
        warmup = space.uniform(args.warmup, rng)
        report |= {"files": len(written.files), "entities": len(space.keys), "keys": [list(k) for k in keys]}

        # The oracle, outside every timing: lake-sql's answers on the unprofiled server.
        with Lake(settings_for(upstream, bucket, catalog)) as lake:
            engine = open_engine("lake-sql", lake)
            try:
                oracle = {}
                for key in dict.fromkeys(keys):
                    event = engine.lookup(*key)
                    oracle[key] = event.event_id if event is not None else None
            finally:
                engine.close()

        report["profiles"] = {}
        for name in profiles:
            profile = PROFILES[name]
            entry: dict[str, Any] = {"profile": {k: getattr(profile, k) for k in profile.__dataclass_fields__}}
            with profiled(upstream, profile, seed=11) as endpoint:
                settings = settings_for(endpoint.url, bucket, catalog)
                for engine_name in engines:
                    os.environ["XDG_CACHE_HOME"] = str(work / "cache" / name / engine_name)  # no cache from another run
                    figures = hot(settings, engine_name, keys, warmup, oracle, args.repeat, endpoint, args.open_rate)
                    present = next(k for k in keys if oracle[k] is not None)  # the first key the lake holds
                    fresh = work / "first-answer" / name / engine_name
                    figures["time_to_first_answer"] = first_answer(settings, engine_name, present, fresh)
                    entry[engine_name] = figures
                    ttfa = figures["time_to_first_answer"]
                    noisy = " (noisy)" if figures["noisy"] else ""
                    print(
                        f"{name:12s} {engine_name:13s} hot p50 {figures['p50_ms']:8.2f} ms  "
                        f"p95 {figures['p95_ms']:8.2f} ms{noisy}  first answer {ttfa['first_answer_s']:5.2f} s "
                        f"(opening {ttfa['open_s']:5.2f} s)  requests/lookup {figures['requests_per_lookup']:.2f} "
                        f"(GET {figures['gets_per_lookup']:.2f})  KB/lookup {figures['bytes_per_lookup'] / 1e3:7.1f}"
                        f"  wrong {figures['wrong_answers']}",
                        flush=True,
                    )
                    for mode, loop in figures["loops"].items():
                        rate = f" at {loop['rate_per_s']:g}/s" if loop["rate_per_s"] else ""
                        print(
                            f"{'':27s}{mode} loop{rate}: p50 {loop['p50_ms']:.2f} ms  p99 {loop['p99_ms']:.2f} ms  "
                            f"{loop['calls_per_s']} calls/s",
                            flush=True,
                        )
            if "lake-sql" in entry:
                choice = decide(entry["lake-sql"]["p95_ms"], lookup_label=f"lake-sql direct lookup p95 on {name}")
                entry["decision"] = {"option": choice.option, "name": choice.name, "reason": choice.reason}
                print(f"{name:12s} decision: {choice.name} — because {choice.reason}", flush=True)
            report["profiles"][name] = entry
        if "local" in report["profiles"] and len(report["profiles"]) > 1:
            ratios = {}
            for name, entry in report["profiles"].items():
                if name == "local":
                    continue
                for engine_name in engines:
                    base = report["profiles"]["local"][engine_name]["p50_ms"]
                    ratios[f"{engine_name}_p50_{name}_over_local"] = entry[engine_name]["p50_ms"] / base
            report["ratios"] = ratios
            for key, value in ratios.items():
                print(f"  {key} = {value:.2f}")
    finally:
        moto.terminate()
        moto.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(report))
    wrong = sum(e[n]["wrong_answers"] for e in report.get("profiles", {}).values() for n in engines if n in e)
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
