"""A store that fails on purpose, for testing failure paths. It wraps a real store; never a default.

Failures are transient (``StorageUnavailable``: a 5xx, a timeout) unless ``terminal`` is set
(``StorageError``: a refused credential, a missing bucket), as a real store's would be."""

from __future__ import annotations

from lakebench.core.errors import StorageError, StorageUnavailable
from lakebench.storage.base import ObjectStore, StoreWrapper


class FaultyStore(StoreWrapper):
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

    def check(self, kind: str, key: str) -> None:
        budget = "fail_writes" if kind == "write" else "fail_reads"
        if key.startswith(self.prefix) and getattr(self, budget) > 0:
            setattr(self, budget, getattr(self, budget) - 1)
            self.failures += 1
            if self.terminal:
                raise StorageError(f"injected {kind} refusal on {key}: AccessDenied")
            raise StorageUnavailable(f"injected {kind} failure on {key}")
