"""Driving an engine call in a closed loop or an open loop, with latencies in an HdrHistogram.

Closed loop: each of ``concurrency`` workers sends its next call when the previous one answers.
It measures service time, and a stall hides in it — the stalled worker simply sends fewer calls
(coordinated omission). Open loop at a constant ``rate``: call ``i`` is due at ``start + i / rate``
and its latency counts from when it was *due*, not from when a free worker got to it (wrk2's
rule), so every call that waited behind a stall carries the wait — what a user sending at that
rate would see. Both record every latency in an HdrHistogram (µs, 3 significant digits) and keep
the raw samples, in the order the calls were due.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import numpy as np
from hdrh.histogram import HdrHistogram

K = TypeVar("K")
HIGHEST_US = 3_600_000_000  # an hour: anything longer is a hang, not a latency


@dataclass(slots=True)
class LoopResult:
    mode: Literal["closed", "open"]
    concurrency: int
    rate_per_s: float | None
    wall_s: float
    samples_us: list[int] = field(repr=False)  # one per answered call, in the order the calls were due
    histogram: str = field(repr=False, default="")  # HdrHistogram, compressed and base64 encoded
    errors: int = 0  # calls that raised: left out of the latencies, counted here

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.samples_us, q)) / 1000

    def summary(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "concurrency": self.concurrency,
            "rate_per_s": self.rate_per_s,
            "calls": len(self.samples_us),
            "errors": self.errors,
            "wall_s": round(self.wall_s, 3),
            "calls_per_s": round(len(self.samples_us) / self.wall_s, 1) if self.wall_s else None,
            "p50_ms": self.percentile_ms(50) if self.samples_us else None,
            "p99_ms": self.percentile_ms(99) if self.samples_us else None,
            "max_ms": max(self.samples_us) / 1000 if self.samples_us else None,
        }


@dataclass(slots=True)
class _Run(Generic[K]):
    keys: Sequence[K]
    call: Callable[[K], object]
    samples: list[int]
    histogram: HdrHistogram
    next_index: int = 0
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> int | None:
        with self.lock:
            if self.next_index >= len(self.keys):
                return None
            self.next_index += 1
            return self.next_index - 1

    def record(self, index: int, micros: int) -> None:
        micros = max(1, min(micros, HIGHEST_US))
        self.samples[index] = micros
        with self.lock:
            self.histogram.record_value(micros)


def _drive(run: _Run[K], concurrency: int, due: Callable[[int], float] | None) -> float:
    started = time.perf_counter()

    def worker() -> None:
        while (index := run.take()) is not None:
            if due is None:
                begin = time.perf_counter()
            else:
                begin = started + due(index)
                wait = begin - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)  # not yet due: the schedule, not a latency
            try:
                run.call(run.keys[index])
            except Exception:
                with run.lock:
                    run.errors += 1
                continue
            run.record(index, int((time.perf_counter() - begin) * 1e6))

    threads = [threading.Thread(target=worker, name=f"loop-{n}") for n in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def _result(
    mode: Literal["closed", "open"], run: _Run[K], concurrency: int, rate: float | None, wall: float
) -> LoopResult:
    encoded = run.histogram.encode()
    text = encoded.decode() if isinstance(encoded, bytes) else str(encoded)
    answered = [s for s in run.samples if s > 0]  # a failed call left its slot at 0
    return LoopResult(mode, concurrency, rate, wall, answered, text, run.errors)


def closed_loop(call: Callable[[K], object], keys: Sequence[K], concurrency: int = 1) -> LoopResult:
    """Each worker calls again as soon as its previous call answered; latency = the call's own time."""
    run = _Run(keys, call, [0] * len(keys), HdrHistogram(1, HIGHEST_US, 3))
    return _result("closed", run, concurrency, None, _drive(run, concurrency, None))


def open_loop(call: Callable[[K], object], keys: Sequence[K], rate_per_s: float, concurrency: int = 1) -> LoopResult:
    """Call ``i`` is due at ``i / rate_per_s`` seconds; latency counts from when it was due."""
    if rate_per_s <= 0:
        raise ValueError("an open loop needs a positive rate")
    run = _Run(keys, call, [0] * len(keys), HdrHistogram(1, HIGHEST_US, 3))
    return _result("open", run, concurrency, rate_per_s, _drive(run, concurrency, lambda i: i / rate_per_s))
