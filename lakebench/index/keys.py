"""The key index: (entity_ns, entity_id) -> the row groups and rows that hold the entity's events.

One segment per data file, built from the file's key columns and stored beside the lake as
``index/keys/<data file path>.npz``; an engine loads the segments of the live files and merges
them in memory into arrays sorted by (key hash, ts, version, event_id), so the last entry of a
key's run is its latest event and a key that is absent costs no request at all.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lakebench.storage import ObjectStore

PREFIX = "index/keys/"
SEGMENT_VERSION = 1
_KEY_COLUMNS = ["entity_ns", "entity_id", "ts", "version", "event_id", "type"]


def key_hash(ns: str, entity_id: str) -> int:
    digest = hashlib.blake2b(f"{ns}\x1f{entity_id}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def segment_key(data_key: str) -> str:
    return f"{PREFIX}{data_key}.v{SEGMENT_VERSION}.npz"


@dataclass(slots=True)
class Segment:
    hashes: np.ndarray  # uint64
    ts: np.ndarray  # int64 epoch microseconds
    version: np.ndarray  # int64
    event_id: np.ndarray  # S26
    deleted: np.ndarray  # bool
    row_group: np.ndarray  # uint32
    row: np.ndarray  # uint32 (row within its row group)

    def to_bytes(self) -> bytes:
        out = io.BytesIO()
        np.savez(out, **{name: getattr(self, name) for name in self.__slots__})
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Segment:
        with np.load(io.BytesIO(data)) as arrays:
            return cls(**{name: arrays[name] for name in cls.__slots__})


def build_segment(data: bytes) -> Segment:
    """A data file's segment, from its key columns."""
    parquet = pq.ParquetFile(pa.BufferReader(data))
    table = parquet.read(columns=_KEY_COLUMNS)
    groups = [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)]
    row_group = np.repeat(np.arange(len(groups), dtype=np.uint32), groups)
    row = np.concatenate([np.arange(n, dtype=np.uint32) for n in groups]) if groups else np.zeros(0, np.uint32)
    encoded = pc.dictionary_encode(
        pc.binary_join_element_wise(table["entity_ns"], table["entity_id"], pa.scalar("\x1f", pa.large_string()))
    ).combine_chunks()
    per_key = np.array(
        [
            int.from_bytes(hashlib.blake2b(k.encode("utf-8"), digest_size=8).digest(), "little")
            for k in encoded.dictionary.to_pylist()
        ],
        dtype=np.uint64,
    )
    ts = pc.cast(table["ts"], pa.int64()).to_numpy()
    return Segment(
        hashes=per_key[encoded.indices.to_numpy()],
        ts=ts.astype(np.int64),
        version=table["version"].to_numpy().astype(np.int64),
        event_id=np.array(table["event_id"].to_pylist(), dtype="S26"),
        deleted=pc.equal(table["type"], "delete").to_numpy(zero_copy_only=False),
        row_group=row_group,
        row=row,
    )


def load_or_build(store: ObjectStore, data_key: str) -> tuple[Segment, bytes | None]:
    """A data file's segment from the store; built and stored when missing, in which case the data
    file's bytes (one GET) come back too, for other indexes to reuse."""
    from lakebench.core.errors import ObjectNotFound

    try:
        return Segment.from_bytes(store.get(segment_key(data_key))), None
    except ObjectNotFound:
        data = store.get(data_key)
        segment = build_segment(data)
        store.put_bytes(segment_key(data_key), segment.to_bytes())
        return segment, data


@dataclass(slots=True)
class KeyIndex:
    """Segments of the live files merged into one sorted run."""

    hashes: np.ndarray
    file: np.ndarray  # uint32 index into ``files``
    row_group: np.ndarray
    row: np.ndarray
    deleted: np.ndarray
    files: list[str]

    @classmethod
    def merge(cls, segments: dict[str, Segment]) -> KeyIndex:
        files = sorted(segments)
        if not files:
            empty = np.zeros(0, np.uint64)
            return cls(
                empty, np.zeros(0, np.uint32), np.zeros(0, np.uint32), np.zeros(0, np.uint32), np.zeros(0, bool), []
            )
        parts = [segments[f] for f in files]
        hashes = np.concatenate([s.hashes for s in parts])
        ts = np.concatenate([s.ts for s in parts])
        version = np.concatenate([s.version for s in parts])
        event_id = np.concatenate([s.event_id for s in parts])
        file = np.concatenate([np.full(len(s.hashes), i, np.uint32) for i, s in enumerate(parts)])
        order = np.lexsort((event_id, version, ts, hashes))  # last key is primary
        return cls(
            hashes=hashes[order],
            file=file[order],
            row_group=np.concatenate([s.row_group for s in parts])[order],
            row=np.concatenate([s.row for s in parts])[order],
            deleted=np.concatenate([s.deleted for s in parts])[order],
            files=files,
        )

    def run(self, ns: str, entity_id: str) -> tuple[int, int]:
        """[lo, hi) of the entries whose key hash matches, oldest first."""
        h = np.uint64(key_hash(ns, entity_id))
        lo = int(np.searchsorted(self.hashes, h, "left"))
        hi = int(np.searchsorted(self.hashes, h, "right"))
        return lo, hi
