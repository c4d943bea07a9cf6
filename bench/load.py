#!/usr/bin/env python3
"""An HTTP/1.1 load generator, run as its own process so it does not share the server's interpreter.

    python bench/load.py --url http://127.0.0.1:8080 --paths paths.txt --connections 16 --seconds 10 [--rate R]

Closed loop (default): each connection sends its next request when the answer arrives. Open loop
(``--rate``): requests are due at a constant rate and a connection's latency is measured from the
time each request was *due* (wrk2's rule), so a stall shows in the tail instead of hiding in
fewer requests. Paths are taken in order, round-robin across connections. Prints one JSON
object: requests, errors by status, wall time, and the latency histogram (HdrHistogram, µs) with
its percentiles — the raw record of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from itertools import cycle
from urllib.parse import urlsplit

from hdrh.histogram import HdrHistogram


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """An HTTP/1.1 answer with a Content-Length: (status, body). bench/loadgen.py reads them so too."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, (await reader.readexactly(length) if length else b"")


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, path: str) -> int:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    status, _ = await read_response(reader)
    return status


async def run(url: str, paths: list[str], connections: int, seconds: float, rate: float | None) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    histogram = HdrHistogram(1, 60_000_000, 3)
    errors: dict[str, int] = {}
    order = cycle(paths)
    started = time.perf_counter()
    stop = started + seconds
    interval = connections / rate if rate else 0.0  # per connection, in open loop

    async def connection(number: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        due = started + number * (interval / connections if interval else 0.0)
        try:
            while True:
                now = time.perf_counter()
                if now >= stop:
                    return
                if interval:
                    if due > now:
                        await asyncio.sleep(due - now)
                    begin = due  # latency counts from when the request was due
                    due += interval
                else:
                    begin = time.perf_counter()
                status = await _request(reader, writer, host, next(order))
                histogram.record_value(max(1, int((time.perf_counter() - begin) * 1e6)))
                if status >= 400:
                    errors[str(status)] = errors.get(str(status), 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(connection(n) for n in range(connections)))
    elapsed = time.perf_counter() - started
    count = histogram.get_total_count()
    return {
        "requests": count,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(count / elapsed, 1),
        "errors": errors,
        "mode": "open" if rate else "closed",
        "rate": rate,
        "connections": connections,
        "p50_us": histogram.get_value_at_percentile(50),
        "p90_us": histogram.get_value_at_percentile(90),
        "p99_us": histogram.get_value_at_percentile(99),
        "max_us": histogram.get_max_value(),
        "histogram": histogram.encode().decode("ascii"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--paths", required=True, help="a file of request paths, one per line")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=None, help="requests per second (open loop)")
    args = parser.parse_args()
    with open(args.paths, encoding="utf-8") as f:
        paths = [line.rstrip("\n") for line in f if line.strip()]
    result = asyncio.run(run(args.url, paths, args.connections, args.seconds, args.rate))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
