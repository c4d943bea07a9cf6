"""Write events into the lake: key-sorted Parquet files under ``events/data/``, then one Iceberg commit.

A reader never sees a partial file: each file is built on local disk, published whole (rename or
a completed S3 upload), and only then referenced by a commit. A crash before the commit leaves
unreferenced files, which no reader sees (``lakebench compact`` removes them later).

Each file's key segment and newest documents are prepared beside it (``index/publish.py``) and
the commit publishes the snapshot's key directory and full-text version with the files: readers
never build or write an index.

A commit can carry table properties in the same atomic transaction (the pipeline records its
write-ahead-log offset there) and a precondition checked on fresh metadata before every attempt,
so a retried or replayed commit is applied at most once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
from ulid import ULID

from lakebench.core.models import Event, EventRow
from lakebench.index.publish import FileIndex, IndexWriter, discard
from lakebench.lake.catalog import Lake
from lakebench.lake.known import KnownIds
from lakebench.lake.layouts import FlatLayout, Layout
from lakebench.lake.parquet import FileStats, ParquetOptions, write_events_parquet
from lakebench.lake.schema import rows_to_arrow

if TYPE_CHECKING:
    from pyiceberg.table import Table

NameFn = Callable[[int], str]  # file number within the write -> file name (without folder)


@dataclass(frozen=True, slots=True)
class WriterOptions:
    target_file_bytes: int = 128 << 20  # about this much event text per batch (one file, or parallel slices)
    min_parallel_bytes: int = 8 << 20  # split a batch into parallel key-range files only above this size
    threads: int = max(1, min(4, os.cpu_count() or 1))
    parquet: ParquetOptions = ParquetOptions()
    index: bool = True  # write the key and full-text indexes with the data (readers never build them)


@dataclass(slots=True)
class WrittenFile:
    key: str
    url: str
    stats: FileStats
    index: FileIndex | None = None


@dataclass(slots=True)
class WriteResult:
    events: int = 0
    raw_bytes: int = 0
    files: list[WrittenFile] = field(default_factory=list)
    snapshot_id: int | None = None
    committed: bool = False  # False when the precondition found the commit already made
    skipped: int = 0  # events not written: the table held their event_id already, or the input repeated it
    seconds: float = 0.0

    @property
    def parquet_bytes(self) -> int:
        return sum(f.stats.bytes for f in self.files)


def ulid_names(_: int) -> str:
    return f"{ULID()}.parquet"


class LakeWriter:
    def __init__(self, lake: Lake, options: WriterOptions = WriterOptions(), layout: Layout | None = None) -> None:
        self.lake = lake
        self.options = options
        self.layout = layout or FlatLayout()
        self.indexes = IndexWriter(lake) if options.index else None

    def close(self) -> None:
        """Drop the working copy of the full-text index (a temporary folder) kept between commits."""
        if self.indexes is not None:
            self.indexes.close()

    def __enter__(self) -> LakeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(
        self,
        events: Iterable[Event | EventRow],
        *,
        summary: dict[str, str] | None = None,
        progress: Callable[[int], None] | None = None,
        names: NameFn = ulid_names,
        properties: dict[str, str] | None = None,
        already_committed: Callable[[Table], bool] | None = None,
        skip_known: bool = True,
    ) -> WriteResult:
        """Write every event and commit them in one Iceberg snapshot; returns what was written.

        With ``skip_known`` (the default) an event whose ``event_id`` the table already holds, or
        that came earlier in ``events``, is skipped and counted (``WriteResult.skipped``): writing
        the same input twice leaves the table as it was.
        """
        started = time.perf_counter()
        known = KnownIds(self.lake) if skip_known else None
        result = self.write_files(events, progress=progress, names=names, known=known)
        if result.files:
            result.snapshot_id, result.committed = self.commit(
                result, summary or {}, properties or {}, already_committed, known
            )
        result.seconds = time.perf_counter() - started
        return result

    def write_files(
        self,
        events: Iterable[Event | EventRow],
        *,
        progress: Callable[[int], None] | None = None,
        names: NameFn = ulid_names,
        known: KnownIds | None = None,
    ) -> WriteResult:
        """Write and publish the files, without committing them (skipping ``known`` ids, when given)."""
        result = WriteResult()
        try:
            return self._write_files(events, result, progress, names, known)
        except BaseException:
            discard(f.index for f in result.files if f.index is not None)
            raise

    def _write_files(
        self,
        events: Iterable[Event | EventRow],
        result: WriteResult,
        progress: Callable[[int], None] | None,
        names: NameFn,
        known: KnownIds | None,
    ) -> WriteResult:
        def submit(batch: list[Event | EventRow], size: int) -> list[Future[WrittenFile]]:
            if known is not None:
                keep = known.new([e.event_id for e in batch])
                kept = [e for e, k in zip(batch, keep, strict=True) if k]
                result.skipped += len(batch) - len(kept)
                if len(kept) < len(batch):
                    if progress:
                        progress(len(batch) - len(kept))
                    size = sum(e.approx_size() for e in kept)  # what is left decides the number of files
                batch = kept
            return self._submit_batch(batch, size, pool, lambda: names(next(counter))) if batch else []

        counter = iter(range(1 << 30))
        with ThreadPoolExecutor(max_workers=self.options.threads) as pool:
            pending: list[Future[WrittenFile]] = []
            batch: list[Event | EventRow] = []
            size = 0
            for event in events:
                batch.append(event)
                size += event.approx_size()
                if size >= self.options.target_file_bytes:
                    pending += submit(batch, size)
                    batch, size = [], 0
                    self._collect(pending, result, progress, keep=self.options.threads)
            if batch:
                pending += submit(batch, size)
            self._collect(pending, result, progress, keep=0)
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

    def _submit_batch(
        self, batch: list[Event | EventRow], size: int, pool: ThreadPoolExecutor, next_name: Callable[[], str]
    ) -> list[Future[WrittenFile]]:
        """Convert a batch to Arrow, split it by layout, and write each part as one file or key-range slices.

        Conversion holds the GIL and runs here; the workers' take + Parquet encoding + compression
        release it, so slices are written on all cores while the next batch is being read.
        """
        table = rows_to_arrow([e.row() if isinstance(e, Event) else e for e in batch])
        futures: list[Future[WrittenFile]] = []
        for folder, order in self.layout.split(table):
            part_size = size * len(order) // max(1, table.num_rows)
            slices = max(1, min(self.options.threads, part_size // self.options.min_parallel_bytes))
            step = -(-len(order) // slices)
            for i in range(0, len(order), step):
                key = "/".join(p for p in (self.lake.data_prefix, folder, next_name()) if p)
                futures.append(pool.submit(self._write_file, key, table, order[i : i + step]))
        return futures

    def _write_file(self, key: str, table: pa.Table, order: pa.Array) -> WrittenFile:
        """Write the rows at ``order`` (key-sorted) as one Parquet file and publish it (not yet committed)."""
        store = self.lake.store
        staging = store.staging_path(".parquet")
        try:
            rows = table.take(order)
            stats = write_events_parquet(rows, staging, self.options.parquet, presorted=True)
            index = None
            if self.indexes is not None:
                metadata = pq.read_metadata(staging)
                index = self.indexes.prepare_file(key, stats.bytes, rows, metadata)
            store.publish_file(key, staging)
        finally:
            staging.unlink(missing_ok=True)
        return WrittenFile(key=key, url=store.url_for(key), stats=stats, index=index)

    def commit(
        self,
        result: WriteResult,
        summary: dict[str, str],
        properties: dict[str, str],
        already_committed: Callable[[Table], bool] | None = None,
        known: KnownIds | None = None,
    ) -> tuple[int, bool]:
        """Add the files (and set ``properties``) in one transaction; (snapshot id, whether we committed).
        With ``known``, refuse when another writer committed some of the same events meanwhile.
        The files' indexes are published by the same commit (its snapshot summary names them)."""
        snapshot_summary = {"lakebench.events": str(result.events), "lakebench.raw-bytes": str(result.raw_bytes)}
        snapshot_summary |= summary
        urls = [f.url for f in result.files]

        def attempt(table: Table) -> tuple[int, bool]:
            if already_committed is not None and already_committed(table):
                current = table.current_snapshot()
                return (int(current.snapshot_id) if current else 0), False
            if known is not None:
                known.check_commit(table)
            summary_now = dict(snapshot_summary)
            if urls and self.indexes is not None and all(f.index is not None for f in result.files):
                summary_now |= self.indexes.properties(table, [f.index for f in result.files if f.index is not None])
            with table.transaction() as tx:
                if properties:
                    tx.set_properties(properties)
                if urls:  # none: the properties alone (a pipeline whose events another writer committed)
                    tx.add_files(urls, snapshot_properties=summary_now, check_duplicate_files=False)
            snapshot = table.current_snapshot()
            return (int(snapshot.snapshot_id) if snapshot is not None else 0), True

        try:
            return self.lake.commit_with_retry(attempt, f"commit of {len(urls)} files")
        finally:
            discard(f.index for f in result.files if f.index is not None)
