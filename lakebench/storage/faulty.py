"""A store that fails on purpose, for testing failure paths. It wraps a real store; never a default.

Failures are transient (``StorageUnavailable``: a 5xx, a timeout) unless ``terminal`` is set
(``StorageError``: a refused credential, a missing bucket), as a real store's would be."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from lakebench.core.errors import StorageError, StorageUnavailable
from lakebench.storage.base import ObjectInfo, ObjectStore, RequestStats


class FaultyStore:
    """Fails the first ``fail_writes`` writes (PUT / publish / delete) and ``fail_reads`` reads."""

    def __init__(
        self,
        inner: ObjectStore,
        *,
        fail_writes: int = 0,
        fail_reads: int = 0,
        terminal: bool = False,
        prefix: str = "",
    ) -> None:
        self.inner = inner
        self.fail_writes = fail_writes
        self.fail_reads = fail_reads
        self.terminal = terminal
        self.prefix = prefix  # only keys under this prefix fail
        self.failures = 0

    def _maybe_fail(self, kind: str, key: str) -> None:
        budget = "fail_writes" if kind == "write" else "fail_reads"
        if key.startswith(self.prefix) and getattr(self, budget) > 0:
            setattr(self, budget, getattr(self, budget) - 1)
            self.failures += 1
            if self.terminal:
                raise StorageError(f"injected {kind} refusal on {key}: AccessDenied")
            raise StorageUnavailable(f"injected {kind} failure on {key}")

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
        self._maybe_fail("write", key)
        self.inner.put_bytes(key, data)

    def publish_file(self, key: str, path: Path) -> None:
        self._maybe_fail("write", key)
        self.inner.publish_file(key, path)

    def get(self, key: str) -> bytes:
        self._maybe_fail("read", key)
        return self.inner.get(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        self._maybe_fail("read", key)
        return self.inner.get_range(key, start, length)

    def size(self, key: str) -> int:
        return self.inner.size(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self._maybe_fail("write", key)
        self.inner.delete(key)
