"""Write events into the lake: sorted Parquet files under ``events/data/``, then one Iceberg commit.

A reader never sees a partial file: each file is built on local disk, published whole (rename or
a completed S3 upload), and only then referenced by a commit. A crash before the commit leaves
unreferenced files, which no reader sees.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ulid import ULID

from lakebench.core.errors import TransientError
from lakebench.core.models import Event
from lakebench.lake.catalog import DATA_PREFIX, Lake
from lakebench.lake.parquet import FileStats, ParquetOptions, write_events_parquet
from lakebench.lake.schema import events_to_arrow

COMMIT_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class WriterOptions:
    target_file_bytes: int = 128 << 20  # uncompressed event bytes per Parquet file
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
        batch: list[Event] = []
        batch_bytes = 0
        for event in events:
            batch.append(event)
            batch_bytes += event.size_bytes()
            if batch_bytes >= self.options.target_file_bytes:
                result.files.append(self._write_file(batch))
                result.events += len(batch)
                result.raw_bytes += batch_bytes
                if progress:
                    progress(len(batch))
                batch, batch_bytes = [], 0
        if batch:
            result.files.append(self._write_file(batch))
            result.events += len(batch)
            result.raw_bytes += batch_bytes
            if progress:
                progress(len(batch))
        if result.files:
            result.snapshot_id = self._commit(result, summary or {})
        result.seconds = time.perf_counter() - started
        return result

    def _write_file(self, batch: list[Event]) -> WrittenFile:
        store = self.lake.store
        key = f"{DATA_PREFIX}/{ULID()}.parquet"
        staging = store.staging_path(".parquet")
        try:
            stats = write_events_parquet(events_to_arrow(batch), staging, self.options.parquet)
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
