"""The full-text index: tantivy, over the latest version of every live entity, kept in the object store.

As Quickwit does, the index lives beside the data: immutable segment files under
``index/fts/files/`` and a manifest ``index/fts/manifest.json`` naming the current files, tantivy's
``meta.json`` and the data files already indexed. A reader mirrors the files it lacks into a local
cache folder and opens them there; an update indexes new data files, uploads the new segment
files, then replaces the manifest (readers switch to a new index atomically).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import tantivy

from lakebench.core.errors import ObjectNotFound
from lakebench.core.text import TOKEN_PATTERN
from lakebench.storage import ObjectStore

PREFIX = "index/fts/"
MANIFEST = f"{PREFIX}manifest.json"
TOKENIZER = "lakebench"
_LOCAL_ONLY = {"meta.json", ".managed.json", ".tantivy-meta.lock", ".tantivy-writer.lock"}


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("key", stored=False, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("ns", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_bytes_field("id", stored=True, indexed=False)
    builder.add_bytes_field("event_id", stored=True, indexed=False)
    builder.add_bytes_field("title", stored=True, indexed=False)
    builder.add_text_field("text", stored=False, tokenizer_name=TOKENIZER, index_option="freq")
    return builder.build()


SCHEMA = _schema()


def _analyzer() -> tantivy.TextAnalyzer:
    return (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(TOKEN_PATTERN)).filter(tantivy.Filter.lowercase()).build()
    )


def default_cache_dir(lake_url: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lakebench"
    return base / hashlib.sha256(lake_url.encode()).hexdigest()[:16] / "fts"


@dataclass(frozen=True, slots=True)
class Doc:
    """The latest live version of an entity, as the index holds it."""

    ns: str
    entity_id: str
    event_id: str
    title: str | None
    text: str

    @property
    def key(self) -> str:
        return f"{self.ns}\x1f{self.entity_id}"


@dataclass(frozen=True, slots=True)
class Hit:
    ns: str
    entity_id: str
    event_id: str
    title: str | None
    score: float


class FullTextIndex:
    def __init__(self, store: ObjectStore, cache_dir: Path) -> None:
        self.store = store
        self.cache_dir = cache_dir
        self.manifest: dict[str, Any] = {"generation": 0, "files": [], "meta": None, "indexed": []}
        self._index: tantivy.Index | None = None

    @property
    def indexed(self) -> set[str]:
        return set(self.manifest["indexed"])

    def sync(self) -> None:
        """Mirror the stored index into the cache folder and open it."""
        try:
            manifest = json.loads(self.store.get(MANIFEST))
        except ObjectNotFound:
            manifest = {"generation": 0, "files": [], "meta": None, "indexed": []}
        if self._index is not None and manifest["generation"] == self.manifest["generation"]:
            return
        self.manifest = manifest
        self._mirror()

    def _mirror(self) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        wanted = set(self.manifest["files"])
        for name in os.listdir(self.cache_dir):
            if name not in wanted and name not in _LOCAL_ONLY:
                (self.cache_dir / name).unlink()
        for name in wanted - set(os.listdir(self.cache_dir)):
            (self.cache_dir / name).write_bytes(self.store.get(f"{PREFIX}files/{name}"))
        meta = self.cache_dir / "meta.json"
        if self.manifest["meta"] is None:
            meta.unlink(missing_ok=True)
            (self.cache_dir / ".managed.json").unlink(missing_ok=True)
        else:
            meta.write_text(self.manifest["meta"])
        self._index = tantivy.Index(SCHEMA, path=str(self.cache_dir))
        self._index.register_tokenizer(TOKENIZER, _analyzer())
        self._index.reload()

    def update(self, removed_keys: Iterable[str], docs: Iterable[Doc], indexed_files: Iterable[str]) -> int:
        """Replace the docs of changed entities, upload the new segments, then the manifest."""
        if self._index is None:
            self.sync()
        assert self._index is not None
        writer = self._index.writer(heap_size=128_000_000, num_threads=1)
        count = 0
        for key in removed_keys:
            writer.delete_documents_by_term("key", key)
        for doc in docs:
            writer.delete_documents_by_term("key", doc.key)
            writer.add_document(
                tantivy.Document(
                    key=doc.key,
                    ns=doc.ns,
                    id=doc.entity_id.encode(),
                    event_id=doc.event_id.encode(),
                    title=(doc.title or "").encode(),
                    text=doc.text,
                )
            )
            count += 1
        writer.commit()
        writer.wait_merging_threads()
        files = sorted(n for n in os.listdir(self.cache_dir) if n not in _LOCAL_ONLY and not n.startswith("."))
        for name in set(files) - set(self.manifest["files"]):
            self.store.put_bytes(f"{PREFIX}files/{name}", (self.cache_dir / name).read_bytes())
        self.manifest = {
            "generation": int(self.manifest["generation"]) + 1,
            "files": files,
            "meta": (self.cache_dir / "meta.json").read_text(),
            "indexed": sorted(self.indexed | set(indexed_files)),
        }
        self.store.put_bytes(MANIFEST, json.dumps(self.manifest).encode())
        self._index.reload()
        return count

    def forget(self, data_keys: set[str]) -> None:
        """Data files that left the table (compaction): drop them from the manifest's list."""
        self.manifest["indexed"] = sorted(self.indexed - data_keys)

    def search(self, terms: list[str], limit: int, ns: str | None = None) -> list[Hit]:
        if self._index is None or not terms or self.manifest["meta"] is None:
            return []
        clauses = [(tantivy.Occur.Must, tantivy.Query.term_query(SCHEMA, "text", t)) for t in terms]
        if ns is not None:
            clauses.append((tantivy.Occur.Must, tantivy.Query.term_query(SCHEMA, "ns", ns)))
        searcher = self._index.searcher()
        result = searcher.search(tantivy.Query.boolean_query(clauses), limit)
        hits = []
        for score, address in result.hits:
            doc = searcher.doc(address)
            title = bytes(doc["title"][0]).decode()
            hits.append(
                Hit(
                    ns=doc["ns"][0],
                    entity_id=bytes(doc["id"][0]).decode(),
                    event_id=bytes(doc["event_id"][0]).decode(),
                    title=title or None,
                    score=float(score),
                )
            )
        return sorted(hits, key=lambda h: (-h.score, h.ns, h.entity_id))


def docs_from_file(data: bytes) -> pa.Table:
    """The columns the index needs from one data file."""
    columns = ["entity_ns", "entity_id", "event_id", "ts", "version", "type", "title", "body"]
    return pq.read_table(pa.BufferReader(data), columns=columns)
