"""The pipeline's dedupe window: remembered across restarts, bounded by count and age, compact."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ulid import ULID

from lakebench.pipeline.dedupe import MAX_SEGMENTS, DedupeWindow


def ids(n: int) -> list[str]:
    return [str(ULID()) for _ in range(n)]


def commit(window: DedupeWindow, batch: list[str], offset: int) -> int:
    window.record_commit(batch, offset, offset + len(batch) - 1)
    return offset + len(batch)


def test_pending_and_committed_ids_are_seen_and_others_not(tmp_path: Path) -> None:
    window = DedupeWindow(tmp_path)
    first, pending, unknown = ids(5), ids(3), ids(4)
    commit(window, first, 0)
    window.add_pending(pending)
    assert window.seen(first + pending + unknown) == [True] * 8 + [False] * 4
    assert window.seen([]) == []


def test_the_window_survives_a_restart_without_reading_the_table(tmp_path: Path) -> None:
    window = DedupeWindow(tmp_path)
    batch = ids(100)
    commit(window, batch, 0)
    reopened = DedupeWindow(tmp_path)
    assert all(reopened.seen(batch)) and reopened.committed_ids == 100
    assert not any(reopened.seen(ids(10)))


def test_the_window_keeps_at_least_the_latest_n_ids(tmp_path: Path) -> None:
    window = DedupeWindow(tmp_path, max_ids=100)
    batches = [ids(30) for _ in range(10)]
    offset = 0
    for batch in batches:
        offset = commit(window, batch, offset)
    assert 100 <= window.committed_ids < 100 + 30
    latest = [i for batch in batches[-3:] for i in batch]
    assert all(window.seen(latest))  # the newest 90 (and more) are remembered
    assert not any(window.seen(batches[0]))  # the oldest are forgotten
    assert DedupeWindow(tmp_path, max_ids=100).committed_ids == window.committed_ids  # and stay forgotten


def test_segments_older_than_the_age_limit_are_dropped(tmp_path: Path) -> None:
    window = DedupeWindow(tmp_path, max_age_s=3600)
    old, new = ids(10), ids(10)
    commit(window, old, 0)
    commit(window, new, 10)
    two_hours_ago = time.time() - 7200
    os.utime(tmp_path / "seg-00000000000000000000-00000000000000000009.npy", (two_hours_ago, two_hours_ago))
    reopened = DedupeWindow(tmp_path, max_age_s=3600)
    assert not any(reopened.seen(old)) and all(reopened.seen(new))


def test_many_commits_are_merged_into_few_segments(tmp_path: Path) -> None:
    window = DedupeWindow(tmp_path, max_ids=10_000)
    batches = [ids(10) for _ in range(200)]
    offset = 0
    for batch in batches:
        offset = commit(window, batch, offset)
    assert window.segments <= MAX_SEGMENTS
    assert len(list(tmp_path.glob("seg-*.npy"))) == window.segments
    assert all(window.seen([i for batch in batches for i in batch]))


def test_a_merge_interrupted_before_removing_its_inputs_is_resolved(tmp_path: Path) -> None:
    window = DedupeWindow(tmp_path)
    a, b = ids(5), ids(5)
    commit(window, a, 0)
    commit(window, b, 5)
    import numpy as np

    merged = np.union1d(np.array(a, dtype="S26"), np.array(b, dtype="S26"))
    np.save(tmp_path / "seg-00000000000000000000-00000000000000000009.npy", merged)  # inputs still there
    (tmp_path / ".seg-half-written.npy.tmp").write_bytes(b"torn")
    reopened = DedupeWindow(tmp_path)
    assert reopened.segments == 1 and all(reopened.seen(a + b))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg-00000000000000000000-00000000000000000009.npy"]


def test_a_replayed_commit_rewrites_its_own_segment(tmp_path: Path) -> None:
    window = DedupeWindow(tmp_path)
    batch = ids(8)
    commit(window, batch, 0)
    commit(window, batch, 0)  # the same offsets again, after a crash between segment and WAL cut
    assert window.segments == 1 and window.committed_ids == 8


def test_an_id_moving_from_pending_to_committed_is_never_unseen(tmp_path: Path) -> None:
    """The flusher commits while request threads ask: an acknowledged id must always be seen."""
    import threading

    window = DedupeWindow(tmp_path, max_ids=2_000)
    acknowledged: list[list[str]] = []
    done = threading.Event()
    misses = []

    def flusher() -> None:
        offset = 0
        for _ in range(150):
            batch = ids(20)
            window.add_pending(batch)
            acknowledged.append(batch)
            offset = commit(window, batch, offset)  # merges and evictions included
        done.set()

    def reader() -> None:
        while not done.is_set():
            for batch in acknowledged[-5:]:
                if not all(window.seen(batch)):
                    misses.append(batch)

    threads = [threading.Thread(target=flusher), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert misses == []


def test_a_few_ids_and_many_get_the_same_answers(tmp_path: Path) -> None:
    """A request of a few ids is probed one by one, a larger one with arrays: the same verdicts,
    whether an id is pending, in the merged base, in a recent segment, or unknown."""
    window = DedupeWindow(tmp_path, max_ids=10_000)
    offset = 0
    for _ in range(30):  # merged into the base
        offset = commit(window, ids(20), offset)
    base = ids(20)
    offset = commit(window, base, offset)
    window._rebuild()
    recent = ids(7)
    commit(window, recent, offset)  # a recent segment beside the base
    pending, unknown = ids(3), ids(8)
    inside = min(base)[:-1] + ("0" if min(base)[-1] != "0" else "1")  # within the known range, never taken
    unknown.append(inside if inside not in base + recent else str(ULID()))
    window.add_pending(pending)
    everything = base + recent + pending + unknown
    expected = [True] * (len(base) + len(recent) + len(pending)) + [False] * len(unknown)
    assert window.seen(everything) == expected  # many at once
    assert [window.seen([i])[0] for i in everything] == expected  # one at a time
    assert window.seen(recent[:2] + unknown[:2]) == [True, True, False, False]
