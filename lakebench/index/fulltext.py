"""The full-text index: tantivy, over the latest version of every entity, written by the writers.

As Quickwit does, the index lives beside the data: immutable segment files under
``<table>/index/fts/files/`` and, per version, a manifest ``<table>/index/fts/manifests/<ulid>.json``
naming its files and tantivy's ``meta.json``. The manifest a snapshot reads is named in that
snapshot's summary (``lakebench.index.fts``), set by the same Iceberg commit that adds the data:
the commit is the compare-and-swap between writers, so two writers never lose each other's
updates (the loser of a commit race re-applies its documents on the winner's index), and readers
keep reading the previous version, whose files stay, while a new one is written.

Updates are incremental: a document carries its event's (ts, version, event_id); a newer event of
an entity replaces it, an older one (arriving late) is ignored, and a delete leaves a tombstone
with no text, so that a late older event does not bring a deleted entity back.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import tantivy
from ulid import ULID

from lakebench.core.text import SEPARATOR_CLASS
from lakebench.storage import ObjectStore

SUMMARY_KEY = "lakebench.index.fts"
TOKENIZER = "lakebench"
_LOCAL_ONLY = {"meta.json", ".managed.json", ".tantivy-meta.lock", ".tantivy-writer.lock"}
_LOOKUP_CHUNK = 20_000  # keys a term-set query
APPLY_ROWS = 50_000  # documents applied (looked up, replaced, committed) at a time


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("key", stored=False, tokenizer_name="raw", index_option="basic")
    builder.add_text_field("ns", stored=True, tokenizer_name="raw", index_option="basic")
    builder.add_bytes_field("id", stored=True, indexed=False)
    builder.add_bytes_field("event_id", stored=True, indexed=False)
    builder.add_bytes_field("title", stored=True, indexed=False)
    builder.add_integer_field("ts", stored=True, indexed=False)
    builder.add_integer_field("version", stored=True, indexed=False)
    builder.add_text_field("text", stored=False, tokenizer_name=TOKENIZER, index_option="freq")
    return builder.build()


SCHEMA = _schema()


def _analyzer() -> tantivy.TextAnalyzer:
    """lakebench's tokens (core/text.py) from text whose separators ``_spaced`` made spaces: tantivy's
    whitespace tokenizer splits on ASCII whitespace only, as the rule does, and at several times
    the speed of its regular-expression tokenizer, which gives the same tokens from the raw text."""
    return tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).filter(tantivy.Filter.lowercase()).build()


# Every ASCII separator byte becomes a space; UTF-8 sequences of other characters hold no ASCII byte.
_SEPARATORS = bytes(c for c in range(128) if re.fullmatch(f"[{SEPARATOR_CLASS}]", chr(c)))
_SPACES = bytes.maketrans(_SEPARATORS, b" " * len(_SEPARATORS))


def _spaced(text: str) -> str:
    return text.encode("utf-8", "surrogatepass").translate(_SPACES).decode("utf-8", "surrogatepass")


def default_cache_dir(lake_url: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lakebench"
    return base / hashlib.sha256(lake_url.encode()).hexdigest()[:16] / "fts"


@dataclass(frozen=True, slots=True)
class Hit:
    ns: str
    entity_id: str
    event_id: str
    title: str | None
    score: float


DOC_FIELDS = ("entity_ns", "entity_id", "event_id", "ts", "version", "type", "title", "text")


def _newest(table: pa.Table) -> pa.Table:
    """Each entity's newest row (by ts, version, event_id)."""
    import pyarrow.compute as pc  # the writer's: a reader opening the index does not import it

    order = pc.sort_indices(
        table,
        sort_keys=[
            ("entity_ns", "ascending"),
            ("entity_id", "ascending"),
            ("ts", "descending"),
            ("version", "descending"),
            ("event_id", "descending"),
        ],
    )
    keys = pc.binary_join_element_wise(
        table["entity_ns"], table["entity_id"], pa.scalar("\x1f", table.schema.field("entity_ns").type)
    ).take(order)
    keys = keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys
    changed = pc.invert(pc.equal(keys[1:], keys[:-1])) if len(keys) > 1 else pa.array([], pa.bool_())
    first = pa.concat_arrays([pa.array([True]), changed])
    return table.take(pc.filter(order, first))


def latest_docs(table: pa.Table) -> pa.Table:
    """Each entity's latest event in ``table`` (by ts, version, event_id), with its document text."""
    import pyarrow.compute as pc  # the writer's: a reader opening the index does not import it

    if table.num_rows == 0:
        return pa.table(
            {c: pa.array([], pa.int64() if c in ("ts", "version") else pa.large_string()) for c in DOC_FIELDS}
        )
    picked = _newest(table)
    empty = pa.scalar("", picked.schema.field("entity_ns").type)
    text = pc.binary_join_element_wise(
        pc.fill_null(picked["title"], empty), pc.fill_null(picked["body"], empty), pa.scalar(" ", empty.type)
    )
    return pa.table(
        {
            "entity_ns": picked["entity_ns"],
            "entity_id": picked["entity_id"],
            "event_id": picked["event_id"],
            "ts": pc.cast(picked["ts"], pa.int64()),
            "version": picked["version"],
            "type": picked["type"],
            "title": picked["title"],
            "text": text,
        }
    )


def merge_docs(parts: list[pa.Table]) -> pa.Table:
    """Documents of several files as one table, each entity's newest kept."""
    table = pa.concat_tables(parts, promote_options="permissive")
    return _newest(table) if len(parts) > 1 else table


def _open(folder: Path) -> tantivy.Index:
    index = tantivy.Index(SCHEMA, path=str(folder))
    index.register_tokenizer(TOKENIZER, _analyzer())
    index.reload()
    return index


def _digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:40]


def _mirror(store: ObjectStore, prefix: str, manifest: dict[str, Any] | None, folder: Path, pool: Path) -> None:
    """Make ``folder`` hold exactly the manifest's index: each file linked from ``pool``, a local
    cache of immutable files by content digest, fetching only what the pool lacks. Files are
    stored by digest, not by tantivy's name: two writers' files of one name (tantivy names a
    deletes file by segment and operation count) never overwrite each other."""
    folder.mkdir(parents=True, exist_ok=True)
    pool.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(folder):
        if name not in (".tantivy-meta.lock", ".tantivy-writer.lock"):
            (folder / name).unlink()
    files: dict[str, str] = manifest["files"] if manifest else {}
    for name, digest in sorted(files.items()):
        cached = pool / digest
        if not cached.exists():
            part = pool / f".{digest}.{os.getpid()}.{threading.get_ident()}.part"
            part.write_bytes(store.get(f"{prefix}/fts/files/{digest}"))
            part.replace(cached)
        os.link(cached, folder / name)
    if manifest is not None:
        (folder / "meta.json").write_text(str(manifest["meta"]))


def _load_manifest(store: ObjectStore, key: str | None) -> dict[str, Any] | None:
    return orjson.loads(store.get(key)) if key else None


class FullTextWriter:
    """A writer's working copy of the index: brought to a snapshot's version, updated, published."""

    def __init__(self, store: ObjectStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix
        self._work = Path(tempfile.mkdtemp(prefix="lakebench-fts-writer-"))
        self._folder = self._work / "index"
        self._pool = self._work / "pool"
        self._base: str | None = "unset"
        self._digests: dict[str, str] = {}  # local file name -> content digest (its store key)
        self._published: set[str] = set()  # digests the store holds
        self._index: tantivy.Index | None = None
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._work, True)

    @property
    def version(self) -> str | None:
        """The stored version the working copy equals (None: changed since, or nothing stored)."""
        return None if self._base == "unset" else self._base

    def begin(self, manifest_key: str | None) -> None:
        """Start from the version ``manifest_key`` names (None: an empty index)."""
        if self._index is not None and manifest_key == self._base:
            return
        manifest = _load_manifest(self.store, manifest_key)
        _mirror(self.store, self.prefix, manifest, self._folder, self._pool)
        self._digests = dict(manifest["files"]) if manifest else {}
        self._published = set(self._digests.values())
        self._index = _open(self._folder)
        self._base = manifest_key

    def apply(self, docs: pa.Table) -> int:
        """Bring the index up to ``docs`` (one row per entity, see ``latest_docs``); the number of
        documents replaced or added."""
        assert self._index is not None, "begin() first"
        self._base = None  # the working copy no longer equals a stored version
        rows = docs.to_pylist()
        current = self._current([f"{r['entity_ns']}\x1f{r['entity_id']}" for r in rows])
        writer = self._index.writer(heap_size=64_000_000, num_threads=1)
        changed = 0
        for r in rows:
            key = f"{r['entity_ns']}\x1f{r['entity_id']}"
            mine = (int(r["ts"]), int(r["version"]), r["event_id"])
            held = current.get(key)
            if held is not None and held >= mine:
                continue
            writer.delete_documents_by_term("key", key)
            deleted = r["type"] == "delete"
            writer.add_document(
                tantivy.Document(
                    key=key,
                    ns=r["entity_ns"],
                    id=r["entity_id"].encode("utf-8", "surrogatepass"),
                    event_id=r["event_id"].encode(),
                    title=("" if deleted else r["title"] or "").encode("utf-8", "surrogatepass"),
                    ts=mine[0],
                    version=mine[1],
                    text="" if deleted else _spaced(r["text"]),
                )
            )
            changed += 1
        writer.commit()
        writer.wait_merging_threads()
        self._index.reload()
        return changed

    def _current(self, keys: list[str]) -> dict[str, tuple[int, int, str]]:
        """What the index holds for these keys: (ts, version, event_id) of each one's document."""
        assert self._index is not None
        searcher = self._index.searcher()
        held: dict[str, tuple[int, int, str]] = {}
        if searcher.num_docs == 0:
            return held
        for i in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[i : i + _LOOKUP_CHUNK]
            result = searcher.search(tantivy.Query.term_set_query(SCHEMA, "key", chunk), len(chunk) + 1)
            for _, address in result.hits:
                doc = searcher.doc(address)
                key = f"{doc['ns'][0]}\x1f{bytes(doc['id'][0]).decode('utf-8', 'surrogatepass')}"
                held[key] = (int(doc["ts"][0]), int(doc["version"][0]), bytes(doc["event_id"][0]).decode())
        return held

    def publish(self) -> str:
        """Upload the files the store lacks (by content digest), then a new manifest; its key."""
        names = sorted(n for n in os.listdir(self._folder) if n not in _LOCAL_ONLY and not n.startswith("."))
        files = {}
        for name in names:
            digest = self._digests.get(name) or _digest(self._folder / name)
            self._digests[name] = files[name] = digest
            if digest not in self._published:
                self.store.put_bytes(f"{self.prefix}/fts/files/{digest}", (self._folder / name).read_bytes())
                self._published.add(digest)
            if not (self._pool / digest).exists():  # a later mirror links it from here
                self._pool.mkdir(parents=True, exist_ok=True)
                os.link(self._folder / name, self._pool / digest)
        manifest = {"files": files, "meta": (self._folder / "meta.json").read_text()}
        key = f"{self.prefix}/fts/manifests/{ULID()}.json"
        self.store.put_bytes(key, orjson.dumps(manifest))
        self._base = key
        return key

    def close(self) -> None:
        self._index = None
        self._cleanup()


class FullTextReader:
    """A reader's copy of one stored version, mirrored into a local cache folder (never the lake)."""

    def __init__(self, store: ObjectStore, prefix: str, cache_dir: Path) -> None:
        self.store = store
        self.prefix = prefix
        self.cache_dir = cache_dir
        self.manifest_key: str | None = None
        self._index: tantivy.Index | None = None
        self._folder: Path | None = None

    def open(self, manifest_key: str) -> None:
        if manifest_key == self.manifest_key and self._index is not None:
            return
        manifest = _load_manifest(self.store, manifest_key)
        (self.cache_dir / "versions").mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="v-", dir=self.cache_dir / "versions"))  # this reader's alone
        _mirror(self.store, self.prefix, manifest, folder, self.cache_dir / "pool")
        index = _open(folder)
        old = self._folder
        self._index, self._folder, self.manifest_key = index, folder, manifest_key
        if old is not None and old != folder:
            shutil.rmtree(old, ignore_errors=True)

    def search(self, terms: list[str], limit: int, ns: str | None = None) -> list[Hit]:
        if self._index is None or not terms:
            return []
        clauses = [(tantivy.Occur.Must, tantivy.Query.term_query(SCHEMA, "text", t)) for t in terms]
        if ns is not None:
            clauses.append((tantivy.Occur.Must, tantivy.Query.term_query(SCHEMA, "ns", ns)))
        searcher = self._index.searcher()
        result = searcher.search(tantivy.Query.boolean_query(clauses), limit)
        hits = []
        for score, address in result.hits:
            doc = searcher.doc(address)
            title = bytes(doc["title"][0]).decode("utf-8", "surrogatepass")
            hits.append(
                Hit(
                    ns=doc["ns"][0],
                    entity_id=bytes(doc["id"][0]).decode("utf-8", "surrogatepass"),
                    event_id=bytes(doc["event_id"][0]).decode(),
                    title=title or None,
                    score=float(score),
                )
            )
        return sorted(hits, key=lambda h: (-h.score, h.ns, h.entity_id))

    def close(self) -> None:
        self._index = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
