"""The Redis backend: one cache shared by a server's worker processes and by several machines.

Entries are hashes ``<prefix>e:<key>`` (body, stored-at, generation, found) expiring at the
policy's hard limit; generations are counters ``<prefix>g:<key>``. Storing an answer and checking
that its generation is still current is one Lua script, so a purge between a read and a store is
never lost. Redis is a cache, not the truth: a Redis that does not answer makes the caller fall
back to the engine (see ``swr.py``), with a short socket timeout so an outage costs milliseconds.
"""

from __future__ import annotations

import time
from typing import Any, Final

from lakebench.cache.base import Entry
from lakebench.core.errors import ConfigError

_PUT: Final = """
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'b', ARGV[2], 't', ARGV[3], 'g', ARGV[1], 'f', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""
GENERATION_TTL_S: Final = 8 * 86400  # longer than any entry lives


class RedisBackend:
    name = "redis"

    def __init__(self, url: str, prefix: str = "lakebench:", timeout_s: float = 0.25) -> None:
        try:
            import redis
        except ImportError:
            raise ConfigError("the Redis cache needs redis-py: pip install 'lakebench[redis]'") from None
        self.url = url
        self.prefix = prefix
        self._client: Any = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30
        )
        self._put = self._client.register_script(_PUT)
        self._sequence_key = f"{prefix}purges"
        self._memory_at = 0.0
        self._memory = 0

    def _keys(self, key: str) -> tuple[str, str]:
        return f"{self.prefix}e:{key}", f"{self.prefix}g:{key}"

    def get(self, key: str) -> tuple[Entry | None, int, int]:
        entry_key, generation_key = self._keys(key)
        pipe = self._client.pipeline(transaction=True)
        pipe.hgetall(entry_key)
        pipe.get(generation_key)
        pipe.get(self._sequence_key)
        fields, generation, sequence = pipe.execute()
        current = int(generation or 0)
        if not fields:
            return None, current, int(sequence or 0)
        entry = Entry(
            body=fields[b"b"],
            stored_at=float(fields[b"t"]),
            generation=int(fields[b"g"]),
            found=fields[b"f"] == b"1",
        )
        return entry, current, int(sequence or 0)

    def put(self, key: str, entry: Entry, ttl_s: float) -> bool:
        entry_key, generation_key = self._keys(key)
        stored = self._put(
            keys=[entry_key, generation_key],
            args=[entry.generation, entry.body, repr(entry.stored_at), int(entry.found), max(1, int(ttl_s * 1000))],
        )
        return bool(stored)

    def purge(self, keys: list[str]) -> None:
        if not keys:
            return
        pipe = self._client.pipeline(transaction=True)
        for key in keys:
            _, generation_key = self._keys(key)
            pipe.incr(generation_key)
            pipe.expire(generation_key, GENERATION_TTL_S)
        pipe.incr(self._sequence_key)
        pipe.execute()

    def bytes_held(self) -> int:
        """Redis's own figure for the memory it uses (all keys), re-read at most every 5 s."""
        now = time.monotonic()
        if now - self._memory_at > 5:
            self._memory = int(self._client.info("memory").get("used_memory", 0))
            self._memory_at = now
        return self._memory

    def healthy(self) -> tuple[bool, str]:
        try:
            self._client.ping()
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return True, f"answers at {_redact(self.url)}"

    def close(self) -> None:
        self._client.close()


def _redact(url: str) -> str:
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
