"""The in-process backend: an LRU bounded by bytes (a 225 KB page counts 225 KB), the default."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from lakebench.cache.base import Entry

MAX_GENERATIONS = 1_000_000  # purged keys remembered; beyond, the oldest are forgotten


class MemoryBackend:
    name = "memory"
    blocking = False

    def __init__(
        self,
        max_bytes: int = 256 << 20,
        clock: Callable[[], float] = time.time,
        on_evict: Callable[[int], None] | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self._clock = clock
        self._on_evict = on_evict
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[Entry, float]] = OrderedDict()  # key -> (entry, expires at)
        self._generations: OrderedDict[str, int] = OrderedDict()
        self._bytes = 0
        self._sequence = 0

    def get(self, key: str) -> tuple[Entry | None, int, int]:
        with self._lock:
            generation = self._generations.get(key, 0)
            held = self._entries.get(key)
            if held is None:
                return None, generation, self._sequence
            entry, expires = held
            if expires <= self._clock():
                self._drop(key)
                return None, generation, self._sequence
            self._entries.move_to_end(key)
            return entry, generation, self._sequence

    def put(self, key: str, entry: Entry, ttl_s: float) -> bool:
        if entry.size > self.max_bytes:
            return False
        with self._lock:
            if self._generations.get(key, 0) != entry.generation:
                return False  # purged since the answer was read: it may be the old version
            if key in self._entries:
                self._drop(key)
            self._entries[key] = (entry, self._clock() + ttl_s)
            self._bytes += entry.size
            evicted = 0
            while self._bytes > self.max_bytes and self._entries:
                oldest = next(iter(self._entries))
                self._drop(oldest)
                evicted += 1
        if evicted and self._on_evict is not None:
            self._on_evict(evicted)
        return True

    def _drop(self, key: str) -> None:
        entry, _ = self._entries.pop(key)
        self._bytes -= entry.size

    def purge(self, keys: list[str]) -> None:
        with self._lock:
            self._sequence += 1
            for key in keys:
                self._generations[key] = self._generations.get(key, 0) + 1
                self._generations.move_to_end(key)
            while len(self._generations) > MAX_GENERATIONS:
                forgotten, _ = self._generations.popitem(last=False)
                if forgotten in self._entries:  # its entry could no longer be told stale
                    self._drop(forgotten)

    def bytes_held(self) -> int:
        return self._bytes

    def healthy(self) -> tuple[bool, str]:
        return True, f"{len(self._entries):,} entries, {self._bytes:,} of {self.max_bytes:,} bytes"

    def close(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
