"""Closed and open loops: a stall hides in a closed loop's tail and shows in an open loop's, because
the open loop counts every call's latency from when it was due (wrk2's rule)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from lakebench.benchmark.loop import closed_loop, open_loop


class StallsOnce:
    """A call that answers in about 1 ms, except once, when it stalls for a second (a GC pause, a
    slow GET, a compaction): the fault the loops must tell apart."""

    def __init__(self, at: int, stall_s: float = 1.0) -> None:
        self.at, self.stall_s, self.calls = at, stall_s, 0
        self.lock = threading.Lock()

    def __call__(self, _key: int) -> None:
        with self.lock:
            self.calls += 1
            stall = self.calls == self.at
        time.sleep(self.stall_s if stall else 0.001)  # the engine under test: a stand-in with a known fault


def test_an_injected_stall_shows_in_the_open_loop_p99_and_not_in_the_closed_loop_one() -> None:
    keys = list(range(1_000))
    closed = closed_loop(StallsOnce(at=100), keys)
    opened = open_loop(StallsOnce(at=100), keys, rate_per_s=400)
    assert len(closed.samples_us) == len(opened.samples_us) == 1_000 and all(closed.samples_us)
    assert max(closed.samples_us) >= 1_000_000  # the stall happened, once
    assert closed.percentile_ms(99) < 100  # ... and hides behind 999 fast samples
    # In the open loop ~400 calls fell due during the stall: each waited for it, from its due time.
    assert opened.percentile_ms(99) > 500
    assert sum(s > 100_000 for s in opened.samples_us) > 100


def test_an_open_loop_keeps_its_schedule_and_the_summary_comes_from_the_samples() -> None:
    keys = list(range(200))
    result = open_loop(lambda _k: None, keys, rate_per_s=1_000, concurrency=2)
    assert 0.19 <= result.wall_s < 2.0  # 200 calls due over 0.2 s: it does not run ahead of the rate
    summary = result.summary()
    assert summary["calls"] == 200 and summary["p50_ms"] == float(np.percentile(result.samples_us, 50)) / 1000
    assert summary["max_ms"] == max(result.samples_us) / 1000
    histogram = HdrHistogram.decode(result.histogram)  # the standard encoding, for any HdrHistogram tool
    assert histogram.get_total_count() == 200
    assert histogram.get_max_value() >= max(result.samples_us) * 0.999
    with pytest.raises(ValueError):
        open_loop(lambda _k: None, keys, rate_per_s=0)


def test_every_key_is_called_once_whatever_the_concurrency() -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def call(key: int) -> None:
        with lock:
            seen.append(key)

    closed_loop(call, list(range(500)), concurrency=4)
    assert sorted(seen) == list(range(500))


def test_a_failed_call_is_counted_and_left_out_of_the_latencies() -> None:
    def call(key: int) -> None:
        if key % 10 == 0:
            raise RuntimeError("engine failed")
        time.sleep(0.001)

    result = closed_loop(call, list(range(50)))
    assert result.errors == 5 and len(result.samples_us) == 45 and min(result.samples_us) >= 1_000
    assert result.summary()["errors"] == 5
