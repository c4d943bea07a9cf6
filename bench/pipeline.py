#!/usr/bin/env python3
"""HTTP ingest throughput and acknowledgement-to-queryable delay of ``lakebench serve pipeline``.

    python bench/pipeline.py [--events N] [--avg-size-kb K] [--clients C] [--roll-interval S] [--json]

A real server process on loopback receives NDJSON batches (<= 4 MB each) from C concurrent
clients. Throughput counts event JSON bytes from the first request until the last event is
committed to Iceberg. For one probe event per request, a reader (the lake-sql engine, refreshed
in a loop) measures the time from the client's acknowledgement until a lookup finds the event.
In the same run, a bare pyarrow write of the same events gives the peer figure.
Targets: >= 50 MB/s committed; ack-to-queryable p99 <= roll interval + 1 s.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from queue import Empty, Queue

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lakebench.core.config import Settings
from lakebench.engines.lake_sql import LakeSqlEngine
from lakebench.generate.synthetic import GeneratorSpec, generate
from lakebench.lake.catalog import Lake
from lakebench.lake.schema import events_to_arrow
from tests.integration.servers import start_server

MAX_BATCH_BYTES = 4_000_000
TARGET_MB_S = 50.0


def batches(lines: list[bytes]) -> list[list[bytes]]:
    out: list[list[bytes]] = [[]]
    size = 0
    for line in lines:
        if out[-1] and size + len(line) > MAX_BATCH_BYTES:
            out.append([])
            size = 0
        out[-1].append(line)
        size += len(line) + 1
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000, help="events to ingest (size option)")
    parser.add_argument("--avg-size-kb", type=float, default=225.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--roll-interval", type=float, default=1.0)
    parser.add_argument("--roll-mb", type=float, default=64.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args()

    events = list(generate(GeneratorSpec(count=args.events, avg_size_kb=args.avg_size_kb, seed=3)))
    lines = [e.to_json().encode() for e in events]
    json_bytes = sum(len(line) for line in lines)
    work = Path(tempfile.mkdtemp(prefix="lakebench-bench-pipeline-"))

    # The peer: a bare pyarrow write of the same events, in this run.
    started = time.perf_counter()
    pq.write_table(events_to_arrow(events), work / "bare.parquet", compression="zstd")
    bare_s = time.perf_counter() - started

    server = start_server(
        work / "lake",
        work / "state",
        extra=["--roll-interval", str(args.roll_interval), "--idle", "0.25", "--roll-mb", str(args.roll_mb)],
    )
    host, port = server.url.removeprefix("http://").split(":")
    work_queue: Queue[list[bytes]] = Queue()
    for batch in batches(lines):
        work_queue.put(batch)
    probes: Queue[tuple[str, str, float]] = Queue()
    request_ms: list[float] = []
    errors: list[str] = []

    def client() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        while True:
            try:
                batch = work_queue.get_nowait()
            except Empty:
                break
            body = b"\n".join(batch)
            t0 = time.perf_counter()
            conn.request("POST", "/v1/events", body, {"Content-Type": "application/x-ndjson"})
            response = conn.getresponse()
            answer = json.loads(response.read())
            acked = time.perf_counter()
            request_ms.append((acked - t0) * 1000)
            if response.status != 200 or answer["accepted"] != len(batch):
                errors.append(f"HTTP {response.status}: {str(answer)[:200]}")
                continue
            first = json.loads(batch[0])
            probes.put((first["entity_ns"], first["entity_id"], acked))
        conn.close()

    delays_ms: list[float] = []
    done = threading.Event()

    def prober() -> None:
        with Lake(Settings(lake=str(work / "lake"))) as lake:
            engine = LakeSqlEngine(lake)
            pending: list[tuple[str, str, float]] = []
            while not (done.is_set() and probes.empty() and not pending):
                while not probes.empty():
                    pending.append(probes.get())
                engine.refresh()
                now = time.perf_counter()
                still = []
                for ns, eid, acked in pending:
                    if engine.lookup(ns, eid) is not None:
                        delays_ms.append((now - acked) * 1000)
                    else:
                        still.append((ns, eid, acked))
                pending = still
                time.sleep(0.01)
            engine.close()

    probe_thread = threading.Thread(target=prober)
    probe_thread.start()
    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    acked_s = time.perf_counter() - started
    while True:
        with urllib.request.urlopen(server.url + "/v1/pipeline/stats", timeout=10) as r:
            stats = json.loads(r.read())
        if stats["committed_events"] >= len(events) or errors:
            break
        time.sleep(0.01)
    committed_s = time.perf_counter() - started
    done.set()
    probe_thread.join()
    server.stop()

    p50, p99 = (float(v) for v in np.percentile(delays_ms, [50, 99])) if delays_ms else (float("nan"),) * 2
    report = {
        "bench": "pipeline",
        "events": len(events),
        "event_json_bytes": json_bytes,
        "clients": args.clients,
        "requests": len(request_ms),
        "errors": errors[:5],
        "acked_seconds": acked_s,
        "committed_seconds": committed_s,
        "ingest_mb_per_s": json_bytes / 1e6 / committed_s,
        "ingest_events_per_s": len(events) / committed_s,
        "request_ms_p50": float(np.percentile(request_ms, 50)) if request_ms else None,
        "ack_to_queryable_ms": {"samples": delays_ms, "p50": p50, "p99": p99},
        "roll_interval_s": args.roll_interval,
        "bare_pyarrow": {"seconds": bare_s, "mb_per_s": json_bytes / 1e6 / bare_s},
        "ratio_pipeline_to_bare": bare_s / committed_s,
        "targets": {"ingest_mb_per_s": TARGET_MB_S, "ack_to_queryable_p99_ms": (args.roll_interval + 1) * 1000},
    }
    report["meets_targets"] = (
        report["ingest_mb_per_s"] >= TARGET_MB_S and p99 <= (args.roll_interval + 1) * 1000 and not errors
    )
    target_ms = (args.roll_interval + 1) * 1000
    ingest_line = f"{report['ingest_mb_per_s']:8.1f} MB/s {report['ingest_events_per_s']:10,.0f} events/s"
    bare_line = f"{report['bare_pyarrow']['mb_per_s']:8.1f} MB/s  (ratio {report['ratio_pipeline_to_bare']:.2f})"
    print(f"{len(events):,} events, {json_bytes / 1e6:,.1f} MB of event JSON, {args.clients} clients")
    print(f"  HTTP ingest, committed : {ingest_line}  ({len(request_ms)} requests)")
    print(f"  bare pyarrow write     : {bare_line}")
    print(f"  ack -> queryable       : p50 {p50:7.0f} ms  p99 {p99:7.0f} ms  (target p99 <= {target_ms:.0f} ms)")
    if errors:
        print(f"  errors: {errors[:3]}")
    if args.json:
        print(json.dumps(report))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
