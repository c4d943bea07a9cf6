"""The indexes of a commit, written by the writer and published by the same Iceberg commit.

``IndexWriter.prepare_file`` runs beside each data file the writer writes: it publishes the
file's key segment and keeps, on local disk, the file's newest document per entity for the
full-text index. ``IndexWriter.properties`` runs inside every commit attempt, on the fresh table
metadata of that attempt: it writes the key directory and the full-text manifest of the snapshot
about to be committed, built on the parent snapshot's, and returns the snapshot-summary entries
that name them. If the commit loses a race, the next attempt builds them again on the winner's.

A parent snapshot without indexes (a lake written before this change, or by another tool) is not
extended: the new snapshot carries no index either, readers answer from the Parquet files and say
so, and ``lakebench index build`` (``build_indexes``) makes them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from ulid import ULID

from lakebench.core.errors import ObjectNotFound
from lakebench.index import fulltext, keys
from lakebench.index.keys import Directory, SegmentInfo
from lakebench.storage import ObjectStore

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from lakebench.lake.catalog import Lake

log = logging.getLogger(__name__)
_KEY_COLUMNS = ["entity_ns", "entity_id", "ts", "version", "event_id", "type"]
DOC_COLUMNS = ["entity_ns", "entity_id", "event_id", "ts", "version", "type", "title", "body"]


def table_prefixes(lake: Lake, location: str) -> tuple[str, str]:
    """(data prefix, index prefix) of the table at ``location``: the index folder beside the data."""
    data_prefix = lake.data_prefix_at(location)
    return data_prefix, index_prefix_for(data_prefix)


def index_prefix_for(data_prefix: str) -> str:
    return f"{data_prefix.rsplit('/', 1)[0]}/index" if "/" in data_prefix else "index"


PARENT_KEY = "lakebench.index.parent"


def summary_of(table: Table) -> dict[str, str]:
    """The current snapshot's summary; the index entries only if they were made for this snapshot's
    parent (a commit re-applied on another parent by some other tool keeps none)."""
    from lakebench.lake.metadata import view_of

    view = view_of(table)
    return checked_summary(view.summary, view.parent_id) if view.snapshot_id is not None else {}


def checked_summary(summary: dict[str, str], parent_id: int | None) -> dict[str, str]:
    """The summary without its index entries if they were made for another parent. (pyiceberg drops
    the parent id of a snapshot whose parent it expired; Iceberg's spec keeps it: either way holds.)"""
    if parent_id is not None and summary.get(PARENT_KEY) != str(parent_id):
        summary = {k: v for k, v in summary.items() if k not in (keys.SUMMARY_KEY, fulltext.SUMMARY_KEY)}
    return summary


def parent_entry(table: Table) -> dict[str, str]:
    """The summary entry a new snapshot's indexes carry: the snapshot they were built on."""
    snapshot = table.current_snapshot()
    return {PARENT_KEY: str(snapshot.snapshot_id) if snapshot is not None else ""}


@dataclass(slots=True)
class FileIndex:
    """What one written data file contributes to the indexes of its commit."""

    segment: SegmentInfo
    docs_path: Path | None  # its newest document per entity (Arrow IPC, local), None when not indexing text


@dataclass(slots=True)
class IndexWriter:
    lake: Lake
    _dirs: dict[str, Directory] = field(default_factory=dict)  # directories read or written (immutable)
    _fts: fulltext.FullTextWriter | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _warned: bool = False

    @property
    def store(self) -> ObjectStore:
        return self.lake.store

    # -- beside each data file ------------------------------------------------------------------

    def prepare_file(
        self, key: str, data_size: int, table: pa.Table, metadata: pq.FileMetaData, *, documents: bool = True
    ) -> FileIndex:
        """Publish the segment of the data file ``key`` (rows of ``table``, in file order) and spill
        its documents (unless ``documents`` is False: a merge changes no entity's newest event);
        called by the writer's threads before the commit."""
        data_prefix = self.lake.data_prefix
        index_prefix = index_prefix_for(data_prefix)
        group_rows = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        records = keys.build_records(table, group_rows)
        info = keys.summarize(key, data_size, records, metadata.serialized_size + 8)
        self.store.put_bytes(keys.segment_key(index_prefix, key, data_prefix), records.tobytes())
        if not documents:
            return FileIndex(info, None)
        docs = fulltext.latest_docs(table.select(DOC_COLUMNS))
        return FileIndex(info, _spill(self.store, docs))

    # -- in each commit attempt -----------------------------------------------------------------

    def properties(self, table: Table, added: list[FileIndex], removed: Iterable[str] = ()) -> dict[str, str]:
        """The summary entries naming the indexes of the snapshot this commit attempt makes."""
        with self._lock:
            parent = summary_of(table)
            empty = int(parent.get("total-data-files", "0")) == 0
            out = parent_entry(table)
            directory = Directory([]) if empty else self._directory(parent)
            _, index_prefix = table_prefixes(self.lake, table.location())
            if directory is not None:
                new = directory.without(removed).plus(f.segment for f in added)
                key = f"{keys.directory_folder(index_prefix)}{ULID()}.npz"
                self.store.put_bytes(key, new.to_bytes())
                self._dirs = {key: new}
                out[keys.SUMMARY_KEY] = key
            base = None if empty else parent.get(fulltext.SUMMARY_KEY)
            if (directory is None or (base is None and not empty)) and not self._warned:
                self._warned = True
                log.warning(
                    "the table's current snapshot has no %s index (written before lakebench's writers wrote them, "
                    "or by another tool): this commit adds none either; run `lakebench index build` once",
                    "key" if directory is None else "full-text",
                )
            if base is not None or empty:
                spills = [f.docs_path for f in added if f.docs_path is not None]
                if not spills:
                    if base is not None:
                        out[fulltext.SUMMARY_KEY] = base  # nothing new to say: the parent's version stands
                else:
                    fts = self._fulltext(index_prefix)
                    fts.begin(base)
                    apply_spills(fts, spills)
                    out[fulltext.SUMMARY_KEY] = fts.publish()
            return out

    def _directory(self, parent: dict[str, str]) -> Directory | None:
        """The parent snapshot's directory, if it has one that covers all of its files."""
        key = parent.get(keys.SUMMARY_KEY)
        if key is None:
            return None
        directory = self._dirs.get(key)
        if directory is None:
            try:
                directory = Directory.from_bytes(self.store.get(key))
            except keys.FormatError:
                return None
        if len(directory.segments) != int(parent.get("total-data-files", "-1")):
            log.warning("the key directory %s does not cover its snapshot's files; not extended", key)
            return None
        return directory

    def _fulltext(self, index_prefix: str) -> fulltext.FullTextWriter:
        if self._fts is None or self._fts.prefix != index_prefix:
            self._fts = fulltext.FullTextWriter(self.store, index_prefix)
        return self._fts

    def close(self) -> None:
        if self._fts is not None:
            self._fts.close()
            self._fts = None


def _spill(store: ObjectStore, docs: pa.Table) -> Path:
    """A file's documents on local disk (Arrow IPC) until its commit applies them."""
    spill = store.staging_path(".docs.arrow")
    with pa.OSFile(str(spill), "wb") as sink, pa.ipc.new_file(sink, docs.schema) as out:
        out.write_table(docs)
    return spill


def apply_spills(fts: fulltext.FullTextWriter, spills: Iterable[Path]) -> int:
    """Apply files' documents in order, several files at a time (one index commit per chunk)."""
    applied, chunk, rows = 0, [], 0
    for spill in spills:
        docs = pa.ipc.open_file(pa.memory_map(str(spill))).read_all()
        chunk.append(docs)
        rows += docs.num_rows
        if rows >= fulltext.APPLY_ROWS:
            applied += fts.apply(fulltext.merge_docs(chunk))
            chunk, rows = [], 0
    if chunk:
        applied += fts.apply(fulltext.merge_docs(chunk))
    return applied


def discard(files: Iterable[FileIndex]) -> None:
    for f in files:
        if f.docs_path is not None:
            f.docs_path.unlink(missing_ok=True)


# -- for a lake written without them ----------------------------------------------------------------


@dataclass(slots=True)
class BuildReport:
    files: int = 0
    segments_built: int = 0
    documents: int = 0
    snapshot_id: int | None = None
    seconds: float = 0.0


def build_indexes(lake: Lake, progress: Callable[[int, int], None] | None = None) -> BuildReport:
    """Build every index the current snapshot lacks and publish them in one (data-less) commit.

    The bulk (every file's segment, the full-text index from scratch) is built before the commit;
    a writer committing meanwhile makes the commit retry, and the retry indexes only the files
    added since (the full-text version grows from the one already built)."""
    started = time.perf_counter()
    report = BuildReport()
    writer = IndexWriter(lake)
    done: dict[str, FileIndex] = {}
    applied: set[str] = set()
    try:
        table = lake.table(create=False)
        data_prefix, index_prefix = table_prefixes(lake, table.location())
        fts = writer._fulltext(index_prefix)
        fts.begin(None)

        def catch_up(table: Table) -> list[str]:
            """Index the live files not indexed yet; the live files."""
            live = {
                lake.key_of(str(t.file.file_path)): int(t.file.file_size_in_bytes) for t in table.scan().plan_files()
            }
            fresh = sorted(live.keys() - done.keys())
            for n, key in enumerate(fresh, 1):
                done[key] = _index_file(lake.store, key, live[key], data_prefix, index_prefix, report)
                if progress:
                    progress(n, len(fresh))
            todo = [k for k in sorted(live) if k not in applied]
            spills = [path for k in todo if (path := done[k].docs_path) is not None]
            if spills or fts.version is None:
                report.documents += apply_spills(fts, spills)
                fts.publish()
            applied.update(todo)
            report.files = len(live)
            return sorted(live)

        catch_up(table)

        def attempt(table: Table) -> int:
            live = catch_up(table)  # what was committed since the bulk: usually nothing
            directory = Directory([done[k].segment for k in live])
            dir_key = f"{keys.directory_folder(index_prefix)}{ULID()}.npz"
            lake.store.put_bytes(dir_key, directory.to_bytes())
            assert fts.version is not None
            props = {keys.SUMMARY_KEY: dir_key, fulltext.SUMMARY_KEY: fts.version, "lakebench.operation": "index"}
            props |= parent_entry(table)
            with table.transaction() as tx, tx.update_snapshot(snapshot_properties=props).fast_append():
                pass
            snapshot = table.current_snapshot()
            assert snapshot is not None
            return int(snapshot.snapshot_id)

        report.snapshot_id = lake.commit_with_retry(attempt, "the index build's commit")
    finally:
        discard(done.values())
        writer.close()
    report.seconds = time.perf_counter() - started
    return report


def _index_file(
    store: ObjectStore, key: str, size: int, data_prefix: str, index_prefix: str, report: BuildReport
) -> FileIndex:
    """A data file's segment (read back if stored, built and stored if not) and its documents. The
    file may come from another writer: its columns are read in the lake's schema."""
    from lakebench.lake.schema import ARROW_SCHEMA

    data = store.get(key)
    parquet = pq.ParquetFile(pa.BufferReader(data))
    groups = [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)]
    table = parquet.read().select(ARROW_SCHEMA.names).cast(ARROW_SCHEMA)
    seg_key = keys.segment_key(index_prefix, key, data_prefix)
    try:
        records = np.frombuffer(store.get(seg_key), keys.RECORD)
    except ObjectNotFound:
        records = keys.build_records(table, groups)
        store.put_bytes(seg_key, records.tobytes())
        report.segments_built += 1
    docs = fulltext.latest_docs(table.select(DOC_COLUMNS))
    return FileIndex(keys.summarize(key, size, records, parquet.metadata.serialized_size + 8), _spill(store, docs))
