#!/usr/bin/env python3
"""HTTP load for ``bench/pipeline.py``, run as a process of its own (its CPU is not the server's).

    python bench/loadgen.py --url http://127.0.0.1:8080 --events FILE.ndjson --batch N --connections C

Every line of FILE is one event; requests of ``--batch`` lines (1: one event per request) are
built before the clock starts and sent once each, over C keep-alive connections, each sending its
next request when the previous one is answered (a closed loop). Each answer is checked: HTTP 200
and every event of the request accepted or a duplicate. Prints one JSON object: the wall-clock
start and end (``time.time()``, to line up with the server's commits), and every request's
latency in microseconds (the raw samples).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import deque
from pathlib import Path

import msgspec


class Answer(msgspec.Struct):
    accepted: int
    duplicates: int
    rejected: int


_ANSWER = msgspec.json.Decoder(Answer)


def requests(lines: list[bytes], batch: int, host: str) -> deque[tuple[bytes, int]]:
    out: deque[tuple[bytes, int]] = deque()
    for i in range(0, len(lines), batch):
        body = b"\n".join(lines[i : i + batch])
        head = (
            f"POST /v1/events HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-ndjson\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        out.append((head + body, len(lines[i : i + batch])))
    return out


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def connection(
    host: str, port: int, todo: deque[tuple[bytes, int]], latencies: list[int], errors: list[str]
) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    acked = 0
    try:
        while todo:
            request, events = todo.popleft()
            started = time.perf_counter_ns()
            writer.write(request)
            status, body = await read_answer(reader)
            latencies.append((time.perf_counter_ns() - started) // 1000)
            if status != 200:
                errors.append(f"HTTP {status}: {body[:200]!r}")
                continue
            answer = _ANSWER.decode(body)
            if answer.accepted + answer.duplicates != events:
                errors.append(f"{answer.rejected} of {events} events rejected: {body[:200]!r}")
                continue
            acked += events
    finally:
        writer.close()
    return acked


async def run(url: str, lines: list[bytes], batch: int, connections: int) -> dict[str, object]:
    host, _, port = url.removeprefix("http://").partition(":")
    todo = requests(lines, batch, host)
    count = len(todo)
    latencies: list[int] = []
    errors: list[str] = []
    started = time.time()
    clock = time.perf_counter()
    acked = await asyncio.gather(
        *(connection(host, int(port), todo, latencies, errors) for _ in range(min(connections, count)))
    )
    seconds = time.perf_counter() - clock
    return {
        "requests": count,
        "events": len(lines),
        "acked_events": sum(acked),
        "started_at": started,
        "seconds": seconds,
        "errors": errors[:10],
        "error_count": len(errors),
        "latency_us": latencies,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--events", type=Path, required=True, help="NDJSON, one event a line")
    parser.add_argument("--batch", type=int, default=500, help="events a request (1: one event per request)")
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    lines = [line for line in args.events.read_bytes().split(b"\n") if line]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio works the same, slower
        runner = asyncio.run
    report = runner(run(args.url, lines, args.batch, args.connections))
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
