"""Lake maintenance: merge small files into key-sorted files, drop duplicate events, expire old
snapshots, remove orphans.

Readers are never blocked and never see a partial state: merged files are written and published
first, then one Iceberg overwrite commit swaps them for the small ones; files are deleted only
once no retained snapshot references them and they are older than a grace period — data files,
and the index objects (segments, key directories, full-text manifests and files) no retained
snapshot reads.

Each merged file's key segment is written with it, and the overwrite commit publishes the new key
directory (the merged segments in, the old ones out); the full-text index is unchanged by a
merge (no entity's newest event changes), so the commit carries its parent's forward.

Duplicates (one event committed twice: by two pipeline processes, or a retry older than a
pipeline's dedupe window) are found across the whole table from the ``event_id`` column of every
live file; each file holding a copy that is not the one kept is rewritten, whatever its size.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from ulid import ULID

from lakebench.core.errors import TransientError
from lakebench.index import fulltext, keys
from lakebench.index.publish import FileIndex, IndexWriter, table_prefixes
from lakebench.storage.parquet_io import read_column
from lakebench.lake.catalog import Lake
from lakebench.lake.parquet import ParquetOptions, write_events_parquet
from lakebench.lake.schema import ARROW_SCHEMA, sort_indices

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from pyiceberg.manifest import DataFile
    from pyiceberg.table import Table


@dataclass(frozen=True, slots=True)
class CompactOptions:
    target_file_bytes: int = 128 << 20  # Parquet bytes per merged file
    small_fraction: float = 0.75  # files under this share of the target are merge candidates
    keep_last: int = 5  # snapshots always kept
    older_than: timedelta | None = None  # expire snapshots older than this (beyond keep_last); None: all beyond
    orphan_grace: timedelta = timedelta(hours=1)  # unreferenced files younger than this are left alone
    parquet: ParquetOptions = ParquetOptions()


@dataclass(slots=True)
class CompactReport:
    files_before: int = 0
    files_after: int = 0
    merged_files: int = 0
    written_files: int = 0
    duplicates_removed: int = 0
    snapshot_id: int | None = None
    expired_snapshots: int = 0
    deleted_files: list[str] = field(default_factory=list)  # data files
    deleted_index_objects: list[str] = field(default_factory=list)  # segments, directories, full-text files
    orphans_kept_because: str | None = None  # why unreferenced files were not removed
    seconds: float = 0.0


def _key_of(lake: Lake, data_file: DataFile) -> str:
    return lake.key_of(str(data_file.file_path))


def _folder(key: str) -> str:
    return key.rsplit("/", 1)[0]


def _bins(files: list[DataFile], target: int, must: set[str]) -> list[list[DataFile]]:
    """Consecutive groups of files, each up to about ``target`` bytes: of at least two files, or one
    that must be rewritten (it holds a duplicate to drop)."""
    bins: list[list[DataFile]] = []
    current: list[DataFile] = []
    size = 0
    for f in sorted(files, key=lambda f: str(f.file_path)):
        if current and size + f.file_size_in_bytes > target:
            bins.append(current)
            current, size = [], 0
        current.append(f)
        size += f.file_size_in_bytes
    bins.append(current)
    return [b for b in bins if len(b) >= 2 or (b and str(b[0].file_path) in must)]


def _duplicates(lake: Lake, files: list[DataFile]) -> dict[str, set[str]]:
    """File path -> event ids to drop from it: every copy of an event but the first (by path)."""
    ordered = sorted(files, key=lambda f: str(f.file_path))
    columns = []
    for number, data_file in enumerate(ordered):
        ids = read_column(lake.store, _key_of(lake, data_file), int(data_file.file_size_in_bytes), "event_id")
        columns.append(pa.table({"event_id": ids, "file": pa.array([number] * len(ids), pa.int32())}))
    if not columns:
        return {}
    table = pa.concat_tables(columns)
    counts = pc.value_counts(table["event_id"])
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    if len(repeated) == 0:
        return {}
    copies = table.filter(pc.is_in(table["event_id"], value_set=repeated))
    drops: dict[str, set[str]] = defaultdict(set)
    kept: set[str] = set()
    for event_id, number in sorted(zip(copies["event_id"].to_pylist(), copies["file"].to_pylist(), strict=True), key=lambda c: c[1]):
        if event_id in kept:
            drops[str(ordered[number].file_path)].add(event_id)
        else:
            kept.add(event_id)
    return dict(drops)


def _read(lake: Lake, data_file: DataFile) -> pa.Table:
    data = lake.store.get(_key_of(lake, data_file))
    table = pq.read_table(pa.BufferReader(data))
    return table.select(ARROW_SCHEMA.names).cast(ARROW_SCHEMA)


def _merge(
    lake: Lake,
    group: list[DataFile],
    drops: dict[str, set[str]],
    options: CompactOptions,
    report: CompactReport,
    indexes: IndexWriter,
) -> tuple[str, FileIndex]:
    """Read a group, drop duplicate event ids, sort by key, write and publish one file (and its key
    segment); its key."""
    parts = []
    for data_file in group:
        part = _read(lake, data_file)
        dropped = drops.get(str(data_file.file_path))
        if dropped:
            keep_mask = pc.invert(pc.is_in(part["event_id"], value_set=pa.array(sorted(dropped), pa.large_string())))
            report.duplicates_removed += part.num_rows - pc.sum(keep_mask.cast(pa.int64())).as_py()
            part = part.filter(keep_mask)
        parts.append(part)
    table = pa.concat_tables(parts)
    if len(pc.unique(table["event_id"])) < table.num_rows:  # the same event committed twice: keep one
        seen: set[str] = set()
        keep = []
        for i, event_id in enumerate(table["event_id"].to_pylist()):
            if event_id not in seen:
                seen.add(event_id)
                keep.append(i)
        report.duplicates_removed += table.num_rows - len(keep)
        table = table.take(pa.array(keep))
    key = f"{_folder(_key_of(lake, group[0]))}/{ULID()}.parquet"
    staging = lake.store.staging_path(".parquet")
    try:
        rows = table.take(sort_indices(table))
        stats = write_events_parquet(rows, staging, options.parquet, presorted=True)
        metadata = pq.read_metadata(staging)
        index = indexes.prepare_file(key, stats.bytes, rows, metadata, documents=False)
        lake.store.publish_file(key, staging)
    finally:
        staging.unlink(missing_ok=True)
    return key, index


def _commit(lake: Lake, old: list[DataFile], new_keys: list[str], indexes: IndexWriter, added: list[FileIndex]) -> int:
    from pyiceberg.io.pyarrow import parquet_file_to_data_file

    old_paths = {str(f.file_path) for f in old}

    def attempt(table: Table) -> int:
        live = {str(t.file.file_path): t.file for t in table.scan().plan_files()}
        if not old_paths <= live.keys():
            raise TransientError("another compaction replaced some of these files first; run compact again")
        new_files = [parquet_file_to_data_file(table.io, table.metadata, lake.store.url_for(k)) for k in new_keys]
        props = {"lakebench.operation": "compact"}
        props |= indexes.properties(table, added, removed=[lake.key_of(p) for p in old_paths])
        with table.transaction() as tx:
            with tx.update_snapshot(snapshot_properties=props).overwrite() as overwrite:
                for path in old_paths:
                    overwrite.delete_data_file(live[path])
                for data_file in new_files:
                    overwrite.append_data_file(data_file)
        snapshot = table.current_snapshot()
        assert snapshot is not None
        return int(snapshot.snapshot_id)

    return lake.commit_with_retry(attempt, f"compaction of {len(old)} files")


def expire_snapshots(table: Table, options: CompactOptions) -> int:
    snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms, reverse=True)
    current = table.current_snapshot()
    candidates = [s for s in snapshots[options.keep_last :] if current is None or s.snapshot_id != current.snapshot_id]
    if options.older_than is not None:
        cutoff = (datetime.now(UTC) - options.older_than).timestamp() * 1000
        candidates = [s for s in candidates if s.timestamp_ms < cutoff]
    if not candidates:
        return 0
    table.maintenance.expire_snapshots().by_ids([s.snapshot_id for s in candidates]).commit()
    return len(candidates)


def referenced_files(table: Table) -> set[str]:
    """Every data file any retained snapshot reads."""
    paths: set[str] = set()
    for snapshot in table.snapshots():
        for manifest in snapshot.manifests(table.io):
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                paths.add(str(entry.data_file.file_path))
    return paths


def remove_orphans(lake: Lake, table: Table, grace: timedelta, report: CompactReport | None = None) -> list[str]:
    foreign = lake.foreign_tables(table)
    if foreign:
        reason = (
            f"{table.location()} also holds another catalog's table ({foreign[0]}): files unreferenced here may be "
            "referenced there, so none were deleted"
        )
        log.warning("%s", reason)
        if report is not None:
            report.orphans_kept_because = reason
        return []
    keep = referenced_files(table)
    cutoff = time.time() - grace.total_seconds()
    removed = []
    for info in lake.store.list(lake.data_prefix + "/"):
        if info.key.endswith(".parquet") and lake.store.url_for(info.key) not in keep and info.modified < cutoff:
            lake.store.delete(info.key)
            removed.append(info.key)
    index_keep = referenced_index_objects(lake, table, {lake.key_of(url) for url in keep})
    _, index_prefix = table_prefixes(lake, table.location())
    for info in lake.store.list(index_prefix + "/"):
        if info.key not in index_keep and info.modified < cutoff:
            lake.store.delete(info.key)
            if report is not None:
                report.deleted_index_objects.append(info.key)
    return removed


def referenced_index_objects(lake: Lake, table: Table, data_keys: set[str]) -> set[str]:
    """Every index object a retained snapshot reads: its key directory, its full-text manifest and
    that manifest's files, and the key segment of every data file a retained snapshot reads."""
    import orjson

    data_prefix, index_prefix = table_prefixes(lake, table.location())
    keep = {keys.segment_key(index_prefix, k, data_prefix) for k in data_keys}
    for snapshot in table.snapshots():
        summary = snapshot.summary.additional_properties if snapshot.summary is not None else {}
        if keys.SUMMARY_KEY in summary:
            keep.add(summary[keys.SUMMARY_KEY])
        manifest = summary.get(fulltext.SUMMARY_KEY)
        if manifest is not None and manifest not in keep:
            keep.add(manifest)
            files = orjson.loads(lake.store.get(manifest))["files"]  # tantivy's name -> the stored file's digest
            keep.update(f"{index_prefix}/fts/files/{digest}" for digest in files.values())
    return keep


def compact(lake: Lake, options: CompactOptions = CompactOptions()) -> CompactReport:
    started = time.perf_counter()
    report = CompactReport()
    table = lake.table()
    files = [t.file for t in table.scan().plan_files()]
    report.files_before = len(files)
    drops = _duplicates(lake, files)
    by_folder: dict[str, list[DataFile]] = defaultdict(list)
    for f in files:
        if f.file_size_in_bytes < options.small_fraction * options.target_file_bytes or str(f.file_path) in drops:
            by_folder[_folder(_key_of(lake, f))].append(f)
    old: list[DataFile] = []
    new_keys: list[str] = []
    added: list[FileIndex] = []
    indexes = IndexWriter(lake)
    try:
        for group_files in by_folder.values():
            for group in _bins(group_files, options.target_file_bytes, set(drops)):
                key, index = _merge(lake, group, drops, options, report, indexes)
                new_keys.append(key)
                added.append(index)
                old.extend(group)
        if old:
            report.snapshot_id = _commit(lake, old, new_keys, indexes, added)
    finally:
        indexes.close()
        report.merged_files, report.written_files = len(old), len(new_keys)
    table = lake.table()
    report.expired_snapshots = expire_snapshots(table, options)
    table = lake.table()
    report.deleted_files = remove_orphans(lake, table, options.orphan_grace, report)
    report.files_after = len(list(table.scan().plan_files()))
    report.seconds = time.perf_counter() - started
    return report
