#!/usr/bin/env python3
"""HTTP ingest of ``lakebench serve pipeline``: committed events/s, acknowledged requests/s, fsyncs.

    python bench/pipeline.py [--events N] [--requests N] [--pages N] [--workers W] [--json]

Three scenarios, each against a fresh server process on loopback with a fresh lake, the load sent
by ``bench/loadgen.py`` from a process of its own (closed loop, keep-alive connections; every
answer checked):

- ``batches``: N ~2 KB events in NDJSON requests of 500, over 4 connections;
- ``single``:  N ~2 KB events, one event per request, over 64 connections (by default 100,000: a
  sustained load, during which each worker commits several times — a shorter one could end before
  the first commit and leave its cost out of the request rate);
- ``pages``:   N ~225 KB pages in requests of at most 4 MB, over 4 connections.

Committed events/s counts from the first request until the server's stats say every event is
committed to Iceberg (``/v1/pipeline/stats``, polled every 10 ms). Acknowledged requests/s counts
the load's own duration. Beside them: the write-ahead log's fsyncs per second (each
acknowledgement waited for one; group commit shares them) and, for ``single``, the request
latency p50/p99 from every request's sample.

The peer, in the same run and on the same rows: a bare pyarrow write — the events converted to an
Arrow table (lakebench's own conversion) and written as one zstd Parquet file with
``pyarrow.parquet.write_table``; also shown without the conversion (the write alone). After each
scenario, outside the timing, the lake is read back: every event id sent is there exactly once.

CPU, beside the rates: the server's processes' CPU time (user + system, from ``/proc``) from
the first request until every event is committed, the load generator's, and the bare write's, in
microseconds an event; and the ratio to the bare write the server could reach at most on this
machine's cores if it and the load generator kept every core busy all the time (the CPU bound):
a ratio below the target with a bound below it too is a matter of work an event, not of waiting.
The events each worker took (connections are spread by the kernel, not by load) are shown too,
and the garbage collector's passes in the server (``/v1/pipeline/stats``): how many were full,
their time, the longest pause.

``--baseline-repo PATH`` runs each scenario a second time against the server of another checkout
(say ``git worktree add /tmp/base <commit>``), same load, same workers and access log, same run:
the ratio is printed (a checkout from before ``--workers`` runs with one).
Targets: batches >= 60 % of the bare write; single >= 7,000 acknowledged requests/s, p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lakebench.core.config import Settings  # noqa: E402
from lakebench.core.process import stat_fields, stop_process  # noqa: E402
from lakebench.generate.synthetic import GeneratorSpec, generate  # noqa: E402
from lakebench.lake.catalog import Lake  # noqa: E402
from lakebench.lake.schema import events_to_arrow  # noqa: E402
from lakebench.storage.embedded import free_port  # noqa: E402

MAX_BATCH_BYTES = 4_000_000
TARGET_BATCH_RATIO = 0.60
TARGET_SINGLE_RPS = 7_000
TARGET_SINGLE_P99_MS = 50.0


@dataclass(frozen=True)
class Scenario:
    name: str
    avg_size_kb: float
    batch: int  # events a request; 0: as many as fit in MAX_BATCH_BYTES
    connections: int


SCENARIOS = {
    "batches": Scenario("batches", 2.0, 500, 4),
    "single": Scenario("single", 2.0, 1, 64),
    "pages": Scenario("pages", 225.0, 0, 4),
}


def start_server(
    repo: Path, work: Path, workers: int, roll_interval: float, access_log: bool
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (work / "server.log").open("ab")
    command = [sys.executable, "-m", "lakebench.cli", "serve", "pipeline", "--no-auth", "--port", str(port)]
    command += ["--lake", str(work / "lake"), "--state-dir", str(work / "state")]
    command += ["--roll-interval", str(roll_interval), "--idle", "0.25"]
    if not access_log:
        command.append("--no-access-log")
    if workers > 1:
        command += ["--workers", str(workers)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen(command, cwd=repo, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    writers: set[str] = set()
    while True:
        try:  # until every worker answers: connections opened before one listens would all go to others
            writers.add(stats(url)["writer_id"])
            if len(writers) >= workers:
                return proc, url
            if time.monotonic() > deadline:
                raise OSError(f"{len(writers)} of {workers} workers answered")
            time.sleep(0.02)
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_process(proc)
                raise RuntimeError(f"server did not start: {(work / 'server.log').read_text()[-2000:]}") from None
            time.sleep(0.1)


def cpu_seconds(pids: list[int] | None) -> float | None:
    """User + system CPU time of these processes (all their threads), from /proc (None elsewhere)."""
    if pids is None:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    try:
        for pid in pids:
            fields = stat_fields(pid)
            total += int(fields[11]) + int(fields[12])  # utime, stime
    except OSError:
        return None
    return total / ticks


def server_pids(proc: subprocess.Popen[bytes], workers: int) -> list[int] | None:
    """The server and its worker processes (the supervisor's children, from /proc); None when they
    cannot all be found (not Linux): no CPU figure rather than a wrong one."""
    children = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            parent = int(stat_fields(entry.name)[1])
        except OSError:
            continue
        if parent == proc.pid:
            children.append(int(entry.name))
    if len(children) < (workers if workers > 1 else 0):
        return None
    return [proc.pid, *children]


def stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/v1/pipeline/stats", timeout=30) as r:
        return dict(json.loads(r.read()))


def measure(
    scenario: Scenario,
    lines: list[bytes],
    ids: set[str],
    repo: Path,
    workers: int,
    roll_interval: float,
    access_log: bool = True,
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"lakebench-bench-pipeline-{scenario.name}-"))
    try:
        events_file = work / "events.ndjson"
        events_file.write_bytes(b"\n".join(lines) + b"\n")
        # On disk before the server starts: ext4 may make the log's first fsyncs wait for these
        # pages (seen: a batches run at 0.4x its rate, its fsyncs a third as many).
        os.sync()
        proc, url = start_server(repo, work, workers, roll_interval, access_log)
        try:
            batch = scenario.batch
            loadgen = [sys.executable, str(REPO / "bench" / "loadgen.py"), "--url", url, "--events", str(events_file)]
            loadgen += ["--batch", str(batch), "--max-bytes", str(MAX_BATCH_BYTES)]
            pids = server_pids(proc, workers)
            server_cpu_before = cpu_seconds(pids)
            load = subprocess.run(
                [*loadgen, "--connections", str(scenario.connections), "--report", str(work / "load.json")],
                capture_output=True,
            )
            if load.returncode:
                raise RuntimeError(f"the load generator failed ({load.returncode}): {load.stderr.decode()[-2000:]}")
            report = json.loads((work / "load.json").read_text())
            loadgen_cpu = float(report["cpu_seconds"])  # its own, while it sent the load
            at_end: dict[str, dict[str, Any]] = {}
            commits_during_load = sum_over_workers(url, workers, at_end)["flushes"]
            deadline = time.monotonic() + 600
            writers: dict[str, dict[str, Any]] = {}  # each worker's latest stats (connections spread)
            while time.monotonic() < deadline:
                now = stats(url)
                writers[now["writer_id"]] = now
                if sum(w["committed_events"] for w in writers.values()) >= report["acked_events"]:
                    break
                time.sleep(0.01)
            committed_s = time.time() - report["started_at"]
            server_cpu_after = cpu_seconds(pids) if pids == server_pids(proc, workers) else None  # none replaced
            syncs = sum_over_workers(url, workers, writers)
        finally:
            stop_process(proc)
        check = read_back(work / "lake", ids)  # outside the timing
    finally:
        shutil.rmtree(work, ignore_errors=True)
    latency_ms = np.array(report["latency_us"], dtype=float) / 1000
    server_cpu = (
        server_cpu_after - server_cpu_before if server_cpu_after is not None and server_cpu_before is not None else None
    )
    return {
        "scenario": scenario.name,
        "events": len(lines),
        "event_json_bytes": sum(len(line) for line in lines),
        "batch": batch or f"<= {MAX_BATCH_BYTES:,} bytes",
        "connections": scenario.connections,
        "workers": workers,
        "access_log": access_log,
        "requests": report["requests"],
        "errors": report["errors"],
        "error_count": report["error_count"],
        "load_seconds": report["seconds"],
        "committed_seconds": committed_s,
        "committed_events_per_s": len(lines) / committed_s,
        "committed_mb_per_s": sum(len(line) for line in lines) / 1e6 / committed_s,
        "acked_requests_per_s": report["requests"] / report["seconds"],
        "request_ms": {
            "p50": float(np.percentile(latency_ms, 50)),
            "p99": float(np.percentile(latency_ms, 99)),
            "max": float(latency_ms.max()),
            "samples_us": report["latency_us"],
        },
        "commits_during_load": commits_during_load,
        "wal_syncs": syncs["wal_syncs"],
        "wal_syncs_per_s": syncs["wal_syncs"] / report["seconds"],
        "acknowledged_requests": syncs["acknowledged_requests"],
        "requests_per_sync": syncs["acknowledged_requests"] / max(1, syncs["wal_syncs"]),
        "read_back": check,
        "server_cpu_seconds": server_cpu,
        "server_cpu_us_per_event": None if server_cpu is None else server_cpu / len(lines) * 1e6,
        "loadgen_cpu_seconds": loadgen_cpu,
        "loadgen_cpu_us_per_event": loadgen_cpu / len(lines) * 1e6,
        "gc": {k: syncs[k] for k in ("gc_full_collections", "gc_seconds", "gc_longest_pause_ms")},
        "events_per_worker": sorted((w.get("accepted", 0) for w in writers.values()), reverse=True),
    }


def sum_over_workers(url: str, workers: int, seen: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each worker keeps its own log: ask until every writer has answered (connections spread)."""
    deadline = time.monotonic() + 10
    while len(seen) < workers and time.monotonic() < deadline:
        answer = stats(url)
        seen[answer["writer_id"]] = answer
    return {
        # (a server from before group commit does not count them: 0)
        "wal_syncs": sum(s.get("wal_syncs", 0) for s in seen.values()),
        "flushes": sum(s.get("flushes", 0) for s in seen.values()),
        "acknowledged_requests": sum(s.get("acknowledged_requests", 0) for s in seen.values()),
        **gc_passes(list(seen.values())),
    }


def gc_passes(workers: list[dict[str, Any]]) -> dict[str, Any]:
    """The collector's passes over the workers (None: a server from before they were counted)."""
    if not workers or any("gc_collections" not in w for w in workers):
        return dict.fromkeys(("gc_full_collections", "gc_seconds", "gc_longest_pause_ms"))
    return {
        "gc_full_collections": sum(w["gc_collections"][2] for w in workers),
        "gc_seconds": sum(w["gc_seconds"] for w in workers),
        "gc_longest_pause_ms": max(w["gc_longest_pause_ms"] for w in workers),
    }


def read_back(lake_dir: Path, ids: set[str]) -> dict[str, Any]:
    with Lake(Settings(lake=str(lake_dir))) as lake:
        table = lake.table(create=False)
        got = table.scan(selected_fields=("event_id",)).to_arrow()["event_id"].to_pylist()
    return {"rows": len(got), "distinct": len(set(got)), "exactly_once": len(got) == len(set(got)) and set(got) == ids}


def bare_write(events: list[Any]) -> dict[str, float]:
    """The peer: lakebench's conversion to Arrow, then one pyarrow.parquet.write_table (zstd)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    table = events_to_arrow(events)
    converted = time.perf_counter()
    pq.write_table(table, io.BytesIO(), compression="zstd")
    done = time.perf_counter()
    return {
        "seconds": done - started,
        "convert_seconds": converted - started,
        "write_seconds": done - converted,
        "cpu_seconds": time.process_time() - cpu_started,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000, help="~2 KB events of the batches scenario")
    parser.add_argument(
        "--requests",
        type=int,
        default=100_000,
        help="one-event requests of the single scenario (enough for commits to run during the load)",
    )
    parser.add_argument("--pages", type=int, default=1_000, help="~225 KB pages of the pages scenario")
    parser.add_argument("--scenarios", default="batches,single,pages")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (serve pipeline --workers)")
    parser.add_argument("--roll-interval", type=float, default=5.0, help="the server's default")
    parser.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, default=True, help="the server's line per request"
    )
    parser.add_argument("--baseline-repo", type=Path, help="also measure the server of this checkout, same load")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()

    counts = {"batches": args.events, "single": args.requests, "pages": args.pages}
    results: list[dict[str, Any]] = []
    for name in args.scenarios.split(","):
        scenario = SCENARIOS[name]
        events = list(generate(GeneratorSpec(count=counts[name], avg_size_kb=scenario.avg_size_kb, seed=3)))
        lines = [e.to_json().encode() for e in events]
        ids = {e.event_id for e in events}
        bare = min((bare_write(events) for _ in range(3)), key=lambda b: b["seconds"])  # its best of 3
        row = measure(scenario, lines, ids, REPO, args.workers, args.roll_interval, args.access_log)
        row["bare_pyarrow"] = {
            **bare,
            "events_per_s": len(events) / bare["seconds"],
            "write_only_events_per_s": len(events) / bare["write_seconds"],
        }
        row["ratio_to_bare"] = row["committed_events_per_s"] / row["bare_pyarrow"]["events_per_s"]
        row["ratio_to_bare_write_only"] = row["committed_events_per_s"] / row["bare_pyarrow"]["write_only_events_per_s"]
        row["bare_pyarrow"]["cpu_us_per_event"] = bare["cpu_seconds"] / len(events) * 1e6
        row["cores"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if row["server_cpu_seconds"]:
            # Committing needs at least (server + load generator CPU) / cores of wall-clock time.
            busiest = (row["server_cpu_seconds"] + row["loadgen_cpu_seconds"]) / row["cores"]
            row["cpu_bound_ratio_to_bare"] = len(events) / busiest / row["bare_pyarrow"]["events_per_s"]
        if args.baseline_repo:
            base = measure(scenario, lines, ids, args.baseline_repo, args.workers, args.roll_interval, args.access_log)
            row["baseline"] = {k: v for k, v in base.items() if k != "request_ms"} | {
                "request_ms": {k: v for k, v in base["request_ms"].items() if k != "samples_us"}
            }
            row["ratio_to_baseline"] = row["committed_events_per_s"] / base["committed_events_per_s"]
            row["acked_ratio_to_baseline"] = row["acked_requests_per_s"] / base["acked_requests_per_s"]
        results.append(row)
        print_row(row)
        del events, lines

    report: dict[str, Any] = {"bench": "pipeline", "workers": args.workers, "scenarios": results}
    by = {r["scenario"]: r for r in results}
    checks = []
    if "batches" in by:
        checks.append(by["batches"]["ratio_to_bare"] >= TARGET_BATCH_RATIO)
    if "single" in by:
        single = by["single"]
        checks.append(single["acked_requests_per_s"] >= TARGET_SINGLE_RPS)
        checks.append(single["request_ms"]["p99"] <= TARGET_SINGLE_P99_MS)
    checks += [r["read_back"]["exactly_once"] and not r["error_count"] for r in results]
    report["targets"] = {
        "batches_ratio_to_bare": TARGET_BATCH_RATIO,
        "single_acked_requests_per_s": TARGET_SINGLE_RPS,
        "single_p99_ms": TARGET_SINGLE_P99_MS,
    }
    report["meets_targets"] = all(checks)
    if args.json:
        print(json.dumps(report))
    return 0


def print_row(row: dict[str, Any]) -> None:
    bare = row["bare_pyarrow"]
    print(
        f"{row['scenario']}: {row['events']:,} events ({row['event_json_bytes'] / 1e6:,.1f} MB JSON), "
        f"{row['requests']:,} requests of {row['batch']}, {row['connections']} connections, "
        f"{row['workers']} worker(s)"
    )
    print(
        f"  committed        : {row['committed_events_per_s']:10,.0f} events/s {row['committed_mb_per_s']:7.1f} MB/s"
        f"  ({row['ratio_to_bare']:.2f} of bare, {row['ratio_to_bare_write_only']:.2f} of the write alone)"
    )
    print(
        f"  bare pyarrow     : {bare['events_per_s']:10,.0f} events/s"
        f"  (write alone {bare['write_only_events_per_s']:,.0f})"
    )
    latency = row["request_ms"]
    print(
        f"  acknowledged     : {row['acked_requests_per_s']:10,.0f} requests/s  p50 {latency['p50']:.1f} ms"
        f"  p99 {latency['p99']:.1f} ms"
    )
    print(f"  log fsyncs       : {row['wal_syncs_per_s']:10,.0f} /s  ({row['requests_per_sync']:.1f} requests each)")
    if "cpu_bound_ratio_to_bare" in row:
        print(
            f"  CPU an event     : server {row['server_cpu_us_per_event']:.1f} us, load generator "
            f"{row['loadgen_cpu_us_per_event']:.1f} us, bare write {bare['cpu_us_per_event']:.1f} us"
            f"  (CPU bound on {row['cores']} cores: <= {row['cpu_bound_ratio_to_bare']:.2f} of bare)"
        )
    gc = row["gc"]
    if gc["gc_full_collections"] is not None:
        print(
            f"  GC, server       : {gc['gc_full_collections']:10,} full passes, {gc['gc_seconds']:.2f} s in all "
            f"passes, longest pause {gc['gc_longest_pause_ms']:.0f} ms"
        )
    if row["workers"] > 1:
        print(f"  events per worker: {', '.join(f'{n:,}' for n in row['events_per_worker'])}")
    print(f"  commits          : {row['commits_during_load']:10,} during the load ({row['load_seconds']:.1f} s)")
    back = row["read_back"]
    print(f"  read back        : {back['rows']:,} rows, {back['distinct']:,} ids, exactly once: {back['exactly_once']}")
    if "baseline" in row:
        base = row["baseline"]
        base_cpu = f", server CPU {base['server_cpu_us_per_event']:.1f} us" if base["server_cpu_seconds"] else ""
        print(
            f"  vs baseline      : {row['ratio_to_baseline']:.2f}x committed events/s, "
            f"{row['acked_ratio_to_baseline']:.2f}x acknowledged requests/s "
            f"({base['acked_requests_per_s']:,.0f}/s, p99 {base['request_ms']['p99']:.1f} ms{base_cpu})"
        )
    if row["errors"]:
        print(f"  errors ({row['error_count']}): {row['errors'][:3]}")


if __name__ == "__main__":
    sys.exit(main())
