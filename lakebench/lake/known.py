"""The event ids a table already holds, so that a batch write adds each event at most once.

Re-running ``generate`` or ``ingest`` on the same input must leave the table as it was. Before a
batch is written, its ids are looked up in the data files whose ``event_id`` bounds (Iceberg
column metrics, kept in the manifests) can hold them; only those files' ``event_id`` column is
read (ranged GETs of its chunks), once per write. The snapshot the lookup saw is remembered: if
another writer commits in between, the files it added are checked at commit time, and a clash
aborts the commit (nothing is written twice; running again skips what is there).

Cost: the ids of one write are remembered (about 120 bytes each: 1M events, ~120 MB); the ids read
from files are cached up to ``CACHE_BYTES``, least recently used first out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from lakebench.core.errors import TransientError
from lakebench.lake.catalog import Lake
from lakebench.lake.schema import SCHEMA
from lakebench.storage.parquet_io import read_column

if TYPE_CHECKING:
    from pyiceberg.manifest import DataFile
    from pyiceberg.table import Table

EVENT_ID_FIELD = SCHEMA.find_field("event_id").field_id
CACHE_BYTES = 256 << 20  # event ids of files read, kept for the next batches of the same write


@dataclass(frozen=True, slots=True)
class _File:
    url: str
    size: int
    lower: str | None  # the file's event_id bounds, when its metrics hold them
    upper: str | None

    def may_hold(self, lowest: str, highest: str) -> bool:
        return (self.upper is None or self.upper >= lowest) and (self.lower is None or self.lower <= highest)


def _bound(data_file: DataFile, which: str) -> str | None:
    bounds = getattr(data_file, which) or {}
    raw = bounds.get(EVENT_ID_FIELD)
    try:
        return raw.decode("utf-8") if raw is not None else None
    except UnicodeDecodeError:
        return None


def _files(table: Table) -> dict[str, _File]:
    if table.current_snapshot() is None:
        return {}
    files = {}
    for task in table.scan().plan_files():
        f = task.file
        url = str(f.file_path)
        files[url] = _File(url, int(f.file_size_in_bytes), _bound(f, "lower_bounds"), _bound(f, "upper_bounds"))
    return files


class KnownIds:
    """What the table held when the write began, looked up lazily, file by file."""

    def __init__(self, lake: Lake, cache_bytes: int = CACHE_BYTES) -> None:
        from lakebench.core.errors import ConfigError

        self._lake = lake
        try:
            table = lake.table(create=False)  # a write that ends up writing nothing creates no table
        except ConfigError:
            table = None
        snapshot = table.current_snapshot() if table is not None else None
        self.snapshot_id = int(snapshot.snapshot_id) if snapshot is not None else None
        self._files = _files(table) if table is not None else {}
        self._read: OrderedDict[str, pa.Array] = OrderedDict()  # file -> its ids, least recently used first
        self._cache_bytes = cache_bytes
        self._seen: set[str] = set()  # ids of this write so far: a repeat within the input is skipped too
        self.skipped = 0

    def _ids_of(self, file: _File) -> pa.Array:
        ids = self._read.pop(file.url, None)
        if ids is None:
            column = read_column(self._lake.store, self._lake.key_of(file.url), file.size, "event_id")
            ids = column.cast(pa.large_string())
        self._read[file.url] = ids
        while len(self._read) > 1 and sum(a.nbytes for a in self._read.values()) > self._cache_bytes:
            self._read.popitem(last=False)
        return ids

    def _held(self, files: Iterable[_File], ids: Sequence[str]) -> set[str]:
        lowest, highest = min(ids), max(ids)
        candidates = pa.array(ids, pa.large_string())
        held: set[str] = set()
        for file in files:
            if file.may_hold(lowest, highest):
                stored = self._ids_of(file)
                # Hash the batch (small), probe with the file's ids (large): not the other way round.
                held.update(stored.filter(pc.is_in(stored, value_set=candidates)).to_pylist())
        return held

    def new(self, ids: Sequence[str]) -> list[bool]:
        """For each id, whether it is new: neither in the table nor earlier in this write."""
        if not ids:
            return []
        held = self._held(self._files.values(), ids) if self._files else set()
        keep = []
        for event_id in ids:
            fresh = event_id not in held and event_id not in self._seen
            if fresh:
                self._seen.add(event_id)
            else:
                self.skipped += 1
            keep.append(fresh)
        return keep

    def check_commit(self, table: Table) -> None:
        """Before committing on ``table`` (fresh metadata): refuse if a writer added any of our ids since."""
        snapshot = table.current_snapshot()
        if snapshot is None or int(snapshot.snapshot_id) == self.snapshot_id or not self._seen:
            return
        added = [f for url, f in _files(table).items() if url not in self._files]
        clash = self._held(added, sorted(self._seen)) if added else set()
        if clash:
            raise TransientError(
                f"another writer committed {len(clash):,} of these events while this write ran; nothing was "
                "committed — run again: events already in the lake are skipped"
            )
