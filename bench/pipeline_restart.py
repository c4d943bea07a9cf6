#!/usr/bin/env python3
"""Pipeline restart time on a full table against an empty one: the dedupe window is read from the
pipeline's state, never by scanning the table.

    python bench/pipeline_restart.py [--events N] [--repeat R] [--json]

N events (default 1,000,000, ~200 bytes of body each) are written through the pipeline itself
(in process: submit, WAL, flush every 100,000), so its dedupe window holds them. Then, R times
each, alternating: a restart (a new Lake and Pipeline object, ``start()`` to ready, ``stop``
without flushing) on that table and on an empty one. Printed: the median restart of each, their
difference (target <= 1 s), and for scale the full ``event_id`` scan a start used to make.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lakebench.core.config import Settings
from lakebench.core.ids import new_event_id
from lakebench.core.models import Event
from lakebench.lake.catalog import Lake
from lakebench.pipeline.core import Pipeline, PipelineConfig

T0 = datetime(2025, 10, 4, tzinfo=UTC)
TARGET_S = 1.0


def fill(folder: Path, events: int, batch: int = 5_000, flush_every: int = 100_000) -> float:
    started = time.perf_counter()
    lake = Lake(Settings(lake=str(folder / "lake")))
    config = PipelineConfig(state_dir=folder / "state", roll_interval_s=3600, idle_s=3600, roll_bytes=1 << 40)
    pipeline = Pipeline(lake, config)
    pipeline.start()
    body = "lorem ipsum dolor sit amet " * 8
    for first in range(0, events, batch):
        chunk = []
        for i in range(first, min(events, first + batch)):
            ts = T0 + timedelta(seconds=i)
            chunk.append(Event(new_event_id(ts), "en.wikipedia.org", f"Page {i % 200_000}", ts, "update", None, body))
        pipeline.submit(chunk)
        if (first + batch) % flush_every == 0:
            pipeline.flush()
    pipeline.stop()
    lake.close()
    return time.perf_counter() - started


def restart(folder: Path) -> tuple[float, int]:
    started = time.perf_counter()
    lake = Lake(Settings(lake=str(folder / "lake")))
    pipeline = Pipeline(lake, PipelineConfig(state_dir=folder / "state", roll_interval_s=3600, idle_s=3600))
    pipeline.start()
    elapsed = time.perf_counter() - started
    remembered = pipeline.dedupe.committed_ids
    pipeline.stop(flush=False)
    lake.close()
    return elapsed, remembered


def full_scan(folder: Path) -> float:
    lake = Lake(Settings(lake=str(folder / "lake")))
    started = time.perf_counter()
    lake.table().scan(selected_fields=("event_id",)).to_arrow()
    elapsed = time.perf_counter() - started
    lake.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the full table (size option)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lakebench-bench-restart-"))
    try:
        full, empty = work / "full", work / "empty"
        fill_s = fill(full, args.events)
        fill(empty, 0)
        full_runs, empty_runs, remembered = [], [], 0
        for _ in range(args.repeat):  # alternating, so drift on a shared machine hits both alike
            elapsed, remembered = restart(full)
            full_runs.append(elapsed)
            empty_runs.append(restart(empty)[0])
        scan_s = full_scan(full)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    full_p50, empty_p50 = statistics.median(full_runs), statistics.median(empty_runs)
    result = {
        "bench": "pipeline_restart",
        "events": args.events,
        "fill_seconds": round(fill_s, 1),
        "restart_full_s": [round(x, 4) for x in full_runs],
        "restart_empty_s": [round(x, 4) for x in empty_runs],
        "restart_full_p50_s": round(full_p50, 4),
        "restart_empty_p50_s": round(empty_p50, 4),
        "difference_s": round(full_p50 - empty_p50, 4),
        "target_difference_s": TARGET_S,
        "dedupe_window_ids": remembered,
        "full_event_id_scan_s": round(scan_s, 3),
        "met": abs(full_p50 - empty_p50) <= TARGET_S,
    }
    print(
        f"restart on {args.events:,} events: p50 {full_p50 * 1000:.0f} ms; "
        f"on an empty table: {empty_p50 * 1000:.0f} ms; "
        f"difference {(full_p50 - empty_p50) * 1000:+.0f} ms (target within {TARGET_S:g} s) -> "
        f"{'met' if result['met'] else 'NOT met'}"
    )
    print(f"dedupe window loaded: {remembered:,} ids; the event_id scan a start used to make: {scan_s:.2f} s")
    if args.json:
        print(json.dumps(result))
    return 0 if result["met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
