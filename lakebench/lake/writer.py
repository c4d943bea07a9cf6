"""Write events into the lake: sorted Parquet files under ``events/data/``, then one Iceberg commit.

A reader never sees a partial file: each file is built on local disk, published whole (rename or
a completed S3 upload), and only then referenced by a commit. A crash before the commit leaves
unreferenced files, which no reader sees.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
from ulid import ULID

from lakebench.core.errors import TransientError
from lakebench.core.models import Event
from lakebench.lake.catalog import DATA_PREFIX, Lake
from lakebench.lake.parquet import FileStats, ParquetOptions, write_events_parquet
from lakebench.lake.schema import events_to_arrow, sort_indices

COMMIT_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class WriterOptions:
    target_file_bytes: int = 128 << 20  # about this much event text per batch (one file, or parallel slices)
    min_parallel_bytes: int = 8 << 20  # split a batch into parallel key-range files only above this size
    threads: int = max(1, min(4, os.cpu_count() or 1))
    parquet: ParquetOptions = ParquetOptions()


@dataclass(slots=True)
class WrittenFile:
    key: str
    url: str
    stats: FileStats


@dataclass(slots=True)
class WriteResult:
    events: int = 0
    raw_bytes: int = 0
    files: list[WrittenFile] = field(default_factory=list)
    snapshot_id: int | None = None
    seconds: float = 0.0

    @property
    def parquet_bytes(self) -> int:
        return sum(f.stats.bytes for f in self.files)


class LakeWriter:
    def __init__(self, lake: Lake, options: WriterOptions = WriterOptions()) -> None:
        self.lake = lake
        self.options = options

    def write(
        self,
        events: Iterable[Event],
        *,
        summary: dict[str, str] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> WriteResult:
        """Write every event and commit them in one Iceberg snapshot; returns what was written."""
        started = time.perf_counter()
        result = WriteResult()
        with ThreadPoolExecutor(max_workers=self.options.threads) as pool:
            pending: list[Future[WrittenFile]] = []
            batch: list[Event] = []
            size = 0
            for event in events:
                batch.append(event)
                size += event.approx_size()
                if size >= self.options.target_file_bytes:
                    pending += self._submit_batch(batch, size, pool)
                    batch, size = [], 0
                    self._collect(pending, result, progress, keep=self.options.threads)
            if batch:
                pending += self._submit_batch(batch, size, pool)
            self._collect(pending, result, progress, keep=0)
        if result.files:
            result.snapshot_id = self._commit(result, summary or {})
        result.seconds = time.perf_counter() - started
        return result

    @staticmethod
    def _collect(
        pending: list[Future[WrittenFile]],
        result: WriteResult,
        progress: Callable[[int], None] | None,
        keep: int,
    ) -> None:
        """Wait for written files, oldest first, until at most ``keep`` are in flight (bounded memory)."""
        while len(pending) > keep:
            written = pending.pop(0).result()
            result.files.append(written)
            result.events += written.stats.rows
            result.raw_bytes += written.stats.raw_bytes
            if progress:
                progress(written.stats.rows)

    def _submit_batch(self, batch: list[Event], size: int, pool: ThreadPoolExecutor) -> list[Future[WrittenFile]]:
        """Convert a batch to Arrow, sort it by key, and write it as one file or as key-range slices.

        Conversion holds the GIL and runs here; the workers' take + Parquet encoding + compression
        release it, so slices are written on all cores while the next batch is being read.
        """
        table = events_to_arrow(batch)
        order = sort_indices(table)
        parts = max(1, min(self.options.threads, size // self.options.min_parallel_bytes))
        step = -(-len(order) // parts)
        return [pool.submit(self._write_file, table, order[i : i + step]) for i in range(0, len(order), step)]

    def _write_file(self, table: pa.Table, order: pa.Array) -> WrittenFile:
        """Write the rows at ``order`` (key-sorted) as one Parquet file and publish it (not yet committed)."""
        store = self.lake.store
        key = f"{DATA_PREFIX}/{ULID()}.parquet"
        staging = store.staging_path(".parquet")
        try:
            stats = write_events_parquet(table.take(order), staging, self.options.parquet, presorted=True)
            store.publish_file(key, staging)
        finally:
            staging.unlink(missing_ok=True)
        return WrittenFile(key=key, url=store.url_for(key), stats=stats)

    def _commit(self, result: WriteResult, summary: dict[str, str]) -> int:
        from pyiceberg.exceptions import CommitFailedException

        properties = {
            "lakebench.events": str(result.events),
            "lakebench.raw-bytes": str(result.raw_bytes),
            **summary,
        }
        urls = [f.url for f in result.files]
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            table = self.lake.table()  # fresh metadata on every attempt
            try:
                table.add_files(urls, snapshot_properties=properties, check_duplicate_files=False)
            except CommitFailedException as exc:
                if attempt == COMMIT_ATTEMPTS:
                    raise TransientError(
                        f"commit of {len(urls)} files lost {attempt} races with other writers: {exc}"
                    ) from exc
                time.sleep(0.05 * attempt)
                continue
            snapshot = table.current_snapshot()
            assert snapshot is not None
            return int(snapshot.snapshot_id)
        raise AssertionError("unreachable")
