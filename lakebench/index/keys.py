"""The key index: (entity_ns, entity_id) -> the file, row group and row of each of the entity's events.

Written by the writer that writes the data, never by a reader:

- a **segment** per data file (``<table>/index/keys/<data file>.seg``), published with the file:
  fixed-width records sorted by (key hash, ts, version, event_id), cut into blocks of
  ``BLOCK_RECORDS`` so that a reader fetches one block with one ranged GET;
- a **directory** per commit (``<table>/index/keys/dir/<ulid>.npz``), named in the snapshot's
  summary (``lakebench.index.keys``) by the same Iceberg commit that adds the files: for every
  live file its segment's size, the first hash of each block (fences) and a Bloom filter of its
  hashes. A reader loads the directory (one GET, about 2 bytes a key), asks the filters which
  segments can hold a key, and fetches only those blocks — so opening does not grow with the
  table, and a key that is absent usually costs no request at all.

A snapshot and its directory always agree: a commit that adds or removes files writes a new
directory from its parent's, on the fresh metadata of each commit attempt.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import orjson
import pyarrow as pa

SEGMENT_SUFFIX = ".v2.seg"
FORMAT = 4  # of directories: one of another format is treated as missing (`lakebench index build` remakes it)


class FormatError(ValueError):
    """A key directory written by another version of lakebench."""


BLOCK_RECORDS = 256  # records a block: 59 bytes each, ~15 KB a ranged GET
BLOOM_BITS_PER_KEY = 20  # blocked filter, 9 bits a key: ~0.08 % false positives a segment
BLOOM_HASHES = 9
SUMMARY_KEY = "lakebench.index.keys"

RECORD = np.dtype(
    [
        ("hash", "<u8"),
        ("ts", "<i8"),  # epoch microseconds
        ("version", "<i8"),
        ("event_id", "S26"),
        ("deleted", "u1"),
        ("row_group", "<u4"),
        ("row", "<u4"),  # within its row group
    ]
)


def key_hash(ns: str, entity_id: str) -> int:
    return _hash_text(f"{ns}\x1f{entity_id}")


def _hash_text(key: str) -> int:
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def segment_key(index_prefix: str, data_key: str, data_prefix: str) -> str:
    """Where a data file's segment lives: the same relative path under the index folder."""
    relative = data_key[len(data_prefix) + 1 :] if data_key.startswith(data_prefix + "/") else data_key
    return f"{index_prefix}/keys/data/{relative}{SEGMENT_SUFFIX}"


def directory_folder(index_prefix: str) -> str:
    return f"{index_prefix}/keys/dir/"


# -- writing ----------------------------------------------------------------------------------------


def build_records(table: pa.Table, group_rows: list[int]) -> np.ndarray:
    """A written file's records, sorted, from its key columns (``table`` in the file's row order)."""
    import pyarrow.compute as pc  # the writer's: a reader opening the index does not import it

    n = table.num_rows
    records = np.zeros(n, RECORD)
    if n == 0:
        return records
    keys = pc.binary_join_element_wise(table["entity_ns"], table["entity_id"], pa.scalar("\x1f", pa.large_string()))
    encoded = pc.dictionary_encode(keys).combine_chunks()
    per_key = np.fromiter(
        (_hash_text(k) for k in encoded.dictionary.to_pylist()), dtype=np.uint64, count=len(encoded.dictionary)
    )
    records["hash"] = per_key[encoded.indices.to_numpy()]
    records["ts"] = pc.cast(table["ts"], pa.int64()).to_numpy()
    records["version"] = table["version"].to_numpy()
    records["event_id"] = np.array(table["event_id"].to_pylist(), dtype="S26")
    records["deleted"] = pc.equal(table["type"], "delete").to_numpy(zero_copy_only=False)
    records["row_group"] = np.repeat(np.arange(len(group_rows), dtype=np.uint32), group_rows)
    records["row"] = np.concatenate([np.arange(g, dtype=np.uint32) for g in group_rows])
    return np.sort(records, order=["hash", "ts", "version", "event_id"], kind="stable")


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """What the directory keeps of one segment."""

    data_key: str
    data_size: int
    records: int
    fences: np.ndarray  # uint64: the first hash of each block
    bloom: np.ndarray  # uint8: the Bloom filter's bits
    max_ts: int  # its newest event's ts (epoch µs): a lookup skips segments older than what it found
    footer_len: int  # the data file's footer with its 8-byte trailer: one exact ranged GET


_ROUNDS = np.arange(BLOOM_HASHES, dtype=np.uint64)
BLOOM_BLOCK_BITS = 512  # a blocked Bloom filter: each key's bits in one 64-byte block (one cache line)


def _in_block(hashes: np.ndarray) -> np.ndarray:
    """Each hash's BLOOM_HASHES bit positions within its block (len(hashes) x BLOOM_HASHES)."""
    a = hashes & np.uint64(0xFFFF)
    b = ((hashes >> np.uint64(16)) & np.uint64(0xFFFF)) | np.uint64(1)
    return (a[:, None] + _ROUNDS[None, :] * b[:, None]) & np.uint64(BLOOM_BLOCK_BITS - 1)


def summarize(data_key: str, data_size: int, records: np.ndarray, footer_len: int) -> SegmentInfo:
    blocks = max(1, -(-len(records) * BLOOM_BITS_PER_KEY // BLOOM_BLOCK_BITS))
    bloom = np.zeros(blocks * BLOOM_BLOCK_BITS // 8, np.uint8)
    if len(records):
        hashes = records["hash"]
        block = (hashes >> np.uint64(32)) % np.uint64(blocks)
        bits = (block[:, None] * np.uint64(BLOOM_BLOCK_BITS) + _in_block(hashes)).ravel()
        np.bitwise_or.at(bloom, (bits >> np.uint64(3)).astype(np.int64), (1 << (bits & np.uint64(7))).astype(np.uint8))
    fences = records["hash"][::BLOCK_RECORDS].copy()
    max_ts = int(records["ts"].max()) if len(records) else -(2**63)
    return SegmentInfo(data_key, data_size, len(records), fences, bloom, max_ts, footer_len)


@dataclass(slots=True)
class Directory:
    """Every live file's segment summary, as one commit published it."""

    segments: list[SegmentInfo]

    @property
    def records(self) -> int:
        return sum(s.records for s in self.segments)

    def without(self, data_keys: Iterable[str]) -> Directory:
        gone = set(data_keys)
        return Directory([s for s in self.segments if s.data_key not in gone])

    def plus(self, infos: Iterable[SegmentInfo]) -> Directory:
        return Directory([*self.segments, *infos])

    def to_bytes(self) -> bytes:
        files = [
            {"key": s.data_key, "size": s.data_size, "records": s.records, "max_ts": s.max_ts, "footer": s.footer_len}
            for s in self.segments
        ]
        out = io.BytesIO()
        np.savez(
            out,
            format=np.array([FORMAT], np.int64),
            files=np.frombuffer(orjson.dumps(files), np.uint8),
            fences=np.concatenate([s.fences for s in self.segments]) if self.segments else np.zeros(0, np.uint64),
            fence_counts=np.array([len(s.fences) for s in self.segments], np.int64),
            bloom=np.concatenate([s.bloom for s in self.segments]) if self.segments else np.zeros(0, np.uint8),
            bloom_bytes=np.array([len(s.bloom) for s in self.segments], np.int64),
        )
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Directory:
        with np.load(io.BytesIO(data)) as arrays:
            if "format" not in arrays or int(arrays["format"][0]) != FORMAT:
                raise FormatError("a key directory of another lakebench version")
            files = orjson.loads(arrays["files"].tobytes())
            fences = np.split(arrays["fences"], np.cumsum(arrays["fence_counts"])[:-1]) if files else []
            blooms = np.split(arrays["bloom"], np.cumsum(arrays["bloom_bytes"])[:-1]) if files else []
        return cls(
            [
                SegmentInfo(
                    f["key"], int(f["size"]), int(f["records"]), fence, bloom, int(f["max_ts"]), int(f["footer"])
                )
                for f, fence, bloom in zip(files, fences, blooms, strict=True)
            ]
        )


# -- reading ------------------------------------------------------------------------------------------


class Probe:
    """A directory, laid out for asking which segments may hold a key (all filters at once)."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory
        segments = directory.segments
        self.keys = [s.data_key for s in segments]
        words = BLOOM_BLOCK_BITS // 64
        self.bloom = (np.concatenate([s.bloom for s in segments]) if segments else np.zeros(0, np.uint8)).view("<u8")
        sizes = np.array([len(s.bloom) // 8 for s in segments], np.int64)  # in 64-bit words
        self.bloom_start = np.cumsum(sizes) - sizes
        self.bloom_blocks = (sizes // words).astype(np.uint64)
        self.max_ts = np.array([s.max_ts for s in segments], np.int64)
        self._words = words

    def candidates(self, h: int) -> np.ndarray:
        """Numbers of the segments whose filter admits the hash, newest first (by ``max_ts``)."""
        if not self.keys:
            return np.zeros(0, np.int64)
        a, b = h & 0xFFFF, ((h >> 16) & 0xFFFF) | 1  # as _in_block, for one hash, in plain ints
        mask: dict[int, int] = {}
        for i in range(BLOOM_HASHES):
            bit = (a + i * b) & (BLOOM_BLOCK_BITS - 1)
            mask[bit >> 6] = mask.get(bit >> 6, 0) | (1 << (bit & 63))
        used = np.fromiter(mask, np.int64, len(mask))
        bits = np.fromiter(mask.values(), np.uint64, len(mask))
        block = (np.uint64(h >> 32) % self.bloom_blocks).astype(np.int64)
        words = self.bloom[(self.bloom_start + block * self._words)[:, None] + used[None, :]]
        found = np.flatnonzero(((words & bits) == bits).all(axis=1))
        return found[np.argsort(-self.max_ts[found], kind="stable")]  # newest segments first


def block_span(fences: np.ndarray, h: int) -> tuple[int, int]:
    """[first, last] blocks that can hold records of hash ``h``."""
    hv = np.uint64(h)
    first = max(0, int(np.searchsorted(fences, hv, "left")) - 1)
    last = max(first, int(np.searchsorted(fences, hv, "right")) - 1)
    return first, last
