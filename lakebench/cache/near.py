"""A near cache: a process's own copy of the entries it read from Redis, kept coherent by purge
messages (Redis pub/sub), as Redis's client-side caching does.

An entry is valid while no purge of its key has arrived since it was taken. Each put carries the
*token* (epoch, key generation) read before the Redis read or write it copies, and is refused if a
purge arrived in between — the same rule as the cache's generations, one level down. When the
subscription breaks, messages may have been missed: everything is dropped and the near cache is
not used again until the subscription is back.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from lakebench.cache.base import Entry

Token = tuple[int, int]  # (epoch, generation of the key)
MAX_GENERATIONS = 100_000


class NearCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[Entry, Token]] = OrderedDict()
        self._generations: OrderedDict[str, int] = OrderedDict()
        self._bytes = 0
        self._epoch = 0

    def token(self, key: str) -> Token:
        with self._lock:
            return self._epoch, self._generations.get(key, 0)

    def get(self, key: str) -> Entry | None:
        with self._lock:
            held = self._entries.get(key)
            if held is None:
                return None
            entry, token = held
            if token != (self._epoch, self._generations.get(key, 0)):
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: str, entry: Entry, token: Token) -> bool:
        with self._lock:
            if token != (self._epoch, self._generations.get(key, 0)) or entry.size > self.max_bytes:
                return False  # a purge arrived since the token was taken
            if key in self._entries:
                self._drop(key)
            self._entries[key] = (entry, token)
            self._bytes += entry.size
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
            return True

    def invalidate(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._generations[key] = self._generations.get(key, 0) + 1
                self._generations.move_to_end(key)
                if key in self._entries:
                    self._drop(key)
            while len(self._generations) > MAX_GENERATIONS:  # forgetting a generation drops nothing valid:
                self._generations.popitem(last=False)  # no entry older than it is still held

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._generations.clear()
            self._bytes = 0
            self._epoch += 1  # every token taken before is void

    def _drop(self, key: str) -> None:
        entry, _ = self._entries.pop(key)
        self._bytes -= entry.size

    @property
    def bytes_held(self) -> int:
        return self._bytes
