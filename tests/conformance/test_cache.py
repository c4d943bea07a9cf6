"""One behaviour suite for the stale-while-revalidate cache, on every backend (in-process and the
Redis server), with a clock the tests move: every state, single-flight, the purge race, outages."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from lakebench.cache import CacheBackend, CachePolicy, SwrCache
from lakebench.cache.memory import MemoryBackend
from lakebench.cache.redis import RedisBackend

POLICY = CachePolicy(max_age_s=60, stale_while_revalidate_s=600, stale_if_error_s=3600, negative_ttl_s=5)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Engine:
    """Stands in for a query engine: counts calls, answers what the test sets, fails on demand."""

    def __init__(self) -> None:
        self.calls = 0
        self.refreshes = 0
        self.value: bytes | None = b"v1"
        self.fail = False
        self.gate: threading.Event | None = None  # when set, a call waits for it
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def load(self) -> tuple[bytes, bool]:
        with self._lock:
            self.calls += 1
            value = self.value
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.fail:
            raise RuntimeError("engine down")
        return (value or b"null"), value is not None

    def refresh(self) -> None:
        self.refreshes += 1


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest, clock: Clock) -> Iterator[CacheBackend]:
    if request.param == "memory":
        yield MemoryBackend(max_bytes=1 << 20, clock=clock)
        return
    url = request.getfixturevalue("redis_url")
    opened = RedisBackend(url, prefix=f"lakebench-test:{uuid.uuid4().hex}:")
    yield opened
    opened.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine() -> Engine:
    return Engine()


@pytest.fixture
def cache(backend: CacheBackend, clock: Clock, engine: Engine) -> Iterator[SwrCache]:
    opened = SwrCache(backend, POLICY, clock=clock, refresh=engine.refresh)
    yield opened
    opened.close()


def settle(cache: SwrCache) -> None:
    """Wait for background revalidations to finish."""
    deadline = time.monotonic() + 10
    while cache._revalidating and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not cache._revalidating


def test_fresh_answers_come_from_the_cache(cache: SwrCache, clock: Clock, engine: Engine) -> None:
    first = cache.get("k", engine.load)
    clock.advance(30)
    second = cache.get("k", engine.load)
    assert (first.state, second.state) == ("miss", "fresh")
    assert second.body == b"v1" and second.age_s == pytest.approx(30) and second.etag == first.etag
    assert engine.calls == 1


def test_stale_answers_are_served_at_once_while_one_revalidation_runs(
    cache: SwrCache, clock: Clock, engine: Engine
) -> None:
    cache.get("k", engine.load)
    engine.value = b"v2"
    clock.advance(61)
    engine.gate = threading.Event()  # hold the revalidation while stale reads pile up
    stale = [cache.get("k", engine.load) for _ in range(20)]
    assert {a.state for a in stale} == {"stale"} and {a.body for a in stale} == {b"v1"}
    engine.gate.set()
    settle(cache)
    assert engine.calls == 2 and cache.counters.revalidations == 1  # one revalidation for twenty stale reads
    fresh = cache.get("k", engine.load)
    assert (fresh.state, fresh.body) == ("fresh", b"v2")


def test_stale_if_error_serves_the_old_copy_when_the_engine_fails(
    cache: SwrCache, clock: Clock, engine: Engine
) -> None:
    cache.get("k", engine.load)
    engine.fail = True
    clock.advance(60 + 600 + 10)  # past stale-while-revalidate, within stale-if-error
    answer = cache.get("k", engine.load)
    assert (answer.state, answer.body) == ("stale-if-error", b"v1")
    clock.advance(3600)  # past the hard limit: no copy is that old
    with pytest.raises(RuntimeError, match="engine down"):
        cache.get("k", engine.load)


def test_hard_expired_entries_are_read_again(cache: SwrCache, clock: Clock, engine: Engine) -> None:
    cache.get("k", engine.load)
    engine.value = b"v2"
    clock.advance(60 + 600 + 1)
    answer = cache.get("k", engine.load)
    assert (answer.state, answer.body, engine.calls) == ("miss", b"v2", 2)


def test_not_found_is_remembered_briefly_and_never_served_stale(cache: SwrCache, clock: Clock, engine: Engine) -> None:
    engine.value = None
    assert cache.get("gone", engine.load).state == "miss"
    clock.advance(4)
    remembered = cache.get("gone", engine.load)
    assert (remembered.state, remembered.found, engine.calls) == ("negative", False, 1)
    engine.value = b"created"
    clock.advance(2)
    answer = cache.get("gone", engine.load)
    assert (answer.state, answer.found, answer.body, engine.calls) == ("miss", True, b"created", 2)


def test_a_commit_soft_purges_its_keys(cache: SwrCache, clock: Clock, engine: Engine) -> None:
    cache.get("k", engine.load)
    cache.get("other", engine.load)
    engine.value = b"v2"
    cache.purge(["k"])  # a commit touched k
    answer = cache.get("k", engine.load)
    assert (answer.state, answer.body) == ("miss", b"v2")
    assert engine.refreshes == 1  # the engine caught up with the commit before it was read
    assert cache.get("other", engine.load).state == "fresh"
    assert cache.get("k", engine.load).state == "fresh"


def test_concurrent_misses_make_one_engine_call(cache: SwrCache, engine: Engine) -> None:
    engine.gate = threading.Event()
    with ThreadPoolExecutor(max_workers=100) as pool:
        answers = [pool.submit(cache.get, "hot", engine.load) for _ in range(100)]
        assert engine.entered.wait(10)
        time.sleep(0.2)  # let every request arrive while the first engine call is held
        engine.gate.set()
        results = [a.result(timeout=10) for a in answers]
    assert engine.calls == 1
    assert {r.body for r in results} == {b"v1"}


def test_a_revalidation_that_began_before_a_purge_does_not_store_its_answer(cache: SwrCache, engine: Engine) -> None:
    engine.gate = threading.Event()
    reader = ThreadPoolExecutor(max_workers=1)
    before = reader.submit(cache.get, "k", engine.load)  # reads v1 ...
    assert engine.entered.wait(10)
    engine.value = b"v2"
    cache.purge(["k"])  # ... while a commit of v2 purges the key
    engine.gate.set()
    assert before.result(timeout=10).body == b"v1"  # that request got what it read
    reader.shutdown()
    assert cache.counters.refused_stale_store == 1  # but its older answer was not stored
    engine.gate = None
    after = cache.get("k", engine.load)
    assert (after.state, after.body) == ("miss", b"v2")


def test_an_unreachable_backend_degrades_to_engine_reads(clock: Clock, engine: Engine) -> None:
    broken = RedisBackend("redis://127.0.0.1:9/0", timeout_s=0.05)  # nothing listens there
    cache = SwrCache(broken, POLICY, clock=clock)
    try:
        answers = [cache.get("k", engine.load) for _ in range(3)]
        assert [a.state for a in answers] == ["bypass"] * 3 and {a.body for a in answers} == {b"v1"}
        assert engine.calls == 3 and cache.counters.backend_errors == 1  # tried once, then left alone
        cache.purge(["k"])  # remembered, to be sent when the backend is back
        assert cache._unsent_purges == {"k"}
        assert broken.healthy()[0] is False
    finally:
        cache.close()


def test_the_memory_backend_is_bounded_by_bytes(clock: Clock) -> None:
    evicted: list[int] = []
    backend = MemoryBackend(max_bytes=10_000, clock=clock, on_evict=evicted.append)
    cache = SwrCache(backend, POLICY, clock=clock)
    page = b"x" * 3_000
    for key in "abcdef":
        cache.get(key, lambda: (page, True))
    assert backend.bytes_held() <= 10_000 and sum(evicted) == 3
    assert cache.get("f", lambda: (b"", True)).state == "fresh"  # the most recent stay
    assert cache.get("a", lambda: (page, True)).state == "miss"  # the least recent went
    cache.close()


def test_near_caches_of_two_processes_stay_coherent(redis_url: str, clock: Clock) -> None:
    """Each process keeps what it read from Redis; a purge by one is heard by the other."""
    prefix = f"lakebench-test:{uuid.uuid4().hex}:"
    backends = [RedisBackend(redis_url, prefix=prefix) for _ in range(2)]
    here, there = (SwrCache(b, POLICY, clock=clock) for b in backends)
    engine = Engine()
    try:
        deadline = time.monotonic() + 5
        while not all(b._near_usable() for b in backends):  # a near cache is off until its channel is up
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert here.get("k", engine.load).state == "miss"
        assert there.get("k", engine.load).state == "fresh"  # from Redis, and now held near
        assert backends[1].get_nowait("k") is not None  # the next hit is local: no round trip
        engine.value = b"v2"
        here.purge(["k"])  # a commit, seen by the other process through the channel
        assert backends[1].sync(timeout_s=5)
        assert backends[1].get_nowait("k") is None
        answer = there.get("k", engine.load)
        assert (answer.state, answer.body) == ("miss", b"v2")
    finally:
        here.close()
        there.close()


def test_a_lost_purge_channel_turns_the_near_cache_off(redis_url: str, clock: Clock) -> None:
    import redis

    prefix = f"lakebench-test:{uuid.uuid4().hex}:"
    backend = RedisBackend(redis_url, prefix=prefix)
    cache = SwrCache(backend, POLICY, clock=clock)
    engine = Engine()
    try:
        deadline = time.monotonic() + 5
        while not backend._near_usable():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        cache.get("k", engine.load)
        assert backend.get_nowait("k") is not None
        admin = redis.Redis.from_url(redis_url)
        assert backend._subscription is not None  # this backend's subscription (only): purges could be missed now
        ours = [c["id"] for c in admin.client_list() if c.get("name") == backend._subscription.name]
        assert len(ours) == 1
        admin.client_kill_filter(_id=ours[0])
        deadline = time.monotonic() + 5
        while backend.get_nowait("k") is not None:
            assert time.monotonic() < deadline, "the near cache was still used without its channel"
            time.sleep(0.01)
        assert cache.get("k", engine.load).state == "fresh"  # from Redis itself, meanwhile
        deadline = time.monotonic() + 10
        while not backend._near_usable():  # subscribed again: in use again, starting empty
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        cache.close()
