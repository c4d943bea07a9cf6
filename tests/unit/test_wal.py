from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakebench.pipeline.wal import WalCorrupted, WriteAheadLog


@pytest.fixture(autouse=True)
def close_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every log a test opened, so no file handle outlives its test."""
    opened: list[WriteAheadLog] = []
    original = WriteAheadLog.__init__

    def tracking(self: WriteAheadLog, *args: object, **kwargs: object) -> None:
        opened.append(self)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(WriteAheadLog, "__init__", tracking)
    yield
    for wal in opened:
        if hasattr(wal, "_lock"):
            wal.close()


def offsets(wal: WriteAheadLog, after: int = -1) -> list[int]:
    return [o for o, _ in wal.replay(after)]


def test_offsets_are_consecutive_across_segments_and_replay_in_order(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, segment_bytes=64)
    assert wal.append([b"a" * 40, b"b"]) == 0
    assert wal.append([b"c" * 100]) == 2
    assert wal.append([b"d"]) == 3
    assert list(wal.replay()) == [(0, b"a" * 40), (1, b"b"), (2, b"c" * 100), (3, b"d")]
    assert offsets(wal, after=1) == [2, 3]
    assert len(list(tmp_path.glob("wal-*.log"))) == 3


def test_truncate_drops_only_fully_committed_segments(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, segment_bytes=10)
    for payload in (b"x" * 20, b"y" * 20, b"z" * 20):
        wal.append([payload])
    wal.truncate(0)
    assert offsets(wal) == [1, 2]
    wal.truncate(2)
    assert offsets(wal) == []
    assert wal.append([b"after"]) == 3


def test_next_offset_survives_a_full_truncate_and_restart(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.append([b"a", b"b", b"c"])
    wal.truncate(2)
    wal.close()
    reopened = WriteAheadLog(tmp_path)
    assert reopened.next_offset == 3 and reopened.append([b"d"]) == 3


def test_advance_to_never_reuses_committed_offsets(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.advance_to(41)  # the table says offsets up to 40 are committed
    assert wal.append([b"x"]) == 41


def test_torn_tail_is_cut_and_earlier_records_survive(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.append([b"one", b"two"])
    wal.close()
    segment = next(tmp_path.glob("wal-*.log"))
    with segment.open("ab") as f:
        f.write(b"\x02\x00\x00\x00\x00\x00\x00\x00\xff\x00")  # a header cut short by a crash
    reopened = WriteAheadLog(tmp_path)
    assert list(reopened.replay()) == [(0, b"one"), (1, b"two")]
    assert reopened.append([b"three"]) == 2


def test_damage_before_the_tail_is_an_error(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path, segment_bytes=10)
    wal.append([b"a" * 20])
    wal.append([b"b" * 20])
    wal.close()
    first = sorted(tmp_path.glob("wal-*.log"))[0]
    data = bytearray(first.read_bytes())
    data[-1] ^= 0xFF  # flip a payload bit: the CRC no longer matches
    first.write_bytes(bytes(data))
    with pytest.raises(WalCorrupted, match="damaged"):
        WriteAheadLog(tmp_path)


def test_writers_on_many_threads_share_fsyncs_and_lose_nothing(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    barrier = threading.Barrier(8)
    durable: list[tuple[int, int]] = []  # (first offset written, offset the sync after it reached)

    def writer(n: int) -> None:
        barrier.wait()
        for i in range(50):
            first = wal.write([f"{n}:{i}".encode()])
            durable.append((first, wal.sync()))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(reached > first for first, reached in durable)  # a sync covers every write before it
    assert wal.syncs < 400  # writes made while an fsync ran shared the next one
    records = list(wal.replay())
    assert [o for o, _ in records] == list(range(400))
    assert sorted(p for _, p in records) == sorted(f"{n}:{i}".encode() for n in range(8) for i in range(50))


def test_a_write_is_not_durable_until_a_sync_after_it(tmp_path: Path) -> None:
    wal = WriteAheadLog(tmp_path)
    wal.write([b"a"])
    assert wal.synced_offset == 0
    assert wal.sync() == 1 and wal.syncs == 1
    wal.write([b"b", b"c"])
    assert wal.synced_offset == 1 and wal.next_offset == 3
    assert wal.sync() == 3 and wal.sync() == 3 and wal.syncs == 2  # nothing new: no second fsync
    wal.close()
    assert list(WriteAheadLog(tmp_path).replay()) == [(0, b"a"), (1, b"b"), (2, b"c")]
