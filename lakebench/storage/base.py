"""The object-store contract: a flat key space with atomic whole-object writes and ranged reads.

Every implementation counts its requests and bytes (``RequestStats``) so benchmarks can report
what a query cost in object-store operations, not only in milliseconds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    modified: float = 0.0  # seconds since the epoch


@dataclass(slots=True)
class RequestStats:
    """Requests made and bytes moved, by request kind (GET, PUT, HEAD, LIST, DELETE)."""

    requests: dict[str, int] = field(default_factory=dict)
    bytes_read: int = 0
    bytes_written: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, kind: str, *, read: int = 0, written: int = 0) -> None:
        with self._lock:
            self.requests[kind] = self.requests.get(kind, 0) + 1
            self.bytes_read += read
            self.bytes_written += written

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {**self.requests, "bytes_read": self.bytes_read, "bytes_written": self.bytes_written}

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.bytes_read = 0
            self.bytes_written = 0


@runtime_checkable
class ObjectStore(Protocol):
    """Keys are '/'-separated paths relative to the store's root URL."""

    @property
    def root_url(self) -> str:
        """``file:///abs/path`` or ``s3://bucket/prefix``: what other readers (DuckDB, pyiceberg) open."""
        ...

    @property
    def stats(self) -> RequestStats: ...

    def url_for(self, key: str) -> str: ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write a whole object; readers see either nothing or all of it."""
        ...

    def staging_path(self, suffix: str = "") -> Path:
        """A fresh local path to build an object in before ``publish_file`` (same disk as a local store)."""
        ...

    def publish_file(self, key: str, path: Path) -> None:
        """Publish a local file as an object, atomically, consuming the file."""
        ...

    def get(self, key: str) -> bytes: ...

    def get_range(self, key: str, start: int, length: int) -> bytes: ...

    def size(self, key: str) -> int: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def delete(self, key: str) -> None: ...


def join_key(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


class StoreWrapper:
    """A store in front of another: every request passes ``check(kind, key)`` ("read" or "write")
    first, then goes to ``inner``."""

    inner: ObjectStore

    def check(self, kind: str, key: str) -> None:
        """Raise to refuse the request."""

    @property
    def root_url(self) -> str:
        return self.inner.root_url

    @property
    def stats(self) -> RequestStats:
        return self.inner.stats

    def url_for(self, key: str) -> str:
        return self.inner.url_for(key)

    def staging_path(self, suffix: str = "") -> Path:
        return self.inner.staging_path(suffix)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.check("write", key)
        self.inner.put_bytes(key, data)

    def publish_file(self, key: str, path: Path) -> None:
        self.check("write", key)
        self.inner.publish_file(key, path)

    def get(self, key: str) -> bytes:
        self.check("read", key)
        return self.inner.get(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        self.check("read", key)
        return self.inner.get_range(key, start, length)

    def size(self, key: str) -> int:
        return self.inner.size(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.check("write", key)
        self.inner.delete(key)
