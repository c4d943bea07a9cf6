"""The Redis backend: one cache shared by a server's worker processes and by several machines.

Entries are hashes ``<prefix>e:<key>`` (body, stored-at, generation, found) expiring at the
policy's hard limit; generations are counters ``<prefix>g:<key>``. Reading an entry with its
generation, and storing an answer if its generation is still current, are one Lua script each
(one round trip, atomic), so a purge between a read and a store is never lost.

Each process keeps a near cache of what it read (``near.py``): a purge is published on a channel
by the same script that bumps the generations, and every subscriber drops the purged keys, so a hit
usually costs no round trip. ``sync()`` waits until this process has heard every purge Redis has
counted (a flush waits for it on every worker before it answers).

Redis is a cache, not the truth: a Redis that does not answer makes the caller fall back to the
engine (see ``swr.py``), with a short socket timeout so an outage costs milliseconds.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Final

from lakebench.cache.base import Entry
from lakebench.cache.near import NearCache
from lakebench.core.errors import ConfigError

log = logging.getLogger(__name__)

_PUT: Final = """
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'b', ARGV[2], 't', ARGV[3], 'g', ARGV[1], 'f', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""
_PURGE: Final = """
for i, key in ipairs(KEYS) do
  redis.call('INCR', key)
  redis.call('EXPIRE', key, ARGV[1])
end
local sequence = redis.call('INCR', ARGV[2])
redis.call('PUBLISH', ARGV[3], cjson.encode({seq = sequence, keys = cjson.decode(ARGV[4])}))
return sequence
"""
_GET: Final = """
return {redis.call('HMGET', KEYS[1], 'b', 't', 'g', 'f'), redis.call('GET', KEYS[2]), redis.call('GET', KEYS[3])}
"""
GENERATION_TTL_S: Final = 8 * 86400  # longer than any entry lives


class RedisBackend:
    name = "redis"
    blocking = True

    def __init__(
        self, url: str, prefix: str = "lakebench:", timeout_s: float = 0.25, near_bytes: int = 64 << 20
    ) -> None:
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
        self._purge = self._client.register_script(_PURGE)
        self._sequence_key = f"{prefix}purges"
        self._channel = f"{prefix}purged"
        self._memory_at = 0.0
        self._memory = 0
        self._near = NearCache(near_bytes) if near_bytes > 0 else None
        self._heard = threading.Condition()
        self._heard_sequence = 0  # the highest purge this process has heard of
        self._listening = False  # subscribed to the purge channel: the near cache may be used
        self._subscription: Subscription | None = None
        if self._near is not None:
            self._listen()

    # -- purge messages -------------------------------------------------------------------------

    def _listen(self) -> None:
        self._subscription = Subscription(self.url, self._channel, self._on_purge, self._on_subscribed, self._timeout_s)

    def _on_subscribed(self, subscribed: bool) -> None:
        """Subscribed again: from now on every purge is heard (the near cache starts empty). Not
        subscribed: purges may be missed, so nothing near is used."""
        if self._near is not None:
            self._near.clear()
        self._listening = subscribed

    def _on_purge(self, message: dict[str, Any]) -> None:
        note = json.loads(message["data"])
        if self._near is not None:
            self._near.invalidate([str(k) for k in note.get("keys") or []])
        with self._heard:
            self._heard_sequence = max(self._heard_sequence, int(note["seq"]))
            self._heard.notify_all()

    def _near_usable(self) -> bool:
        return self._near is not None and self._listening

    def sync(self, timeout_s: float = 10.0) -> bool:
        """Wait until this process has heard every purge Redis has counted so far."""
        if not self._near_usable():
            return True  # nothing held locally that a purge could make stale
        target = int(self._client.get(self._sequence_key) or 0)
        with self._heard:
            return self._heard.wait_for(lambda: self._heard_sequence >= target, timeout_s)

    def _keys(self, key: str) -> tuple[str, str]:
        return f"{self.prefix}e:{key}", f"{self.prefix}g:{key}"

    def get_nowait(self, key: str) -> tuple[Entry | None, int, int] | None:
        """A near-cache hit, or None: the answer needs a round trip."""
        if self._near is None or not self._near_usable():
            return None
        entry = self._near.get(key)
        if entry is None:
            return None
        return entry, entry.generation, self._heard_sequence  # valid: no purge of the key since

    def get(self, key: str) -> tuple[Entry | None, int, int]:
        near = self.get_nowait(key)
        if near is not None:
            return near
        token = self._near.token(key) if self._near is not None else None
        fields, generation, sequence = self._get(keys=[*self._keys(key), self._sequence_key])
        return self._took(key, _entry(fields), int(generation or 0), int(sequence or 0), token)

    def _took(
        self, key: str, entry: Entry | None, generation: int, sequence: int, token: tuple[int, int] | None
    ) -> tuple[Entry | None, int, int]:
        if entry is not None and entry.generation == generation and token is not None and self._near_usable():
            assert self._near is not None
            self._near.put(key, entry, token)
        return entry, generation, sequence

    async def aget(self, key: str) -> tuple[Entry | None, int, int]:
        """``get`` without leaving the event loop (redis.asyncio): a hit costs no worker thread."""
        near = self.get_nowait(key)
        if near is not None:
            return near
        if self._async is None:
            import redis.asyncio

            self._async = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=self._timeout_s, socket_connect_timeout=self._timeout_s
            )
            self._aget_script = self._async.register_script(_GET)
        token = self._near.token(key) if self._near is not None else None
        fields, generation, sequence = await self._aget_script(keys=[*self._keys(key), self._sequence_key])
        return self._took(key, _entry(fields), int(generation or 0), int(sequence or 0), token)

    def put(self, key: str, entry: Entry, ttl_s: float) -> bool:
        entry_key, generation_key = self._keys(key)
        token = self._near.token(key) if self._near is not None else None  # before the write it copies
        stored = bool(
            self._put(
                keys=[entry_key, generation_key],
                args=[entry.generation, entry.body, repr(entry.stored_at), int(entry.found), max(1, int(ttl_s * 1000))],
            )
        )
        if stored:
            self._took(key, entry, entry.generation, 0, token)
        return stored

    def purge(self, keys: list[str]) -> None:
        if not keys:
            return
        sequence = int(
            self._purge(
                keys=[self._keys(key)[1] for key in keys],
                args=[GENERATION_TTL_S, self._sequence_key, self._channel, json.dumps(keys)],
            )
        )
        if self._near is not None:
            self._near.invalidate(keys)  # at once here; other processes when the message arrives
        with self._heard:
            self._heard_sequence = max(self._heard_sequence, sequence)

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
        if self._subscription is not None:
            self._subscription.close()
        self._client.close()  # the asyncio client closes with its event loop


class Subscription:
    """A channel listened to in a thread of its own, resubscribing after a broken connection;
    ``on_state(True)`` once subscribed, ``on_state(False)`` when the connection is lost."""

    def __init__(
        self,
        url: str,
        channel: str,
        on_message: Callable[[dict[str, Any]], None],
        on_state: Callable[[bool], None] | None = None,
        connect_timeout_s: float = 0.25,
    ) -> None:
        import redis

        self.name = f"lakebench-{os.getpid()}-{uuid.uuid4().hex[:8]}"  # CLIENT LIST shows whose it is
        # Its own connection, without a read timeout: it waits for messages (pings notice a dead one).
        self._client: Any = redis.Redis.from_url(
            url,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=None,
            health_check_interval=10,
            client_name=self.name,
        )
        self._channel = channel
        self._on_message = on_message
        self._on_state = on_state or (lambda _: None)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lakebench-{channel}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._closing.is_set():
            pubsub = self._client.pubsub()
            try:
                pubsub.subscribe(self._channel)
                while not self._closing.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self._on_state(True)
                    elif message["type"] == "message":
                        self._on_message(message)
            except Exception as exc:
                log.warning("lost the subscription to %s (%s); subscribing again", self._channel, exc)
                self._on_state(False)
                self._closing.wait(0.5)
            finally:
                pubsub.close()

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=5)
        self._on_state(False)
        self._client.close()


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
