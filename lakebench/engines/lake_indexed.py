"""``lake-indexed``: lakebench's own read path over the same lake, through the indexes its writer wrote.

A reader only reads. Opening loads the table's metadata and the current snapshot's key directory
(named in the snapshot's summary; ``index/keys.py``): nothing else, however large the table.

- Direct lookup: the directory's Bloom filters name the few segments that may hold the key; one
  ranged GET of a block of each (cached) gives the key's events, newest last; with the data file's
  footer (one ranged GET, cached), one ranged GET of a row group answers it. The row read is
  checked against the key (the hash can collide). A key that is absent usually costs no request.
- History: the same blocks, then one GET per row group holding the entity's events.
- Full-text search: the tantivy version the snapshot names (``index/fulltext.py``), mirrored into
  a local cache folder on the first search.
- Listings, recent events, counts and ad-hoc SQL go to DuckDB over the same files (``lake-sql``),
  opened on first use.

A snapshot without indexes (written before writers wrote them, or by another tool) is answered
from the Parquet files through ``lake-sql``, with a warning naming ``lakebench index build``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from lakebench.core.models import FIELDS, Event
from lakebench.core.text import query_terms
from lakebench.engines.base import CountField, EntityRef, Page, QueryStats, SearchHit, SqlLimits, SqlResult, check_limit
from lakebench.index import fulltext, keys
from lakebench.index.publish import checked_summary, table_prefixes
from lakebench.lake.catalog import Lake
from lakebench.lake.metadata import current_snapshot
from lakebench.lake.rows import row_to_event
from lakebench.storage.parquet_io import CachedFooter, fetch_footer

if TYPE_CHECKING:
    from lakebench.engines.lake_sql import LakeSqlEngine

log = logging.getLogger(__name__)
BLOCK_CACHE_BYTES = 256 << 20
MISSING = (
    "the lake's {what} is missing for snapshot {snapshot} (written before lakebench's writers wrote indexes, or by "
    "another tool): run `lakebench index build` once; until then {queries} are answered from the Parquet files"
)


@dataclass(frozen=True, slots=True)
class _View:
    """One snapshot as the reader sees it."""

    snapshot_id: int | None
    probe: keys.Probe | None  # None: no usable key directory
    fts_manifest: str | None
    data_prefix: str
    index_prefix: str


def _split_blocks(records: np.ndarray, first: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Records fetched from block ``first`` on, as cache entries: block number -> (its hashes, its
    records), copies (a cached block must not keep the whole fetch alive)."""
    out = {}
    for i in range(0, len(records), keys.BLOCK_RECORDS):
        part = records[i : i + keys.BLOCK_RECORDS]
        out[first + i // keys.BLOCK_RECORDS] = (np.ascontiguousarray(part["hash"]), part.copy())
    return out


class LakeIndexedEngine:
    name = "lake-indexed"

    def __init__(self, lake: Lake, cache_dir: Path | None = None, sql_limits: SqlLimits = SqlLimits()) -> None:
        self._lake = lake
        self._store = lake.store
        self._sql_limits = sql_limits
        self._sql_engine: LakeSqlEngine | None = None
        self._lock = threading.RLock()
        self._blocks: OrderedDict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._block_bytes = 0
        self._footers: dict[str, CachedFooter] = {}
        self._fts = fulltext.FullTextReader(self._store, "", cache_dir or fulltext.default_cache_dir(lake.url))
        self._view = _View(-1, None, None, "", "")
        self._stats = QueryStats()
        self.notices: list[str] = []
        self.refresh()

    @property
    def last_stats(self) -> QueryStats:
        return self._stats

    # -- keeping up with the table ----------------------------------------------------------------

    def refresh(self) -> None:
        current = current_snapshot(self._lake)
        snapshot_id = current.snapshot_id
        with self._lock:
            if snapshot_id == self._view.snapshot_id:
                return
            summary = checked_summary(current.summary, current.parent_id)
            data_prefix, index_prefix = table_prefixes(self._lake, current.location)
            files = int(summary.get("total-data-files", "0"))
            probe: keys.Probe | None = keys.Probe(keys.Directory([]))
            dir_key = summary.get(keys.SUMMARY_KEY)
            if files and dir_key is None:
                probe = None
            elif dir_key is not None:
                try:
                    directory = keys.Directory.from_bytes(self._store.get(dir_key))
                    probe = keys.Probe(directory) if len(directory.segments) == files else None
                except keys.FormatError:
                    probe = None
            fts_manifest = summary.get(fulltext.SUMMARY_KEY)
            notices = []
            if probe is None:
                notices.append(MISSING.format(what="key index", snapshot=snapshot_id, queries="lookups and histories"))
            if files and fts_manifest is None:
                notices.append(MISSING.format(what="full-text index", snapshot=snapshot_id, queries="searches"))
            for notice in notices:
                if notice not in self.notices:
                    log.warning("%s", notice)
            self.notices = notices
            live = set(probe.keys) if probe is not None else set()
            for key in [k for k, _ in list(self._footers.items()) if k not in live]:  # copied: warm() adds
                self._footers.pop(key, None)
            self._fts.prefix = index_prefix
            self._view = _View(snapshot_id, probe, fts_manifest, data_prefix, index_prefix)
            if self._sql_engine is not None:
                self._sql_engine.refresh()

    @property
    def _sql(self) -> LakeSqlEngine:
        with self._lock:
            if self._sql_engine is None:
                from lakebench.engines.lake_sql import LakeSqlEngine

                self._sql_engine = LakeSqlEngine(self._lake, self._sql_limits)
            return self._sql_engine

    # -- point reads ----------------------------------------------------------------------------

    def _records(self, view: _View, number: int, h: int) -> list[tuple[Any, ...]]:
        """The records of hash ``h`` in segment ``number`` (tuples in ``keys.RECORD``'s field
        order): the blocks it needs fetched once (one ranged GET for those missing), then cached."""
        assert view.probe is not None
        info = view.probe.directory.segments[number]
        first, last = keys.block_span(info.fences, h)
        blocks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        with self._lock:
            for b in range(first, last + 1):
                cached = self._blocks.get((info.data_key, b))
                if cached is not None:
                    self._blocks.move_to_end((info.data_key, b))  # least recently used goes first
                    blocks[b] = cached
        missing = [b for b in range(first, last + 1) if b not in blocks]
        if missing:
            lo, hi = missing[0], missing[-1]
            start = lo * keys.BLOCK_RECORDS
            count = min(info.records, (hi + 1) * keys.BLOCK_RECORDS) - start
            seg_key = keys.segment_key(view.index_prefix, info.data_key, view.data_prefix)
            raw = self._store.get_range(seg_key, start * keys.RECORD.itemsize, count * keys.RECORD.itemsize)
            fetched = _split_blocks(np.frombuffer(raw, keys.RECORD), lo)
            fresh = {b: fetched[b] for b in missing}
            blocks.update(fresh)
            self._cache_blocks(info.data_key, fresh)
        found: list[tuple[Any, ...]] = []
        hv = np.uint64(h)
        for b in range(first, last + 1):
            hashes, block = blocks[b]
            lo_i, hi_i = int(np.searchsorted(hashes, hv, "left")), int(np.searchsorted(hashes, hv, "right"))
            if hi_i > lo_i:
                found.extend(block[lo_i:hi_i].tolist())
        return found

    def _cache_blocks(self, data_key: str, blocks: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
        with self._lock:
            for b, entry in blocks.items():
                old = self._blocks.pop((data_key, b), None)
                if old is not None:
                    self._block_bytes -= old[0].nbytes + old[1].nbytes
                self._blocks[(data_key, b)] = entry
                self._block_bytes += entry[0].nbytes + entry[1].nbytes
            while self._block_bytes > BLOCK_CACHE_BYTES and len(self._blocks) > 1:
                _, (hashes, block) = self._blocks.popitem(last=False)
                self._block_bytes -= hashes.nbytes + block.nbytes

    def _entries(
        self, view: _View, ns: str, entity_id: str, *, newest_only: bool = False
    ) -> list[tuple[tuple[int, int, bytes], int, int, int]]:
        """The key's index entries across segments, oldest first: ((ts, version, event_id), segment,
        row group, row). With ``newest_only``, segments whose newest event is older than an entry
        already found are not read (candidates come newest first): the key's newest entry is among
        those returned, unless a hash collision hides it (the caller then asks for all)."""
        assert view.probe is not None
        h = keys.key_hash(ns, entity_id)
        found = []
        newest = None
        for number in view.probe.candidates(h).tolist():
            if newest_only and newest is not None and view.probe.max_ts[number] < newest:
                break
            for _, ts, version, event_id, _, group, row in self._records(view, number, h):
                found.append(((ts, version, event_id), number, group, row))
                newest = ts if newest is None else max(newest, ts)
        found.sort(key=lambda e: e[0])
        return found

    def warm(self) -> dict[str, float]:
        """Fetch every live segment (one GET each) and data-file footer into the caches, as far as
        the block cache's budget allows: what a long-lived reader (the db service) does in the
        background once it has answered, so that later lookups wait for no index block. Reads only."""
        began = time.perf_counter()
        view = self._view
        segments = 0
        if view.probe is not None:
            for info in view.probe.directory.segments:
                if self._view is not view:  # a newer snapshot: its files are fetched as lookups need them
                    break
                size = info.records * (keys.RECORD.itemsize + 8)
                if self._block_bytes + size > BLOCK_CACHE_BYTES:
                    break
                blocks = -(-info.records // keys.BLOCK_RECORDS)
                if not all((info.data_key, b) in self._blocks for b in range(blocks)):
                    seg_key = keys.segment_key(view.index_prefix, info.data_key, view.data_prefix)
                    records = np.frombuffer(self._store.get(seg_key), keys.RECORD)
                    self._cache_blocks(info.data_key, _split_blocks(records, 0))
                    segments += 1
                if info.data_key not in self._footers:
                    self._footers[info.data_key] = fetch_footer(
                        self._store, info.data_key, info.data_size, info.footer_len
                    )
        return {"segments": segments, "seconds": time.perf_counter() - began}

    def _footer(self, view: _View, number: int) -> CachedFooter:
        assert view.probe is not None
        info = view.probe.directory.segments[number]
        footer = self._footers.get(info.data_key)
        if footer is None:
            footer = fetch_footer(self._store, info.data_key, info.data_size, info.footer_len)
            self._footers[info.data_key] = footer
        return footer

    def _fetch_group(self, view: _View, number: int, group: int) -> pa.Table:
        footer = self._footer(view, number)
        start, length = footer.row_group_range(group)
        data = self._store.get_range(footer.key, start, length)
        return footer.read_row_group(group, data, start)

    def _measure(self, rows: int, before: dict[str, int]) -> None:
        after = self._store.stats.snapshot()
        requests = {k: after.get(k, 0) - before.get(k, 0) for k in ("GET", "HEAD", "LIST")}
        read = after["bytes_read"] - before.get("bytes_read", 0)
        self._stats = QueryStats(rows=rows, bytes_read=read, requests={k: v for k, v in requests.items() if v})

    def lookup(self, ns: str, entity_id: str) -> Event | None:
        view = self._view
        if view.probe is None:
            return self._sql.lookup(ns, entity_id)
        before = self._store.stats.snapshot()
        entries = self._entries(view, ns, entity_id, newest_only=True)
        for attempt in (1, 2):
            for _, number, group_no, row_no in reversed(entries):  # newest first
                group = self._fetch_group(view, number, group_no)
                row = group.slice(row_no, 1).to_pylist()[0]
                if (row["entity_ns"], row["entity_id"]) == (ns, entity_id):
                    self._measure(1, before)
                    return row_to_event(row)
                if attempt == 1:  # another key with the same hash: the segments skipped may hold ours
                    entries = self._entries(view, ns, entity_id)
                    break
            else:
                break
        self._measure(0, before)
        return None

    def history(self, ns: str, entity_id: str) -> list[Event]:
        view = self._view
        if view.probe is None:
            return self._sql.history(ns, entity_id)
        before = self._store.stats.snapshot()
        wanted: dict[tuple[int, int], list[int]] = defaultdict(list)
        for _, number, group_no, row_no in self._entries(view, ns, entity_id):
            wanted[(number, group_no)].append(row_no)
        events: list[Event] = []
        for (number, group_no), rows in sorted(wanted.items()):
            group = self._fetch_group(view, number, group_no)
            picked = group.take(pa.array(np.array(rows, dtype=np.int64))).select(list(FIELDS)).to_pylist()
            events.extend(row_to_event(r) for r in picked if (r["entity_ns"], r["entity_id"]) == (ns, entity_id))
        events.sort(key=lambda e: (e.ts, e.version, e.event_id))
        self._measure(len(events), before)
        return events

    # -- search ---------------------------------------------------------------------------------

    def search(self, query: str, limit: int = 10, ns: str | None = None) -> list[SearchHit]:
        check_limit(limit)
        view = self._view
        if view.snapshot_id is not None and view.fts_manifest is None:
            return self._sql.search(query, limit, ns)
        with self._lock:
            if view.fts_manifest is not None:
                self._fts.open(view.fts_manifest)
            hits = self._fts.search(query_terms(query), limit, ns) if view.fts_manifest is not None else []
        self._stats = QueryStats(rows=len(hits))
        return [SearchHit(h.ns, h.entity_id, h.event_id, h.title, h.score) for h in hits]

    # -- the rest goes to DuckDB over the same files ----------------------------------------------

    def list_namespace(self, ns: str, cursor: str | None = None, limit: int = 100) -> Page:
        return self._sql.list_namespace(ns, cursor, limit)

    def recent(self, limit: int = 20, ns: str | None = None) -> list[EntityRef]:
        return self._sql.recent(limit, ns)

    def count_by(
        self, field: CountField, since: datetime | None = None, until: datetime | None = None
    ) -> list[tuple[str, int]]:
        return self._sql.count_by(field, since, until)

    def sql(self, query: str, params: list[Any] | None = None) -> SqlResult:
        return self._sql.sql(query, params)

    def close(self) -> None:
        if self._sql_engine is not None:
            self._sql_engine.close()
        self._fts.close()
