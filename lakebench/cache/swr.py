"""Stale-while-revalidate over any backend: the seed's Option 2, done properly.

For a key, by the age of its entry:

- *fresh* (younger than ``max_age``): served as is;
- *stale* (within ``stale_while_revalidate`` after that): served at once, and one background
  revalidation (per key, per process) reads the engine and stores the new answer;
- older, *purged* (a commit touched the key) or absent: read now from the engine — one call for
  any number of concurrent requests of the key (single-flight); if the engine fails, an entry
  within ``stale_if_error`` is served instead;
- *not found* answers are remembered for ``negative_ttl`` only, and never served stale.

A backend that fails (Redis down) costs the cache, never the answer: the engine is asked directly.
Before any engine read, the engine is refreshed if the backend has seen purges since it last was
(another process committed): an answer is never read from a snapshot older than the purge that
asked for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from lakebench.cache.base import CacheBackend, CachePolicy, Entry

log = logging.getLogger(__name__)
State = Literal["fresh", "stale", "miss", "negative", "stale-if-error", "bypass"]
Loader = Callable[[], tuple[bytes, bool]]  # the answer's bytes, and whether the key exists


@dataclass(frozen=True, slots=True)
class Answer:
    body: bytes
    found: bool
    state: State
    age_s: float  # how old the answer is (0 when just read)
    etag: str


@dataclass(slots=True)
class CacheCounters:
    """What the cache did, by outcome. ``listener`` (the service's Prometheus metrics) hears each
    increment as (counter, label, amount)."""

    requests: dict[str, int] = field(default_factory=dict)  # by State
    engine_calls: int = 0
    revalidations: int = 0
    backend_errors: int = 0
    engine_errors: int = 0
    evictions: int = 0
    stored: int = 0
    refused_stale_store: int = 0  # answers read before a purge, not stored after it
    listener: Callable[[str, str, int], None] | None = None

    def count(self, state: State) -> None:
        self.requests[state] = self.requests.get(state, 0) + 1
        if self.listener is not None:
            self.listener("requests", state, 1)

    def add(self, counter: str, amount: int = 1) -> None:
        setattr(self, counter, getattr(self, counter) + amount)
        if self.listener is not None:
            self.listener(counter, "", amount)


class SwrCache:
    def __init__(
        self,
        backend: CacheBackend,
        policy: CachePolicy = CachePolicy(),
        *,
        clock: Callable[[], float] = time.time,
        refresh: Callable[[], None] | None = None,
        background: ThreadPoolExecutor | None = None,
        backend_retry_s: float = 5.0,
    ) -> None:
        self.backend = backend
        self.policy = policy
        self.counters = CacheCounters()
        self._clock = clock
        self._refresh = refresh
        self._background = background or ThreadPoolExecutor(max_workers=4, thread_name_prefix="lakebench-swr")
        self._lock = threading.Lock()
        self._flights: dict[str, Future[Answer]] = {}  # sync loads in progress
        self._revalidating: set[str] = set()  # background revalidations in progress
        self._seen_sequence = 0  # the backend's purge sequence when the engine was last refreshed
        self._backend_down_until = 0.0
        self._backend_retry_s = backend_retry_s
        self._unsent_purges: set[str] = set()  # purges the backend missed while down: sent when it is back

    # -- reading --------------------------------------------------------------------------------

    def get(self, key: str, load: Loader) -> Answer:
        found = self._from_backend(key)
        if found is None:  # the backend is down: straight to the engine
            body, exists = self._call(load)
            return self._answer(body, exists, "bypass", 0.0)
        entry, generation, sequence = found
        answer = self._served(key, load, entry, generation, sequence)
        return answer if answer is not None else self._load_now(key, load, entry, generation, sequence)

    def peek(self, key: str, load: Loader) -> Answer | None:
        """The answer when the cache has one to serve now (fresh, stale with a revalidation started,
        negative); None when the engine must be read. For an in-process backend: no blocking call."""
        found = self._from_backend(key)
        if found is None:
            return None
        return self._served(key, load, *found)

    async def apeek(self, key: str, load: Loader) -> Answer | None:
        """``peek`` for a backend that reads over the network without blocking (``aget``)."""
        if self._clock() < self._backend_down_until:
            return None
        try:
            nowait = getattr(self.backend, "get_nowait", None)
            found = nowait(key) if nowait is not None else None
            if found is None:
                found = await self.backend.aget(key)  # type: ignore[attr-defined]
        except Exception as exc:
            self._backend_failed(exc)
            return None
        return self._served(key, load, *found)

    def _served(self, key: str, load: Loader, entry: Entry | None, generation: int, sequence: int) -> Answer | None:
        now = self._clock()
        if entry is not None:
            age = max(0.0, now - entry.stored_at)
            current = entry.generation == generation
            if not entry.found:
                if current and age < self.policy.negative_ttl_s:
                    return self._answer(entry.body, False, "negative", age)
            elif current and age < self.policy.max_age_s:
                return self._answer(entry.body, True, "fresh", age)
            elif current and age < self.policy.max_age_s + self.policy.stale_while_revalidate_s:
                self._revalidate_later(key, load, generation, sequence)
                return self._answer(entry.body, True, "stale", age)
        return None

    def _from_backend(self, key: str) -> tuple[Entry | None, int, int] | None:
        if self._clock() < self._backend_down_until:
            return None
        try:
            if self._unsent_purges:
                self._send_purges()
            return self.backend.get(key)
        except Exception as exc:
            self._backend_failed(exc)
            return None

    def _backend_failed(self, exc: Exception) -> None:
        self.counters.add("backend_errors")
        self._backend_down_until = self._clock() + self._backend_retry_s
        log.warning(
            "cache backend %s failed (%s); reading the engine directly for %.0f s",
            self.backend.name,
            exc,
            self._backend_retry_s,
        )

    def _answer(self, body: bytes, found: bool, state: State, age: float) -> Answer:
        self.counters.count(state)
        return Answer(body, found, state, age, Entry(body, 0.0, 0, found).etag)

    def _call(self, load: Loader) -> tuple[bytes, bool]:
        self.counters.add("engine_calls")
        try:
            return load()
        except Exception:
            self.counters.add("engine_errors")
            raise

    def _catch_up(self, sequence: int) -> None:
        """Refresh the engine when purges happened since it last was (by any process)."""
        if self._refresh is not None and sequence > self._seen_sequence:
            self._refresh()
            self._seen_sequence = sequence

    def _load_now(self, key: str, load: Loader, stale: Entry | None, generation: int, sequence: int) -> Answer:
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = Future()
        assert flight is not None
        if not leader:
            return flight.result()  # single-flight: one engine call for every concurrent miss
        try:
            answer = self._read_and_store(key, load, stale, generation, sequence)
            flight.set_result(answer)
            return answer
        except BaseException as exc:
            flight.set_exception(exc)
            raise
        finally:
            with self._lock:
                del self._flights[key]

    def _read_and_store(self, key: str, load: Loader, stale: Entry | None, generation: int, sequence: int) -> Answer:
        try:
            self._catch_up(sequence)
            body, exists = self._call(load)
        except Exception:
            age = self._clock() - stale.stored_at if stale is not None else 0.0
            if stale is not None and stale.found and age < self.policy.max_age_s + self.policy.stale_if_error_s:
                log.warning("engine failed for %s; serving a copy %.0f s old (stale-if-error)", key, age)
                return self._answer(stale.body, True, "stale-if-error", age)
            raise
        self._store(key, Entry(body, self._clock(), generation, exists))
        return self._answer(body, exists, "miss", 0.0)

    def _store(self, key: str, entry: Entry) -> None:
        ttl = self.policy.hard_limit_s if entry.found else self.policy.negative_ttl_s
        try:
            if self.backend.put(key, entry, ttl):
                self.counters.add("stored")
            else:
                self.counters.add("refused_stale_store")
        except Exception as exc:
            self._backend_failed(exc)

    def _revalidate_later(self, key: str, load: Loader, generation: int, sequence: int) -> None:
        with self._lock:
            if key in self._revalidating:
                return
            self._revalidating.add(key)
        self._background.submit(self._revalidate, key, load, generation, sequence)

    def _revalidate(self, key: str, load: Loader, generation: int, sequence: int) -> None:
        try:
            self.counters.add("revalidations")
            self._catch_up(sequence)
            body, exists = self._call(load)
            self._store(key, Entry(body, self._clock(), generation, exists))
        except Exception:
            log.exception("background revalidation of %s failed; the stale copy stays", key)
        finally:
            with self._lock:
                self._revalidating.discard(key)

    # -- learning about commits -----------------------------------------------------------------

    def purge(self, keys: list[str]) -> None:
        """Soft-purge the keys a commit touched: the next read of each reads the engine. A backend
        that is down gets them when it is back, before it serves anything again."""
        with self._lock:
            self._unsent_purges.update(keys)
        try:
            self._send_purges()
        except Exception as exc:
            self._backend_failed(exc)

    def _send_purges(self) -> None:
        with self._lock:
            keys, self._unsent_purges = list(self._unsent_purges), set()
        try:
            self.backend.purge(keys)
        except BaseException:
            with self._lock:
                self._unsent_purges.update(keys)
            raise

    def close(self) -> None:
        self._background.shutdown(wait=True, cancel_futures=True)
        self.backend.close()
