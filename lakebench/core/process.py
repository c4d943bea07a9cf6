"""Facts about the running process."""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path
from typing import IO

_IMPORTED = time.perf_counter()  # where the process's start cannot be read


def process_age_s() -> float:
    """Seconds since this process started — interpreter start-up and imports included (Linux /proc);
    elsewhere, since this module was imported."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            stat = f.read()
        started = int(stat[stat.rindex(")") + 2 :].split()[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
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
