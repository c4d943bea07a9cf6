"""A write-ahead log: an event is acknowledged only after it is in an fsync'd log segment.

Group commit: ``write`` appends without waiting for the disk, ``sync`` makes everything written
so far durable with one fsync, so requests that arrive together share it (pipeline/core.py).

Layout: ``<folder>/wal-<first offset, 20 digits>.log`` segments of records
``[offset u64][length u32][crc32 u32][payload]``. Offsets are consecutive across segments.
On open, a torn tail in the newest segment (a crash mid-append) is cut off; damage anywhere else
is an error, because it would mean acknowledged events were lost.
"""

from __future__ import annotations

import os
import struct
import threading
import time
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
        self._lock = threading.Lock()  # the file and the offsets
        self._sync_lock = threading.Lock()
        self._file: BinaryIO | None = None
        self._segments = sorted(folder.glob(f"{PREFIX}*{SUFFIX}"))
        self.next_offset = 0
        self.syncs = 0  # fsyncs of the log, and the time they took: what group commit shares
        self.sync_seconds = 0.0
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
        self._size = 0  # of the newest segment
        self._closed = False
        if self._segments:
            self._file = self._segments[-1].open("ab")
            self._size = self._segments[-1].stat().st_size
        self.synced_offset = self.next_offset  # what survived the last run is on disk

    @staticmethod
    def _first_offset(segment: Path) -> int:
        return int(segment.name[len(PREFIX) : -len(SUFFIX)])

    def append(self, payloads: list[bytes]) -> int:
        """Durably append records; returns the offset of the first. Offsets are consecutive."""
        first = self.write(payloads)
        self.sync()
        return first

    def write(self, payloads: list[bytes]) -> int:
        """Append records without waiting for the disk; returns the offset of the first. They are
        durable once a ``sync`` that began after this call returned has returned."""
        if not payloads:
            return self.next_offset
        with self._lock:
            if self._closed:
                raise WalCorrupted(f"the write-ahead log in {self.folder} is closed")
            first = self.next_offset
            if self._file is None or self._size >= self.segment_bytes:
                self._roll(first)
            assert self._file is not None
            chunks = []
            for i, payload in enumerate(payloads):
                chunks.append(HEADER.pack(first + i, len(payload), zlib.crc32(payload)))
                chunks.append(payload)
            record = b"".join(chunks)
            self._file.write(record)  # buffered: the next sync flushes it, with everything before it
            self._size += len(record)
            self.next_offset = first + len(payloads)
            return first

    def sync(self) -> int:
        """Make every record written so far durable (one fsync, however many writes it covers);
        returns the offset below which every record is now on disk. Safe from any thread, and
        while other threads write: what they add meanwhile waits for the next sync."""
        with self._sync_lock:  # one fsync at a time: who waited for it often finds its writes covered
            with self._lock:
                upto = self.next_offset
                if self._file is None or upto <= self.synced_offset:
                    return self.synced_offset
                self._file.flush()
                fd = os.dup(self._file.fileno())  # stays valid if a roll closes the file meanwhile
            try:
                started = time.perf_counter()
                os.fsync(fd)
                elapsed = time.perf_counter() - started
            finally:
                os.close(fd)
            with self._lock:
                self.syncs += 1
                self.sync_seconds += elapsed
                self.synced_offset = max(self.synced_offset, upto)
                return self.synced_offset

    def _roll(self, first: int, *, sync_old: bool = True, sync_folder: bool = True) -> None:
        if self._file is not None:
            self._file.flush()
            if sync_old:
                os.fsync(self._file.fileno())  # a sync after the roll no longer sees this segment
            self._file.close()
        segment = self.folder / f"{PREFIX}{first:020d}{SUFFIX}"
        self._file = segment.open("ab")
        self._size = 0
        self._segments.append(segment)
        if sync_folder:
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
                # Its records are committed: it needs no fsync, and the folder's comes below.
                removable.append(last)
                self._roll(self.next_offset, sync_old=False, sync_folder=False)
            for segment in removable:
                self._segments.remove(segment)
        for segment in removable:  # outside the lock: writes (requests) never wait for these
            segment.unlink()
        if removable:
            _fsync_dir(self.folder)
        return len(removable)

    def advance_to(self, offset: int) -> None:
        """Never hand out offsets below ``offset`` (the highest committed offset + 1, from the table)."""
        with self._lock:
            if offset > self.next_offset:
                self._roll(offset)
                self.next_offset = self.synced_offset = offset

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None
