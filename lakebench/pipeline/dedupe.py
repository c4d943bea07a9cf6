"""Which event ids a pipeline has already taken: a bounded window kept with its state.

A retry of an acknowledged event must be answered ``duplicate``, not written twice. The pipeline
cannot hold every id the table ever saw (nor scan the table at every start), so it remembers:

- *pending*: ids acknowledged and still in the write-ahead log (they are replayed from it);
- *committed*: the ids of its recent commits, in segment files under ``<state>/dedupe/`` — one
  per flush, a sorted array of ULIDs named by the log offsets it covers, written (and fsync'd)
  before the commit it describes, so a crash never leaves a committed id out of the window.

The window keeps at least the last ``max_ids`` committed ids and drops segments older than
``max_age_s``. Segments are merged in pairs of neighbours (never past an eighth of the window) so
there are few of them; eviction drops whole segments, oldest first. A start reads the segment
files (26 bytes an id), never the table. Duplicates outside the window — or between several
pipeline processes — are dropped by ``lakebench compact``.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

ID_DTYPE: Final = "S26"  # a ULID's 26 Crockford characters
MAX_SEGMENTS: Final = 24
RECENT_SEGMENTS: Final = 4  # segments probed one by one before they are folded into the sorted base
_NAME = re.compile(r"^seg-(\d{20})-(\d{20})\.npy$")


@dataclass(slots=True)
class _Segment:
    first: int  # the WAL offsets it covers
    last: int
    written_at: float
    ids: np.ndarray  # sorted

    @property
    def path_name(self) -> str:
        return f"seg-{self.first:020d}-{self.last:020d}.npy"


def _sorted_ids(ids: list[str]) -> np.ndarray:
    return np.unique(np.array(ids, dtype=ID_DTYPE))


def _write(folder: Path, segment: _Segment) -> None:
    """Atomically: a temporary file, fsync'd, renamed into place, folder fsync'd. Its mtime is the
    segment's time, so its age survives restarts and merges."""
    target = folder / segment.path_name
    tmp = folder / f".{segment.path_name}.tmp"
    with tmp.open("wb") as f:
        np.save(f, segment.ids, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.utime(tmp, (segment.written_at, segment.written_at))
    os.replace(tmp, target)
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DedupeWindow:
    """Thread-safe: ``seen``/``add_pending`` (request threads) and ``record_commit`` (the flusher)
    change and read the window under one lock; files are written outside it. One flush at a time
    calls ``record_commit``."""

    def __init__(self, folder: Path, max_ids: int = 1_000_000, max_age_s: float | None = 7 * 86400) -> None:
        self.folder = folder
        self.max_ids = max(1, max_ids)
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._pending: set[str] = set()
        self._segments: list[_Segment] = []
        # What ``seen`` probes: one sorted array of the window's ids as of the last rebuild (it may
        # still hold ids evicted since: remembering more is never wrong), and the segments committed
        # since — a few searches a request, whatever the number of segments.
        self._base = np.array([], dtype=ID_DTYPE)
        self._recent: list[np.ndarray] = []
        folder.mkdir(parents=True, exist_ok=True)
        self._load()
        self._rebuild()

    def _load(self) -> None:
        found: list[_Segment] = []
        for path in self.folder.iterdir():
            match = _NAME.match(path.name)
            if match is None:
                if path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)  # a write that did not finish
                continue
            ids = np.load(path, allow_pickle=False)
            found.append(_Segment(int(match.group(1)), int(match.group(2)), path.stat().st_mtime, ids))
        found.sort(key=lambda s: (s.first, -s.last))
        for segment in found:  # a merge that crashed before deleting its inputs: keep the merged one
            if self._segments and segment.last <= self._segments[-1].last:
                (self.folder / segment.path_name).unlink(missing_ok=True)
                continue
            self._segments.append(segment)
        self._evict()

    # -- asking ---------------------------------------------------------------------------------

    def seen(self, ids: list[str]) -> list[bool]:
        """For each id: acknowledged before (pending or in the committed window)?"""
        if not ids:
            return []
        if len(ids) <= _SMALL_PROBE:  # a request of a few events: no arrays to build
            with self._lock:
                arrays = [a for a in (self._base, *self._recent) if len(a)]
                return [i in self._pending or any(_holds(a, i) for a in arrays) for i in ids]
        probe = np.array(ids, dtype=ID_DTYPE)
        found = np.zeros(len(ids), dtype=bool)
        with self._lock:  # an id moving from pending to a segment is in one or the other, never neither
            for known in (self._base, *self._recent):
                if len(known) == 0:
                    continue
                at = np.searchsorted(known, probe)
                found |= known[np.minimum(at, len(known) - 1)] == probe
            return [bool(f) or i in self._pending for f, i in zip(found, ids, strict=True)]

    def _rebuild(self) -> None:
        """Fold the segments into one sorted array (a merge of sorted runs: timsort's)."""
        with self._lock:
            arrays = [s.ids for s in self._segments]
        base = np.concatenate(arrays) if arrays else np.array([], dtype=ID_DTYPE)
        base.sort(kind="stable")
        with self._lock:
            self._base, self._recent = base, []

    def add_pending(self, ids: set[str] | list[str]) -> None:
        """Ids acknowledged (in the write-ahead log), not committed yet."""
        with self._lock:
            self._pending.update(ids)

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def committed_ids(self) -> int:
        return sum(len(s.ids) for s in self._segments)

    @property
    def segments(self) -> int:
        return len(self._segments)

    # -- changing -------------------------------------------------------------------------------

    def record_commit(self, ids: list[str], first: int, last: int) -> None:
        """Before a commit of the log offsets ``first..last``: its ids become part of the window."""
        segment = _Segment(first, last, time.time(), _sorted_ids(ids))
        _write(self.folder, segment)
        with self._lock:
            covered = [s for s in self._segments if s.first >= first and s.last <= last]
            kept = [s for s in self._segments if not (s.first >= first and s.last <= last)]
            self._segments = sorted([*kept, segment], key=lambda s: s.first)
            self._recent.append(segment.ids)
            self._pending.difference_update(ids)
        for old in covered:  # an earlier attempt at these offsets (a replay): its file goes too
            if old.path_name != segment.path_name:
                (self.folder / old.path_name).unlink(missing_ok=True)
        self._merge()
        self._evict()
        if len(self._recent) > RECENT_SEGMENTS:
            self._rebuild()

    def _merge(self) -> None:
        cap = max(1, self.max_ids // 8)
        while len(self._segments) > MAX_SEGMENTS:
            segments = self._segments
            pairs = [
                (len(a.ids) + len(b.ids), i)
                for i, (a, b) in enumerate(itertools.pairwise(segments))
                if len(a.ids) + len(b.ids) <= cap
            ]
            if not pairs:
                return
            _, i = min(pairs)
            a, b = segments[i], segments[i + 1]
            merged = _Segment(a.first, b.last, max(a.written_at, b.written_at), np.union1d(a.ids, b.ids))
            _write(self.folder, merged)  # then the inputs go: a crash in between is resolved by _load
            with self._lock:
                self._segments = [*segments[:i], merged, *segments[i + 2 :]]
            for old in (a, b):
                (self.folder / old.path_name).unlink(missing_ok=True)

    def _evict(self) -> None:
        now = time.time()
        while self._segments:
            oldest = self._segments[0]
            too_many = self.committed_ids - len(oldest.ids) >= self.max_ids
            too_old = self.max_age_s is not None and now - oldest.written_at > self.max_age_s
            if not (too_many or too_old):
                return
            with self._lock:
                self._segments = self._segments[1:]
            (self.folder / oldest.path_name).unlink(missing_ok=True)


_SMALL_PROBE: Final = 8


def _holds(known: np.ndarray[Any, Any], event_id: str) -> bool:
    """Whether the sorted array ``known`` (of ``ID_DTYPE``) holds ``event_id``, compared as the array
    path compares it: ASCII (anything else raises, as there), cut to the dtype's 26 bytes."""
    probe = event_id.encode("ascii")[:26]
    if probe < known[0] or probe > known[-1]:  # ULIDs begin with their time: a new one is past them all
        return False
    at = int(known.searchsorted(probe))
    return bool(known[at] == probe)
