"""A write-ahead log: an event is acknowledged only after it is in an fsync'd log segment.

Layout: ``<folder>/wal-<first offset, 20 digits>.log`` segments of records
``[offset u64][length u32][crc32 u32][payload]``. Offsets are consecutive across segments.
On open, a torn tail in the newest segment (a crash mid-append) is cut off; damage anywhere else
is an error, because it would mean acknowledged events were lost.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from lakebench.core.errors import TerminalError

HEADER = struct.Struct("<QII")
PREFIX, SUFFIX = "wal-", ".log"


class WalCorrupted(TerminalError):
    pass


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _scan(path: Path) -> tuple[list[tuple[int, int, int]], int]:
    """(offset, payload position, length) of each intact record, and the end of the last intact one."""
    data = path.read_bytes()
    records: list[tuple[int, int, int]] = []
    pos = 0
    while pos + HEADER.size <= len(data):
        offset, length, crc = HEADER.unpack_from(data, pos)
        start = pos + HEADER.size
        if start + length > len(data) or zlib.crc32(data[start : start + length]) != crc:
            break
        records.append((offset, start, length))
        pos = start + length
    return records, pos


class WriteAheadLog:
    def __init__(self, folder: Path, segment_bytes: int = 64 << 20) -> None:
        self.folder = folder
        self.segment_bytes = segment_bytes
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._segments = sorted(folder.glob(f"{PREFIX}*{SUFFIX}"))
        self.next_offset = 0
        for i, segment in enumerate(self._segments):
            records, end = _scan(segment)
            last = i == len(self._segments) - 1
            if end != segment.stat().st_size:
                if not last:
                    raise WalCorrupted(f"write-ahead log segment {segment} is damaged at byte {end}")
                with segment.open("r+b") as f:  # a torn tail from a crash mid-append: never acknowledged
                    f.truncate(end)
                    os.fsync(f.fileno())
            if records:
                self.next_offset = records[-1][0] + 1
            elif self._first_offset(segment) > self.next_offset:
                self.next_offset = self._first_offset(segment)
        if self._segments:
            self._file = self._segments[-1].open("ab")

    @staticmethod
    def _first_offset(segment: Path) -> int:
        return int(segment.name[len(PREFIX) : -len(SUFFIX)])

    def append(self, payloads: list[bytes]) -> int:
        """Durably append records; returns the offset of the first. Offsets are consecutive."""
        if not payloads:
            return self.next_offset
        with self._lock:
            first = self.next_offset
            if self._file is None or self._file.tell() >= self.segment_bytes:
                self._roll(first)
            assert self._file is not None
            chunks = []
            for i, payload in enumerate(payloads):
                chunks.append(HEADER.pack(first + i, len(payload), zlib.crc32(payload)))
                chunks.append(payload)
            self._file.write(b"".join(chunks))
            self._file.flush()
            os.fsync(self._file.fileno())
            self.next_offset = first + len(payloads)
            return first

    def _roll(self, first: int) -> None:
        if self._file is not None:
            self._file.close()
        segment = self.folder / f"{PREFIX}{first:020d}{SUFFIX}"
        self._file = segment.open("ab")
        self._segments.append(segment)
        _fsync_dir(self.folder)

    def replay(self, after: int = -1) -> Iterator[tuple[int, bytes]]:
        """Every record with an offset greater than ``after``, in order."""
        with self._lock:
            segments = list(self._segments)
        for segment in segments:
            records, _ = _scan(segment)
            if records and records[-1][0] <= after:
                continue
            data = segment.read_bytes()
            for offset, start, length in records:
                if offset > after:
                    yield offset, data[start : start + length]

    def truncate(self, upto: int) -> int:
        """Delete segments whose records all have offsets <= ``upto``; returns how many were deleted."""
        with self._lock:
            removable = []
            for i, segment in enumerate(self._segments[:-1]):
                next_first = self._first_offset(self._segments[i + 1])
                if next_first - 1 <= upto:
                    removable.append(segment)
            last = self._segments[-1] if self._segments else None
            holds_records = last is not None and self._first_offset(last) < self.next_offset
            if last is not None and holds_records and self.next_offset - 1 <= upto:
                # Everything is committed: start a fresh (empty) segment, whose name keeps the next
                # offset across restarts, so the old one can go too.
                removable.append(last)
                self._roll(self.next_offset)
            for segment in removable:
                segment.unlink()
                self._segments.remove(segment)
            if removable:
                _fsync_dir(self.folder)
            return len(removable)

    def advance_to(self, offset: int) -> None:
        """Never hand out offsets below ``offset`` (the highest committed offset + 1, from the table)."""
        with self._lock:
            if offset > self.next_offset:
                self._roll(offset)
                self.next_offset = offset

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
