#!/usr/bin/env python3
"""Lake writer throughput beside a bare pyarrow write of the same rows, measured in the same run.

    python bench/ingest.py [--events N] [--avg-size-kb K] [--repeat R] [--json]

Both sides start from the same in-memory events, cut them into the same batches and convert them to
Arrow the same way, and get the same threads (``--threads``, the writer's default): the lake writer
sorts by key, writes lookup-sized row groups, publishes the files and commits them to Iceberg; the
bare side writes each batch's slices with ``pyarrow.parquet.write_table`` (zstd, pyarrow defaults
otherwise) on a pool of as many threads, slicing by the writer's own rule (one slice per
``min_parallel_bytes`` of text, at most one per thread). Runs alternate (lake, bare, lake, bare, ...)
after an untimed warm-up round, so machine noise hits both sides alike; medians are reported, and
a side whose runs spread more than 10 % from their median is flagged noisy.
Target: lake/bare ratio >= 0.8.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lakebench.core.config import Settings
from lakebench.core.models import Event
from lakebench.generate.synthetic import GeneratorSpec, generate
from lakebench.lake.catalog import Lake
from lakebench.lake.schema import events_to_arrow
from lakebench.lake.writer import LakeWriter, WriterOptions

TARGET_RATIO = 0.8


def bare_write(events: list[Event], folder: Path, options: WriterOptions) -> None:
    """The baseline: the writer's batches and slices, each written by pyarrow on the same threads."""

    def write(table: pa.Table, n: int) -> None:
        pq.write_table(table, folder / f"{n}.parquet", compression="zstd")

    with ThreadPoolExecutor(max_workers=options.threads) as pool:
        futures = []
        batch: list[Event] = []
        size = 0
        for event in [*events, None]:
            if event is not None:
                batch.append(event)
                size += event.approx_size()
            if batch and (event is None or size >= options.target_file_bytes):
                table = events_to_arrow(batch)
                slices = max(1, min(options.threads, size // options.min_parallel_bytes))
                step = -(-table.num_rows // slices)
                for start in range(0, table.num_rows, step):
                    futures.append(pool.submit(write, table.slice(start, step), len(futures)))
                batch, size = [], 0
        for future in futures:
            future.result()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2_000, help="events per write (size option)")
    parser.add_argument("--avg-size-kb", type=float, default=225.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=WriterOptions().threads, help="for both sides")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (imports, caches)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()

    options = WriterOptions(threads=args.threads)
    events = list(generate(GeneratorSpec(count=args.events, avg_size_kb=args.avg_size_kb, seed=11)))
    raw_bytes = sum(e.size_bytes() for e in events)
    lake_s: list[float] = []
    bare_s: list[float] = []
    parquet_bytes = {"lake": 0, "bare": 0}
    work = Path(tempfile.mkdtemp(prefix="lakebench-bench-"))
    try:
        for i in range(-args.warmup, args.repeat):
            lake = Lake(Settings(lake=str(work / f"lake-{i}")))
            lake.table()  # table creation is setup, not ingest
            started = time.perf_counter()
            result = LakeWriter(lake, options).write(events)
            if i >= 0:
                lake_s.append(time.perf_counter() - started)
            parquet_bytes["lake"] = result.parquet_bytes

            target = work / f"bare-{i}"
            target.mkdir()
            started = time.perf_counter()
            bare_write(events, target, options)
            if i >= 0:
                bare_s.append(time.perf_counter() - started)
            parquet_bytes["bare"] = sum(f.stat().st_size for f in target.iterdir())
            shutil.rmtree(work / f"lake-{i}")
            shutil.rmtree(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    lake_med, bare_med = statistics.median(lake_s), statistics.median(bare_s)
    report = {
        "bench": "ingest",
        "events": len(events),
        "raw_bytes": raw_bytes,
        "repeat": args.repeat,
        "threads": args.threads,
        "lake_writer": {
            "seconds": lake_s,
            "median_s": lake_med,
            "rows_per_s": len(events) / lake_med,
            "mb_per_s": raw_bytes / 1e6 / lake_med,
            "parquet_bytes": parquet_bytes["lake"],
        },
        "bare_pyarrow": {
            "seconds": bare_s,
            "median_s": bare_med,
            "rows_per_s": len(events) / bare_med,
            "mb_per_s": raw_bytes / 1e6 / bare_med,
            "parquet_bytes": parquet_bytes["bare"],
        },
        "ratio_lake_to_bare": bare_med / lake_med,
        "target_ratio": TARGET_RATIO,
    }
    report["meets_target"] = report["ratio_lake_to_bare"] >= TARGET_RATIO
    report["noisy"] = any(max(abs(v - m) for v in xs) / m > 0.10 for xs, m in ((lake_s, lake_med), (bare_s, bare_med)))
    w, b = report["lake_writer"], report["bare_pyarrow"]
    print(
        f"{len(events):,} events, {raw_bytes / 1e6:,.1f} MB of event text, {args.repeat} alternating runs (medians), "
        f"{args.threads} threads each side{' — noisy' if report['noisy'] else ''}"
    )
    for label, side in (("lake writer ", w), ("bare pyarrow", b)):
        print(
            f"  {label}: {side['rows_per_s']:>10,.0f} rows/s {side['mb_per_s']:>8,.1f} MB/s"
            f"  -> {side['parquet_bytes'] / 1e6:,.1f} MB Parquet"
        )
    print(f"  ratio lake/bare = {report['ratio_lake_to_bare']:.2f} (target >= {TARGET_RATIO})")
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
