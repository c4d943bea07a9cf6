"""``lake-indexed``: lakebench's own read path over the same lake.

- Direct lookup: the key index (``index/keys.py``) names the file, row group and row of an
  entity's latest event; with the file's footer cached, one ranged GET of that row group answers
  it. A key that is not in the lake costs no request.
- History: one GET per row group holding the entity's events.
- Full-text search: a tantivy index over the latest live version of every entity, stored beside
  the lake (``index/fulltext.py``) and brought up to date on ``refresh()``.
- Listings, recent events, counts and ad-hoc SQL go to DuckDB over the same files (``lake-sql``).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lakebench.core.models import FIELDS, Event
from lakebench.core.text import document_text, query_terms
from lakebench.engines.base import CountField, EntityRef, Page, QueryStats, SearchHit, SqlLimits, SqlResult, check_limit
from lakebench.engines.lake_sql import LakeSqlEngine
from lakebench.index.fulltext import Doc, FullTextIndex, default_cache_dir, docs_from_file
from lakebench.index.keys import KeyIndex, Segment, load_or_build
from lakebench.lake.catalog import Lake
from lakebench.lake.schema import row_to_event
from lakebench.storage.parquet_io import CachedFooter, fetch_footer


class LakeIndexedEngine:
    name = "lake-indexed"

    def __init__(self, lake: Lake, cache_dir: Path | None = None, sql_limits: SqlLimits = SqlLimits()) -> None:
        self._lake = lake
        self._store = lake.store
        self._sql = LakeSqlEngine(lake, sql_limits)
        self._lock = threading.RLock()
        self._segments: dict[str, Segment] = {}
        self._footers: dict[str, CachedFooter] = {}
        self._index = KeyIndex.merge({})
        self._fts = FullTextIndex(self._store, cache_dir or default_cache_dir(lake.url))
        self._snapshot_id: int | None = -1
        self._stats = QueryStats()
        self.refresh()

    @property
    def last_stats(self) -> QueryStats:
        return self._stats

    # -- keeping up with the table ----------------------------------------------------------------

    def refresh(self) -> None:
        snapshot_id, files = self._lake.snapshot_files()
        with self._lock:
            if snapshot_id == self._snapshot_id:
                return
            live = {self._lake.key_of(url): size for url, size in files.items()}
            fresh_data: dict[str, bytes] = {}
            for key in sorted(live.keys() - self._segments.keys()):
                segment, data = load_or_build(self._store, key)
                self._segments[key] = segment
                if data is not None:
                    fresh_data[key] = data
                self._footers[key] = fetch_footer(self._store, key, live[key])
            for key in self._segments.keys() - live.keys():
                del self._segments[key]
                self._footers.pop(key, None)
            self._index = KeyIndex.merge(self._segments)
            self._update_fulltext(live, fresh_data)
            self._sql.refresh()
            self._snapshot_id = snapshot_id

    def _update_fulltext(self, live: dict[str, int], fresh_data: dict[str, bytes]) -> None:
        self._fts.sync()
        gone = self._fts.indexed - live.keys()
        if gone:
            self._fts.forget(gone)
        todo = sorted(live.keys() - self._fts.indexed)
        if not todo:
            return
        file_number = {name: i for i, name in enumerate(self._index.files)}
        removed: list[str] = []
        docs: list[Doc] = []
        for key in todo:
            data = fresh_data.get(key)
            table = docs_from_file(data if data is not None else self._store.get(key))
            segment = self._segments[key]
            me = file_number[key]
            rows = table.to_pylist()
            for i, row in enumerate(rows):
                _, hi = self._index.run(row["entity_ns"], row["entity_id"])
                latest = hi - 1
                # Only the entity's latest event (across all files) decides what the index holds.
                if not (
                    self._index.file[latest] == me
                    and self._index.row_group[latest] == segment.row_group[i]
                    and self._index.row[latest] == segment.row[i]
                ):
                    continue
                doc_key = f"{row['entity_ns']}\x1f{row['entity_id']}"
                if row["type"] == "delete":
                    removed.append(doc_key)
                else:
                    text = document_text(row["title"], row["body"])
                    docs.append(Doc(row["entity_ns"], row["entity_id"], row["event_id"], row["title"], text))
        self._fts.update(removed, docs, todo)

    # -- point reads ----------------------------------------------------------------------------

    def _fetch_group(self, file_no: int, group: int) -> pa.Table:
        key = self._index.files[file_no]
        footer = self._footers[key]
        start, length = footer.row_group_range(group)
        data = self._store.get_range(key, start, length)
        return footer.read_row_group(group, data, start)

    def _measure(self, rows: int, before: dict[str, int]) -> None:
        after = self._store.stats.snapshot()
        requests = {k: after.get(k, 0) - before.get(k, 0) for k in ("GET", "HEAD", "LIST")}
        read = after["bytes_read"] - before.get("bytes_read", 0)
        self._stats = QueryStats(rows=rows, bytes_read=read, requests={k: v for k, v in requests.items() if v})

    def lookup(self, ns: str, entity_id: str) -> Event | None:
        before = self._store.stats.snapshot()
        with self._lock:
            index = self._index
            lo, hi = index.run(ns, entity_id)
            for i in range(hi - 1, lo - 1, -1):  # newest first; other keys only on a hash collision
                group = self._fetch_group(int(index.file[i]), int(index.row_group[i]))
                row = group.slice(int(index.row[i]), 1).to_pylist()[0]
                if (row["entity_ns"], row["entity_id"]) == (ns, entity_id):
                    self._measure(1, before)
                    return row_to_event(row)
        self._measure(0, before)
        return None

    def history(self, ns: str, entity_id: str) -> list[Event]:
        before = self._store.stats.snapshot()
        with self._lock:
            index = self._index
            lo, hi = index.run(ns, entity_id)
            wanted: dict[tuple[int, int], list[int]] = defaultdict(list)
            for i in range(lo, hi):
                wanted[(int(index.file[i]), int(index.row_group[i]))].append(int(index.row[i]))
            events: list[Event] = []
            for (file_no, group_no), rows in sorted(wanted.items()):
                group = self._fetch_group(file_no, group_no)
                picked = group.take(pa.array(np.array(rows, dtype=np.int64))).select(list(FIELDS)).to_pylist()
                events.extend(row_to_event(r) for r in picked if (r["entity_ns"], r["entity_id"]) == (ns, entity_id))
        events.sort(key=lambda e: (e.ts, e.version, e.event_id))
        self._measure(len(events), before)
        return events

    # -- search ---------------------------------------------------------------------------------

    def search(self, query: str, limit: int = 10, ns: str | None = None) -> list[SearchHit]:
        check_limit(limit)
        with self._lock:
            hits = self._fts.search(query_terms(query), limit, ns)
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
        self._sql.close()
