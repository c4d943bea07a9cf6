"""Exactly once across writers: the events another writer committed since this one started.

Each pipeline's dedupe window knows the ids *it* took. A client that retries a request on another
worker (``--workers N``: connections land on any of them), or on another pipeline process writing
the same table, reaches a writer that never saw the first attempt. So before a batch is written,
and again inside each commit attempt (on fresh metadata), a pipeline reads the ``event_id`` column
of the files every *other* writer appended since it last looked — walking the snapshot chain, one
manifest per foreign snapshot — and drops from its batch what is already there. The catalog's
compare-and-swap makes the second check exact: a commit that lands in between fails ours, and the
retry looks again. The ids read are remembered for an hour (at most 2,000,000): a client's
retry may reach this writer well after the append holding its first attempt was read. Older
appends are left to ``lakebench compact``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Final

import pyarrow as pa
import pyarrow.compute as pc

from lakebench.core.errors import TransientError
from lakebench.lake.catalog import Lake
from lakebench.storage.parquet_io import read_column

if TYPE_CHECKING:
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot

WRITER_KEY: Final = "lakebench.writer"  # the snapshot summary key naming a pipeline writer
LOOKBACK_S: Final = 3600.0  # other writers' appends are remembered this long (from before a start too)
MAX_IDS: Final = 2_000_000  # ... and at most this many of their ids (~26 bytes each)


class ForeignAppends:
    def __init__(
        self, lake: Lake, writer_id: str, table: Table, lookback_s: float = LOOKBACK_S, max_ids: int = MAX_IDS
    ) -> None:
        self._lake = lake
        self._writer = writer_id
        self._lookback_s = lookback_s
        self._max_ids = max_ids
        # The ids other writers appended, kept for the look-back: a retry reaches this writer after
        # the append that holds its first attempt was read (when a later batch was checked).
        self._held: deque[tuple[float, pa.Array]] = deque()
        # Checked already: everything older than the look-back (a crash and a restart, or a client's
        # retry on another worker, happen within it), so the first look reads what is newer.
        cutoff_ms = (time.time() - lookback_s) * 1000
        snapshot = table.current_snapshot()
        while snapshot is not None and snapshot.timestamp_ms >= cutoff_ms:
            parent = snapshot.parent_snapshot_id
            snapshot = table.metadata.snapshot_by_id(parent) if parent is not None else None
        self._checked: int | None = int(snapshot.snapshot_id) if snapshot is not None else None
        self._found: set[str] = set()  # ids of the batch being committed that another writer holds
        self.dropped = 0

    def _new_snapshots(self, table: Table) -> list[Snapshot]:
        """Snapshots after the last one checked, oldest first (the chain of the current one)."""
        found = []
        snapshot = table.current_snapshot()
        while snapshot is not None and int(snapshot.snapshot_id) != self._checked:
            found.append(snapshot)
            parent = snapshot.parent_snapshot_id
            snapshot = table.metadata.snapshot_by_id(parent) if parent is not None else None
        return found[::-1]

    def _ids(self, table: Table, snapshots: list[Snapshot]) -> list[tuple[float, pa.Array]]:
        """Event ids of the files other writers appended in ``snapshots``, with each snapshot's time."""
        parts = []
        for snapshot in snapshots:
            summary = snapshot.summary
            if summary is None or summary.operation.value != "append" or summary.get(WRITER_KEY) == self._writer:
                continue  # ours, or a rewrite (compaction) of files committed before
            for manifest in snapshot.manifests(table.io):
                if manifest.added_snapshot_id != snapshot.snapshot_id:
                    continue
                for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                    data = entry.data_file
                    key = self._lake.key_of(str(data.file_path))
                    ids = read_column(self._lake.store, key, int(data.file_size_in_bytes), "event_id")
                    parts.append((snapshot.timestamp_ms / 1000, ids.cast(pa.large_string())))
        return parts

    def _remember(self, parts: list[tuple[float, pa.Array]]) -> None:
        self._held.extend(parts)
        cutoff = time.time() - self._lookback_s
        total = sum(len(ids) for _, ids in self._held)
        while self._held and (self._held[0][0] < cutoff or total > self._max_ids):
            total -= len(self._held.popleft()[1])

    def committed_elsewhere(self, table: Table, ids: list[str]) -> set[str]:
        """Which of ``ids`` other writers committed (found now, or by an earlier look at this batch)."""
        snapshots = self._new_snapshots(table)
        if snapshots:
            self._remember(self._ids(table, snapshots))
        current = table.current_snapshot()
        self._checked = int(current.snapshot_id) if current is not None else None
        if self._held and ids:
            batch = pa.array(ids, pa.large_string())
            found: set[str] = set()
            for _, held in self._held:  # the batch hashed (small), every held id probed
                found.update(held.filter(pc.is_in(held, value_set=batch)).to_pylist())
            self.dropped += len(found - self._found)
            self._found |= found
        return {i for i in ids if i in self._found} if self._found else set()

    def check_commit(self, table: Table, ids: list[str]) -> None:
        """Inside a commit attempt: refuse if another writer committed any of ``ids`` since the batch
        was filtered (the flush is retried, and the retry leaves them out)."""
        clash = self.committed_elsewhere(table, ids)
        if clash:
            raise TransientError(
                f"another writer committed {len(clash):,} of this batch's events meanwhile; the batch is written again"
            )

    def mine(self, snapshot_id: int) -> None:
        """This writer's commit landed on top of everything checked: nothing new to read below it,
        and the batch the ids found belonged to is done."""
        self._checked = snapshot_id
        self._found.clear()
