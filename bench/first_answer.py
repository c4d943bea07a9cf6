#!/usr/bin/env python3
"""Time to first answer and hot lookups, every engine, on a large lake: issue 10's targets.

    python bench/first_answer.py [--events N] [--avg-size-kb K] [--spread-files F] [--samples S]
                                 [--engines …] [--spread-engines …] [--no-s3] [--baseline-rev REV]
                                 [--work DIR] [--json]

Lakes (one generator seed, the same events): ``compact`` (the writer's defaults: a few large
files), ``spread`` (the same events over about F files, as a pipeline rolling every few seconds
makes them) and, unless --no-s3, ``s3`` (the compact lake on the S3-protocol server lakebench
starts on loopback, behind a counting endpoint). Kept in --work between runs.

Each engine runs in a fresh process, which reports (1) process start -> first lookup answered,
(2) open_engine -> first lookup answered (the lake's metadata, the engine's open, the lookup),
then, after a warm-up of other keys, (3) the same ``--samples`` lookups, in the same order, for
every engine. The S3 lake counts the GETs of (2) at the server. Every answer (the first one, the
hot ones) is checked outside the timing against the newest event of the key read from the files
with pyarrow. ``lakebench lookup`` is timed from the shell, process start to exit.

--baseline-rev runs lake-indexed as it was at that revision (default: the last commit before
writers wrote indexes) on the compact lake, in the same run: its readers built their indexes on
first open and stored them under the lake's ``index/`` (that first open is not timed; the timed
one loads them, as a second reader would) — the "hot lookup p50 no worse than today" comparison.

Targets (lake-indexed at 1,000,000 events of ~2 KB): open -> first answer <= 300 ms on the folder
lake and <= 5 GETs on the S3-protocol server; spread over 5,000 files <= 500 ms and lookup p50 <=
2 ms; hot p50 no worse than the baseline; `lakebench lookup` from the shell <= 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("BENCH_LAKEBENCH_ROOT", str(ROOT)))

BASELINE_REV = "df619a0"  # lake-indexed before issue 10: readers built and stored the indexes


# -- the child: one engine, one fresh process -----------------------------------------------------------


def child(spec: dict[str, Any]) -> None:
    from lakebench.core.config import S3Settings, Settings
    from lakebench.core.process import process_age_s
    from lakebench.engines import open_engine
    from lakebench.lake.catalog import Lake

    keys = [tuple(k) for k in spec["keys"]]
    first, warmup, timed = keys[0], keys[1 : 1 + spec["warmup"]], keys[1 + spec["warmup"] :]
    s3 = S3Settings(**spec["s3"]) if spec.get("s3") else S3Settings()
    started = time.perf_counter()
    lake = Lake(Settings(lake=spec["lake"], catalog=spec.get("catalog"), s3=s3))
    engine = open_engine(spec["engine"], lake)
    found = engine.lookup(*first)
    open_to_first = time.perf_counter() - started
    out: dict[str, Any] = {
        "process_to_first_s": process_age_s(),
        "open_to_first_s": open_to_first,
        "first": found.event_id if found else None,
    }
    print(json.dumps(out), flush=True)
    sys.stdin.readline()  # the parent has read the endpoint's counters
    warmed = engine.warm() if spec.get("warm") else None  # type: ignore[attr-defined]
    for key in warmup:
        engine.lookup(*key)
    samples, answers = [], []
    for key in timed:
        began = time.perf_counter()
        event = engine.lookup(*key)
        samples.append((time.perf_counter() - began) * 1000)
        answers.append(event.event_id if event else None)
    engine.close()
    print(json.dumps({"samples_ms": samples, "answers": answers, "warmed": warmed}), flush=True)


# -- the parent -------------------------------------------------------------------------------------------


def write_lake(folder: Path, args: argparse.Namespace, files: int | None, s3: Any = None) -> str:
    from lakebench.core.config import Settings
    from lakebench.generate.synthetic import GeneratorSpec, generate
    from lakebench.lake.catalog import Lake
    from lakebench.lake.writer import LakeWriter, WriterOptions

    url = str(folder / "lake") if s3 is None else s3[0]
    from lakebench.index.keys import FORMAT

    marker = folder / "written.json"
    written = [args.events, args.avg_size_kb, files, FORMAT]
    if s3 is None and marker.exists() and json.loads(marker.read_text()) == written:
        return url
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    spec = GeneratorSpec(count=args.events, avg_size_kb=args.avg_size_kb, seed=args.seed)
    raw = args.events * args.avg_size_kb * 1100
    options = WriterOptions() if files is None else WriterOptions(target_file_bytes=int(raw / files))
    settings = Settings(lake=url, catalog=f"sqlite:///{folder}/catalog.db", s3=s3[1]) if s3 else Settings(lake=url)
    began = time.perf_counter()
    with Lake(settings) as lake:
        result = LakeWriter(lake, options).write(generate(spec))
    print(
        f"  wrote {result.events:,} events in {len(result.files):,} files to {url} "
        f"in {time.perf_counter() - began:.0f} s"
    )
    marker.write_text(json.dumps(written))
    return url


def expected_answers(lake_url: str, keys: list[tuple[str, str]], catalog: str | None = None) -> list[str | None]:
    """The newest event id of each key, read from the live files with pyarrow (not an engine)."""
    import pyarrow.compute as pc

    from lakebench.core.config import Settings
    from lakebench.lake.catalog import Lake

    with Lake(Settings(lake=lake_url, catalog=catalog)) as lake:
        table = lake.table().scan(selected_fields=("entity_ns", "entity_id", "ts", "version", "event_id")).to_arrow()
    order = pc.sort_indices(table, [("ts", "ascending"), ("version", "ascending"), ("event_id", "ascending")])
    rows = table.take(order)
    newest = dict(
        zip(
            zip(rows["entity_ns"].to_pylist(), rows["entity_id"].to_pylist(), strict=True),
            rows["event_id"].to_pylist(),
            strict=True,
        )
    )
    return [newest.get(k) for k in keys]


def pick_keys(lake_url: str, count: int, seed: int) -> list[tuple[str, str]]:
    import numpy as np

    from lakebench.core.config import Settings
    from lakebench.lake.catalog import Lake

    with Lake(Settings(lake=lake_url)) as lake:
        table = lake.table().scan(selected_fields=("entity_ns", "entity_id")).to_arrow()
    known = sorted(set(zip(table["entity_ns"].to_pylist(), table["entity_id"].to_pylist(), strict=True)))
    rng = np.random.default_rng(seed)
    picked = [known[i] for i in rng.integers(0, len(known), count)]
    return picked + [(picked[0][0], f"absent {i}") for i in range(max(1, count // 20))]  # a few missing keys


def run_child(spec: dict[str, Any], env: dict[str, str], endpoint: Any = None) -> dict[str, Any]:
    if endpoint is not None:
        endpoint.stats.reset()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
        cwd=env.get("BENCH_CWD", str(ROOT)),
    )
    assert proc.stdin and proc.stdout
    proc.stdin.write(json.dumps(spec) + "\n")
    proc.stdin.flush()
    first = json.loads(proc.stdout.readline())
    if endpoint is not None:
        first["first_requests"] = endpoint.stats.snapshot()["requests"]
    proc.stdin.write("go\n")
    proc.stdin.flush()
    rest = json.loads(proc.stdout.readline())
    if proc.wait(timeout=600) != 0:
        raise SystemExit(f"the {spec['engine']} process failed")
    return first | rest


def summarize(run: dict[str, Any], expected: list[str | None], warmup: int) -> dict[str, Any]:
    timed_expected = expected[1 + warmup :]
    wrong = sum(1 for a, e in zip(run["answers"], timed_expected, strict=True) if a != e)
    samples = sorted(run["samples_ms"])
    return {
        "process_to_first_s": run["process_to_first_s"],
        "open_to_first_ms": run["open_to_first_s"] * 1000,
        "first_gets": run.get("first_requests", {}).get("GET"),
        "first_requests": run.get("first_requests"),
        "first_right": run["first"] == expected[0],
        "p50_ms": statistics.median(samples),
        "p95_ms": samples[int(0.95 * (len(samples) - 1))],
        "wrong": wrong,
        "warmed": run.get("warmed"),
        "samples_ms": run["samples_ms"],
    }


def baseline_env(work: Path, rev: str) -> dict[str, str]:
    """A worktree of ``rev``; its readers write their indexes under the lake's ``index/`` (the
    indexes of today's writers live under ``events/index/``: neither sees the other's)."""
    tree = work / f"baseline-{rev}"
    if not tree.exists():
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True, capture_output=True
        )
    return {"BENCH_LAKEBENCH_ROOT": str(tree), "XDG_CACHE_HOME": str(work / "baseline-cache")}


def shell_lookup(lake_url: str, key: tuple[str, str], runs: int) -> list[float]:
    command = [
        str(Path(sys.executable).parent / "lakebench"),
        "lookup",
        *key,
        "--lake",
        lake_url,
        "--engine",
        "lake-indexed",
    ]
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - began)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="events in each lake (size option)")
    parser.add_argument("--avg-size-kb", type=float, default=2.0)
    parser.add_argument("--spread-files", type=int, default=5_000, help="data files of the spread lake (0: none)")
    parser.add_argument("--samples", type=int, default=300, help="timed lookups per engine")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--engines", default="lake-indexed,lake-indexed+warm,lake-sql,clickhouse")
    parser.add_argument("--spread-engines", default="lake-indexed,lake-indexed+warm,lake-sql")
    parser.add_argument("--no-s3", action="store_true", help="skip the lake on the S3-protocol server")
    parser.add_argument("--baseline-rev", default=BASELINE_REV, help="'' for none")
    parser.add_argument("--shell-runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "lakebench-first-answer")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(json.loads(sys.stdin.readline()))
        return 0

    from lakebench.storage.embedded import EmbeddedS3
    from lakebench.storage.netem import profiled

    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "bench": "first_answer",
        "events": args.events,
        "avg_size_kb": args.avg_size_kb,
        "lakes": {},
    }
    print(f"lakes of {args.events:,} events of ~{args.avg_size_kb} KB in {work}")
    compact = write_lake(work / "compact", args, None)
    keys = pick_keys(compact, 1 + args.warmup + args.samples, args.seed)
    expected = expected_answers(compact, keys)
    base = {"keys": keys, "warmup": args.warmup}
    env = {"XDG_CACHE_HOME": str(work / "cache")}

    def measure(
        name: str, url: str, engines: list[str], extra: dict[str, Any], run_env: dict[str, str], endpoint: Any = None
    ) -> None:
        figures = report["lakes"].setdefault(name, {})
        for engine in engines:
            name_, warm = engine.removesuffix("+warm"), engine.endswith("+warm")
            spec = {**base, **extra, "lake": url, "engine": name_, "warm": warm}
            run = run_child(spec, run_env, endpoint)
            figures[engine] = summarize(run, expected, args.warmup)
            f = figures[engine]
            gets = "" if f["first_gets"] is None else f", {f['first_gets']} GETs"
            warmed = f["warmed"]
            print(
                f"  {name:8s} {engine:22s} first answer {f['process_to_first_s']:.2f} s after start, "
                f"{f['open_to_first_ms']:7.0f} ms after open{gets}{'' if f['first_right'] else ' WRONG'}; "
                + (f"warmed {warmed['segments']:.0f} segments in {warmed['seconds']:.2f} s; " if warmed else "")
                + f"hot p50 {f['p50_ms']:.3f} ms p95 {f['p95_ms']:.3f} ms"
                + (f", {f['wrong']} WRONG" if f["wrong"] else "")
            )

    measure("compact", compact, args.engines.split(","), {}, env)
    if args.baseline_rev:
        benv = baseline_env(work, args.baseline_rev)
        began = time.perf_counter()
        run_child({**base, "lake": compact, "engine": "lake-indexed"}, benv)  # its first reader builds its indexes
        report["baseline_build_s"] = time.perf_counter() - began
        measure("compact", compact, ["lake-indexed"], {}, benv)
        report["lakes"]["compact"][f"lake-indexed@{args.baseline_rev}"] = report["lakes"]["compact"].pop("lake-indexed")
        measure("compact", compact, ["lake-indexed"], {}, env)  # again after it: noise shows as a difference
        report["lakes"]["compact"]["lake-indexed (again)"] = report["lakes"]["compact"].pop("lake-indexed")
        measure("compact", compact, ["lake-indexed"], {}, env)
    shell = shell_lookup(compact, keys[0], args.shell_runs)
    report["shell_lookup_s"] = shell
    print(f"  `lakebench lookup` from the shell: median {statistics.median(shell):.2f} s over {len(shell)} runs")
    if args.spread_files:
        spread = write_lake(work / "spread", args, args.spread_files)
        measure("spread", spread, args.spread_engines.split(","), {}, env)
    if not args.no_s3:
        with EmbeddedS3() as server, profiled(server.url, "local") as endpoint:
            s3 = server.s3(endpoint.url)
            url = write_lake(work / "s3", args, None, (f"s3://{server.bucket()}/lake", s3))
            spec = {
                "s3": {
                    "endpoint": s3.endpoint,
                    "region": s3.region,
                    "access_key_id": s3.access_key_id,
                    "secret_access_key": s3.secret_access_key,
                },
                "catalog": f"sqlite:///{work / 's3'}/catalog.db",
            }
            measure("s3", url, ["lake-indexed"], spec, env, endpoint)
    lakes = report["lakes"]
    indexed = lakes["compact"]["lake-indexed"]

    def figure(lake: str, engine: str, name: str) -> float | None:
        value = lakes.get(lake, {}).get(engine, {}).get(name)
        return None if value is None else float(value)

    targets: dict[str, float | None] = {
        "open_to_first_ms_folder <= 300": indexed["open_to_first_ms"],
        "first_gets_s3 <= 5": figure("s3", "lake-indexed", "first_gets"),
        "open_to_first_ms_spread <= 500": figure("spread", "lake-indexed", "open_to_first_ms"),
        "p50_ms_spread <= 2 (blocks fetched as needed)": figure("spread", "lake-indexed", "p50_ms"),
        "p50_ms_spread <= 2 (warmed, as the service does)": figure("spread", "lake-indexed+warm", "p50_ms"),
        "shell_lookup_s <= 1": statistics.median(shell),
    }
    if args.baseline_rev:
        old = lakes["compact"][f"lake-indexed@{args.baseline_rev}"]["p50_ms"]
        targets["hot p50 over the baseline's <= 1 (as needed)"] = indexed["p50_ms"] / old
        warm = figure("compact", "lake-indexed+warm", "p50_ms")
        targets["hot p50 over the baseline's <= 1 (warmed)"] = None if warm is None else warm / old
    peers = {e: f["p50_ms"] / indexed["p50_ms"] for e, f in lakes["compact"].items() if e != "lake-indexed"}
    report["targets"] = targets
    report["p50_ratio_over_lake_indexed"] = peers
    print("targets: " + "; ".join(f"{k}: {'n/a' if v is None else round(v, 3)}" for k, v in targets.items()))
    print("hot lookup p50 over lake-indexed's (compact lake): " + ", ".join(f"{e} {r:.2f}x" for e, r in peers.items()))
    wrong = sum(f["wrong"] + (not f["first_right"]) for lake in report["lakes"].values() for f in lake.values())
    if args.json:
        print(json.dumps(report))
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
