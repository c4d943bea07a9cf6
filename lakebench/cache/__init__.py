"""The answer cache: stale-while-revalidate over a backend chosen by URL.

``memory`` (default; ``memory://?max_mb=256``) keeps entries in the process; ``redis://host:port/db``
shares them between worker processes and machines.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from lakebench.cache.base import CacheBackend, CachePolicy, Entry
from lakebench.cache.swr import Answer, CacheCounters, SwrCache
from lakebench.core.errors import ConfigError

__all__ = ["Answer", "CacheBackend", "CacheCounters", "CachePolicy", "Entry", "SwrCache", "open_backend"]


def open_backend(url: str, namespace: str = "default") -> CacheBackend:
    """The backend a URL names: ``memory`` / ``memory://?max_mb=N``, or ``redis://`` / ``rediss://``.
    ``namespace`` keeps apart the entries of different lakes sharing one Redis."""
    parts = urlsplit(url if "://" in url else f"{url}://")
    if parts.scheme == "memory":
        from lakebench.cache.memory import MemoryBackend

        query = parse_qs(parts.query)
        try:
            max_mb = float(query.get("max_mb", ["256"])[0])
        except ValueError:
            raise ConfigError(f"cache URL {url!r}: max_mb must be a number") from None
        return MemoryBackend(max_bytes=int(max_mb * 2**20))
    if parts.scheme in ("redis", "rediss", "unix"):
        from lakebench.cache.redis import RedisBackend

        return RedisBackend(url, prefix=f"lakebench:{namespace}:")
    raise ConfigError(f"cache {url!r} is not supported; use memory, memory://?max_mb=N or redis://host:port/db")
