"""The Redis backend: one cache shared by a server's worker processes and by several machines.

Entries are hashes ``<prefix>e:<key>`` (body, stored-at, generation, found) expiring at the
policy's hard limit; generations are counters ``<prefix>g:<key>``. Reading an entry with its
generation, and storing an answer if its generation is still current, are one Lua script each
(one round trip, atomic), so a purge between a read and a store is never lost. Redis is a cache, not the truth:
a Redis that does not answer makes the caller fall
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
_GET: Final = """
return {redis.call('HMGET', KEYS[1], 'b', 't', 'g', 'f'), redis.call('GET', KEYS[2]), redis.call('GET', KEYS[3])}
"""
GENERATION_TTL_S: Final = 8 * 86400  # longer than any entry lives


class RedisBackend:
    name = "redis"
    blocking = True

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
        self._async: Any = None  # redis.asyncio client, made on first use inside the event loop
        self._timeout_s = timeout_s
        self._put = self._client.register_script(_PUT)
        self._get = self._client.register_script(_GET)
        self._aget_script: Any = None
        self._sequence_key = f"{prefix}purges"
        self._memory_at = 0.0
        self._memory = 0

    def _keys(self, key: str) -> tuple[str, str]:
        return f"{self.prefix}e:{key}", f"{self.prefix}g:{key}"

    def get(self, key: str) -> tuple[Entry | None, int, int]:
        fields, generation, sequence = self._get(keys=[*self._keys(key), self._sequence_key])
        return _entry(fields), int(generation or 0), int(sequence or 0)

    async def aget(self, key: str) -> tuple[Entry | None, int, int]:
        """``get`` without leaving the event loop (redis.asyncio): a hit costs no worker thread."""
        if self._async is None:
            import redis.asyncio

            self._async = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=self._timeout_s, socket_connect_timeout=self._timeout_s
            )
            self._aget_script = self._async.register_script(_GET)
        fields, generation, sequence = await self._aget_script(keys=[*self._keys(key), self._sequence_key])
        return _entry(fields), int(generation or 0), int(sequence or 0)

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
        self._client.close()  # the asyncio client closes with its event loop


def _entry(fields: list[bytes | None]) -> Entry | None:
    body, stored_at, generation, found = fields
    if body is None or stored_at is None or generation is None:
        return None
    return Entry(body=body, stored_at=float(stored_at), generation=int(generation), found=found == b"1")


def _redact(url: str) -> str:
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
