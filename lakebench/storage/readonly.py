"""A store opened read-only: every write is refused, as a read-only credential would refuse it.

``LAKEBENCH_READ_ONLY=1`` opens every lake this way (``Settings.read_only``): readers only read, so
every engine, read command and read route works on it; a write fails at once, naming the key.
"""

from __future__ import annotations

from lakebench.core.errors import StorageError
from lakebench.storage.base import ObjectStore, StoreWrapper


class ReadOnlyStore(StoreWrapper):
    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner

    def check(self, kind: str, key: str) -> None:
        if kind == "write":
            raise StorageError(
                f"refused to write {key}: the lake was opened read-only (LAKEBENCH_READ_ONLY); only reads are allowed"
            )
