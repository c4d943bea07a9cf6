"""Facts about the running process."""

from __future__ import annotations

import os
import time

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
