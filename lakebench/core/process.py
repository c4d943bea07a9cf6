"""Facts about the running process."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

_IMPORTED = time.perf_counter()  # where the process's start cannot be read
log = logging.getLogger(__name__)


def stat_fields(pid: int | str = "self") -> list[str]:
    """A process's ``/proc/<pid>/stat`` (Linux) from its third field on: [0] state, [1] parent pid,
    [2] process group, [11] utime, [12] stime, [19] start time (clock ticks). ``OSError`` when
    there is no such process, or no /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        stat = f.read()
    return stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold anything


def process_age_s() -> float:
    """Seconds since this process started — interpreter start-up and imports included (Linux /proc);
    elsewhere, since this module was imported."""
    try:
        started = int(stat_fields()[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _IMPORTED


class LockHeld(Exception):
    """Another process holds the lock; ``holder`` is the PID it wrote, or "unknown"."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def take_pid_lock(path: Path) -> IO[str]:
    """An exclusive ``flock`` on ``path`` that holds this process's PID; ``LockHeld`` when another
    process has it. Released by ``release_pid_lock`` or when the process ends, however it ends."""
    handle = path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise LockHeld(holder) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def release_pid_lock(handle: IO[str]) -> None:
    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    handle.close()


def stop_process(proc: subprocess.Popen[bytes] | subprocess.Popen[str], timeout_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``timeout_s``; reaped either way."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class GcPauses:
    """The garbage collector's passes in this process since ``settle_server``, and how long they
    took (every Python thread waits for a pass: a request's latency holds the longest; threads in
    native code without the GIL, Arrow's and tantivy's, go on)."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]  # by generation: 2 is a full pass
        self.seconds = [0.0, 0.0, 0.0]
        self.longest_s = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:  # a gc.callbacks entry
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        generation = info["generation"]
        self.collections[generation] += 1
        self.seconds[generation] += took
        self.longest_s = max(self.longest_s, took)


GC_PAUSES = GcPauses()


_settled = 0  # apps of this process that are settled (tests start several in one process)
_settling = threading.Lock()
_pool_before: object = None


@contextmanager
def settled_server() -> Iterator[None]:
    """A long-running server, tuned while it serves (an app's lifespan, once it has started). From
    then on ``GC_PAUSES`` counts the collector's passes in this process (the pipeline's stats show
    them). When the last settled app of the process stops (tests start several in one), what was
    frozen goes back to the collector and Arrow's pool back to what it was.

    - ``gc.freeze()``: what start-up made (modules, classes, the catalog's and the web framework's
      objects: ~180,000 in an ingest worker) never becomes garbage, yet every full collection went
      through it, pausing the worker's Python threads 110-160 ms (bench/pipeline.py's 100,000
      one-event requests, with these counters added to the code before it; frozen: 10-40 ms).
    - Arrow's jemalloc pool, where the build has it, for what pyarrow allocates (the writer's
      columns, takes and sorts) instead of its default mimalloc, which asks transparent huge pages
      for its arena: a worker's first commit spent ~0.5 s of kernel time zeroing them, against
      ~0.2 s (25,000 2 KB events, 2 vCPUs); later commits cost about the same with either.
    """
    global _settled, _pool_before
    import pyarrow as pa  # a server imports it anyway; the CLI's other commands need not

    with _settling:
        gc.collect()
        gc.freeze()  # again for a second app: what the first froze stays frozen
        if not any(callback is GC_PAUSES for callback in gc.callbacks):
            gc.callbacks.append(GC_PAUSES)
        if _settled == 0:
            _pool_before = pa.default_memory_pool()
            with contextlib.suppress(NotImplementedError):  # a build without jemalloc keeps its default
                pa.set_memory_pool(pa.jemalloc_memory_pool())
        _settled += 1
    log.debug(
        "server settled: %d objects frozen, Arrow memory pool %s",
        gc.get_freeze_count(),
        pa.default_memory_pool().backend_name,
    )
    try:
        yield
    finally:
        with _settling:
            _settled -= 1
            if _settled == 0:
                gc.unfreeze()
                if _pool_before is not None:
                    pa.set_memory_pool(_pool_before)
