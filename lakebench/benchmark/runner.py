"""Timing: wall-clock per call with ``perf_counter_ns``, every sample kept, answers checked."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from lakebench.benchmark.workloads import Key
from lakebench.core.models import Event


class Progress(Protocol):
    def start(self, description: str, total: int | None) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def done(self) -> None: ...


class NoProgress:
    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def done(self) -> None:
        pass


@dataclass(slots=True)
class Timed:
    samples_ms: list[float]
    errors: int
    error_examples: list[str]


def time_lookups(
    lookup: Callable[[str, str], Event | None],
    keys: Sequence[Key],
    *,
    expect_found: bool,
    progress: Progress | None = None,
) -> Timed:
    """Call ``lookup`` once per key; a wrong answer (missing where expected, or the wrong key) is an error."""
    samples: list[float] = []
    errors: list[str] = []
    for ns, eid in keys:
        started = time.perf_counter_ns()
        event = lookup(ns, eid)
        elapsed = time.perf_counter_ns() - started
        samples.append(elapsed / 1e6)
        if expect_found and (event is None or event.key != (ns, eid)):
            errors.append(f"{ns}/{eid}: expected the entity, got {'nothing' if event is None else event.key}")
        elif not expect_found and event is not None:
            errors.append(f"{ns}/{eid}: expected nothing, got {event.key}")
        if progress:
            progress.advance()
    return Timed(samples, len(errors), errors[:5])
