"""Reading Parquet through the object store in as few requests as possible.

With a file's footer cached, one ranged GET of a row group's column chunks (they are contiguous
in the file) is all a point read needs; ``RangeFile`` serves pyarrow's reads from those bytes.
"""

from __future__ import annotations

import io
import struct
import threading
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from lakebench.core.models import FIELDS
from lakebench.storage import ObjectStore

TAIL_GUESS = 64 * 1024


class RangeFile(io.RawIOBase):
    """A read-only file of ``size`` bytes of which only some ranges are known; reading elsewhere fails."""

    def __init__(self, size: int, ranges: dict[int, bytes]) -> None:
        self._size = size
        self._ranges = sorted(ranges.items())
        self._pos = 0

    def set_ranges(self, ranges: dict[int, bytes]) -> None:
        self._ranges = sorted(ranges.items())

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def size(self) -> int:
        return self._size

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        for start, data in self._ranges:
            if start <= self._pos and self._pos + n <= start + len(data):
                lo = self._pos - start
                buffer[:n] = data[lo : lo + n]
                self._pos += n
                return n
        raise OSError(f"bytes {self._pos}..{self._pos + n} were not fetched")


@dataclass(frozen=True, slots=True)
class CachedFooter:
    key: str
    size: int
    footer_start: int
    footer: bytes
    metadata: pq.FileMetaData
    _ranges: dict[int, tuple[int, int]] = field(default_factory=dict, repr=False, compare=False)
    _reader: list[tuple[RangeFile, pq.ParquetFile]] = field(default_factory=list, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def row_group_range(self, index: int) -> tuple[int, int]:
        """(start, length) of a row group's column chunks."""
        known = self._ranges.get(index)
        if known is None:
            known = self._ranges[index] = self._row_group_range(index)
        return known

    def _row_group_range(self, index: int) -> tuple[int, int]:
        group = self.metadata.row_group(index)
        starts, ends = [], []
        for j in range(group.num_columns):
            chunk = group.column(j)
            start = chunk.data_page_offset
            if chunk.has_dictionary_page and chunk.dictionary_page_offset:
                start = min(start, chunk.dictionary_page_offset)
            starts.append(start)
            ends.append(chunk.data_page_offset + chunk.total_compressed_size)
            ends[-1] = max(ends[-1], start + chunk.total_compressed_size)
        lo = min(starts)
        return lo, max(ends) - lo

    def read_row_group(self, index: int, data: bytes, start: int) -> pa.Table:
        """Decode a row group from its fetched bytes (one reader a file, reused: opening one costs
        more than a small row group's decoding)."""
        with self._lock:
            if not self._reader:
                source = RangeFile(self.size, {})
                self._reader.append((source, pq.ParquetFile(source, metadata=self.metadata, pre_buffer=False)))
            source, parquet = self._reader[0]
            source.set_ranges({self.footer_start: self.footer, start: data})
            try:
                return parquet.read_row_group(index, columns=list(FIELDS), use_threads=False)
            finally:
                source.set_ranges({})


def fetch_footer(store: ObjectStore, key: str, size: int, tail_len: int = 0) -> CachedFooter:
    """The footer in one ranged GET: ``tail_len`` bytes when known (the footer and its 8-byte
    trailer), else a first guess (and a second GET when the footer is larger)."""
    tail_len = min(size, tail_len or TAIL_GUESS)
    tail = store.get_range(key, size - tail_len, tail_len)
    (footer_len,) = struct.unpack("<I", tail[-8:-4])
    if tail[-4:] != b"PAR1":
        raise OSError(f"{key} is not a Parquet file")
    need = footer_len + 8
    if need > len(tail):
        tail = store.get_range(key, size - need, need)
    footer_start = size - len(tail)
    # The footer alone, as a file of its own: pyarrow's reader would ask for more of the tail than
    # an exact fetch holds. Offsets in it still point into the data file, read with this metadata.
    metadata = pq.read_metadata(pa.BufferReader(b"PAR1" + tail[-need:]))
    return CachedFooter(key, size, footer_start, tail, metadata)


def read_column(store: ObjectStore, key: str, size: int, column: str, max_gap: int = 1 << 20) -> pa.Array:
    """One column of a Parquet file, fetched with ranged GETs of just its chunks (neighbouring
    chunks closer than ``max_gap`` bytes share a GET)."""
    footer = fetch_footer(store, key, size)
    index = footer.metadata.schema.to_arrow_schema().get_field_index(column)
    spans: list[tuple[int, int]] = []
    for g in range(footer.metadata.num_row_groups):
        chunk = footer.metadata.row_group(g).column(index)
        start = chunk.data_page_offset
        if chunk.has_dictionary_page and chunk.dictionary_page_offset:
            start = min(start, chunk.dictionary_page_offset)
        spans.append((start, start + chunk.total_compressed_size))
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start - merged[-1][1] <= max_gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    ranges = {footer.footer_start: footer.footer}
    for start, end in merged:
        ranges[start] = store.get_range(key, start, end - start)
    parquet = pq.ParquetFile(RangeFile(size, ranges), metadata=footer.metadata, pre_buffer=False)
    return parquet.read(columns=[column], use_threads=False)[column].combine_chunks()
