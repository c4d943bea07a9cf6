#!/usr/bin/env python3
"""HTTP load for ``bench/pipeline.py``, run as a process of its own (its CPU is not the server's).

    python bench/loadgen.py --url http://127.0.0.1:8080 --events FILE.ndjson --batch N --connections C

Every line of FILE is one event; requests of ``--batch`` lines (1: one event per request) are
built before the clock starts and sent once each, over C keep-alive connections, each sending its
next request when the previous one is answered (a closed loop). Each answer is checked: HTTP 200
and every event of the request accepted or a duplicate. Prints one JSON object: the wall-clock
start and end (``time.time()``, to line up with the server's commits), and every request's
latency in microseconds (the raw samples); to ``--report FILE`` when given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import deque
from pathlib import Path
from typing import cast

import httptools
import msgspec


class Answer(msgspec.Struct):
    accepted: int
    duplicates: int
    rejected: int


_ANSWER = msgspec.json.Decoder(Answer)


def groups(lines: list[bytes], batch: int, max_bytes: int) -> list[list[bytes]]:
    """Requests of ``batch`` lines, or (``batch`` 0) as many as fit in ``max_bytes``."""
    if batch:
        return [lines[i : i + batch] for i in range(0, len(lines), batch)]
    out: list[list[bytes]] = [[]]
    size = 0
    for line in lines:
        if out[-1] and size + len(line) + 1 > max_bytes:
            out.append([])
            size = 0
        out[-1].append(line)
        size += len(line) + 1
    return out


def requests(lines: list[bytes], batch: int, host: str, max_bytes: int = 4_000_000) -> deque[tuple[bytes, int]]:
    out: deque[tuple[bytes, int]] = deque()
    for group in groups(lines, batch, max_bytes):
        body = b"\n".join(group)
        head = (
            f"POST /v1/events HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/x-ndjson\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        out.append((head + body, len(group)))
    return out


class Connection(asyncio.Protocol):
    """One keep-alive connection in a closed loop, driven by callbacks (no coroutine a request):
    httptools parses each answer in C, its completion sends the next request. The client's CPU is
    the server's on a small machine; this keeps it to a fraction of what asyncio streams cost."""

    def __init__(self, todo: deque[tuple[bytes, int]], latencies: list[int], errors: list[str]) -> None:
        self.todo = todo
        self.latencies = latencies
        self.errors = errors
        self.acked = 0
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.body: list[bytes] = []
        self.events = 0
        self.started = 0
        self.waiting = False  # a request sent, its answer not complete

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport's subclasses
        self.send_next()

    def send_next(self) -> None:
        assert self.transport is not None
        if not self.todo:
            self.transport.close()
            return
        request, self.events = self.todo.popleft()
        self.body = []
        self.waiting = True
        self.started = time.perf_counter_ns()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(f"unparsable answer: {exc}")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.waiting = False
        self.latencies.append((time.perf_counter_ns() - self.started) // 1000)
        body = b"".join(self.body)
        status = self.parser.get_status_code()
        if status != 200:
            self.errors.append(f"HTTP {status}: {body[:200]!r}")
        else:
            answer = _ANSWER.decode(body)
            if answer.accepted + answer.duplicates != self.events:
                self.errors.append(f"{answer.rejected} of {self.events} events rejected: {body[:200]!r}")
            else:
                self.acked += self.events
        self.send_next()

    def fail(self, why: str) -> None:
        self.errors.append(why)
        self.waiting = False  # counted here, once
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiting:
            self.errors.append(f"connection lost before the answer: {exc or 'closed by the server'}")
        if not self.done.done():
            self.done.set_result(self.acked)


async def connection(
    host: str, port: int, todo: deque[tuple[bytes, int]], latencies: list[int], errors: list[str]
) -> int:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: Connection(todo, latencies, errors), host, port)
    return await protocol.done


async def run(url: str, lines: list[bytes], batch: int, connections: int, max_bytes: int) -> dict[str, object]:
    host, _, port = url.removeprefix("http://").partition(":")
    todo = requests(lines, batch, host, max_bytes)
    count = len(todo)
    latencies: list[int] = []
    errors: list[str] = []
    started = time.time()
    clock, cpu = time.perf_counter(), time.process_time()
    acked = await asyncio.gather(
        *(connection(host, int(port), todo, latencies, errors) for _ in range(min(connections, count)))
    )
    seconds, cpu = time.perf_counter() - clock, time.process_time() - cpu
    return {
        "requests": count,
        "events": len(lines),
        "acked_events": sum(acked),
        "started_at": started,
        "seconds": seconds,
        "cpu_seconds": cpu,  # this process's, user + system, while it sent the load
        "errors": errors[:10],
        "error_count": len(errors),
        "latency_us": latencies,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--events", type=Path, required=True, help="NDJSON, one event a line")
    parser.add_argument(
        "--batch", type=int, default=500, help="events a request (1: one event per request; 0: up to --max-bytes)"
    )
    parser.add_argument("--max-bytes", type=int, default=4_000_000, help="of a request, with --batch 0")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--report", type=Path, help="write the JSON report to this file (default: standard output)")
    args = parser.parse_args()
    lines = [line for line in args.events.read_bytes().split(b"\n") if line]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio works the same, slower
        runner = asyncio.run
    report = runner(run(args.url, lines, args.batch, args.connections, args.max_bytes))
    if args.report:  # a file: a pipe once gave its reader a report cut at a multiple of 64 KiB
        args.report.write_text(json.dumps(report) + "\n")
    else:
        sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
