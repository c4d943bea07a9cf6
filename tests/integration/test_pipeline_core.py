"""The pipeline in process: rolling triggers, backpressure, layouts, dead letters, compaction."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest

from lakebench.core.config import Settings
from lakebench.core.errors import TransientError
from lakebench.core.models import Event, Limits
from lakebench.core.validate import Problem, Rejection
from lakebench.engines.lake_sql import LakeSqlEngine
from lakebench.lake.catalog import Lake
from lakebench.lake.compact import CompactOptions, compact
from lakebench.lake.schema import arrow_to_events
from lakebench.lake.writer import LakeWriter
from lakebench.pipeline.core import Backpressure, Pipeline, PipelineConfig, commit_turn
from lakebench.pipeline.dlq import DeadLetters, letter
from lakebench.pipeline.replay import replay_dead_letters
from tests.conftest import T0

MakeEvent = Callable[..., Event]


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[Lake]:
    with Lake(Settings(lake=str(tmp_path / "lake"))) as lake:
        yield lake


def run_pipeline(lake: Lake, tmp_path: Path, **config: object) -> Pipeline:
    pipeline = Pipeline(lake, PipelineConfig(state_dir=tmp_path / "state", **config))  # type: ignore[arg-type]
    pipeline.start()
    return pipeline


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.mark.parametrize(
    ("trigger", "config"),
    [
        ("size", {"roll_bytes": 1_000, "roll_interval_s": 3600, "idle_s": 3600}),
        ("interval", {"roll_bytes": 1 << 30, "roll_interval_s": 0.3, "idle_s": 3600}),
        ("inactivity", {"roll_bytes": 1 << 30, "roll_interval_s": 3600, "idle_s": 0.2}),
    ],
)
def test_each_roll_trigger_commits_on_its_own(
    lake: Lake, tmp_path: Path, make_event: MakeEvent, trigger: str, config: dict[str, float]
) -> None:
    pipeline = run_pipeline(lake, tmp_path, **config)
    try:
        pipeline.submit([make_event(entity_id=f"{trigger}-{i}", body="x" * 200) for i in range(10)])
        waited = wait_for(lambda: pipeline.stats.committed_events == 10)
        assert waited < 5
    finally:
        pipeline.stop()


def test_no_trigger_no_commit(lake: Lake, tmp_path: Path, make_event: MakeEvent) -> None:
    pipeline = run_pipeline(lake, tmp_path, roll_bytes=1 << 30, roll_interval_s=3600, idle_s=3600)
    try:
        pipeline.submit([make_event()])
        time.sleep(0.3)
        assert pipeline.stats.committed_events == 0 and pipeline.buffered_events == 1
    finally:
        pipeline.stop(flush=False)


def test_backpressure_past_the_buffer_bound(lake: Lake, tmp_path: Path, make_event: MakeEvent) -> None:
    pipeline = run_pipeline(
        lake, tmp_path, max_buffer_bytes=2_000, roll_bytes=1 << 30, roll_interval_s=3600, idle_s=3600
    )
    try:
        pipeline.submit([make_event(body="x" * 3_000)])
        with pytest.raises(Backpressure) as refused:
            pipeline.submit([make_event()])
        assert refused.value.retry_after >= 1
        pipeline.flush()
        assert pipeline.submit([make_event()]) == ["accepted"]  # room again after the commit
    finally:
        pipeline.stop()


@pytest.mark.parametrize(
    ("layout", "folder"), [("lookup", "ns_bucket="), ("hive-time", "year=2025/month=10/day=04"), ("flat", "")]
)
def test_layouts_write_their_paths_and_every_engine_reads_them(
    lake: Lake, tmp_path: Path, make_event: MakeEvent, layout: str, folder: str
) -> None:
    events = [make_event(ns=ns, entity_id=f"{ns} page") for ns in ("en.wikipedia.org", "github.com", "docs.python.org")]
    pipeline = run_pipeline(lake, tmp_path, layout=layout, roll_interval_s=3600, idle_s=3600)
    try:
        pipeline.submit(events)
        pipeline.flush()
    finally:
        pipeline.stop()
    keys = [o.key for o in lake.store.list("events/data/")]
    assert keys and all(k.startswith(f"events/data/{folder}") for k in keys), keys
    engine = LakeSqlEngine(lake)
    try:
        for event in events:
            assert engine.lookup(event.entity_ns, event.entity_id) == event
    finally:
        engine.close()


def test_dead_letters_replay_after_the_limit_is_raised(lake: Lake, make_event: MakeEvent) -> None:
    record = make_event(body="x" * 500).to_json_dict()
    letters = DeadLetters(lake.store)
    rejection = Rejection(3, (Problem("body", "over the limit"),), "line")
    key = letters.put([letter(rejection, "test", record=record), letter(rejection, "test", raw_text="{oops")]).key
    assert key is not None and len(letters.read(key)) == 2
    assert replay_dead_letters(lake, Limits(max_body_bytes=100)) == {"replayed": 0, "still_rejected": 2}
    assert replay_dead_letters(lake, Limits(max_body_bytes=1_000)) == {"replayed": 1, "still_rejected": 1}
    assert [e.event_id for e in arrow_to_events(lake.table().scan().to_arrow())] == [record["event_id"]]
    remaining = [entry for _, entry in letters.entries()]
    assert len(remaining) == 1 and remaining[0].raw_text == "{oops"


def test_compaction_merges_small_files_and_readers_see_the_same_data(lake: Lake, make_event: MakeEvent) -> None:
    events = [make_event(entity_id=f"k{i % 7}", ts=T0 + timedelta(minutes=i)) for i in range(40)]
    for i in range(0, 40, 5):
        LakeWriter(lake).write(events[i : i + 5])  # 8 small commits
    duplicate = events[3]
    LakeWriter(lake).write([duplicate], skip_known=False)  # the same event committed twice (e.g. by two writers)
    engine = LakeSqlEngine(lake)
    before = {f"k{i}": engine.lookup("en.wikipedia.org", f"k{i}") for i in range(7)}
    old_snapshot = lake.table().current_snapshot()
    report = compact(lake, CompactOptions(keep_last=2, orphan_grace=timedelta(0)))
    assert (report.files_before, report.files_after, report.written_files) == (9, 1, 1)
    assert report.duplicates_removed == 1 and report.expired_snapshots == 8
    engine.refresh()
    assert {f"k{i}": engine.lookup("en.wikipedia.org", f"k{i}") for i in range(7)} == before
    engine.close()
    rows = arrow_to_events(lake.table().scan().to_arrow())
    assert sorted(e.event_id for e in rows) == sorted(e.event_id for e in events)
    assert len(lake.table().snapshots()) == 2
    # The snapshot before compaction is kept (keep_last=2) and its files are still there to read.
    assert old_snapshot is not None
    old_rows = lake.table().scan(snapshot_id=old_snapshot.snapshot_id).to_arrow()
    assert old_rows.num_rows == 41
    assert len(report.deleted_files) == 0  # still referenced by the retained old snapshot
    second = compact(lake, CompactOptions(keep_last=1, orphan_grace=timedelta(0)))
    assert second.expired_snapshots == 1 and len(second.deleted_files) == 9
    assert lake.table().scan().to_arrow().num_rows == 40


def test_compaction_keeps_layout_folders_apart(lake: Lake, tmp_path: Path, make_event: MakeEvent) -> None:
    pipeline = run_pipeline(lake, tmp_path, layout="hive-time", roll_interval_s=3600, idle_s=3600)
    try:
        for day in (1, 1, 2, 2):
            pipeline.submit([make_event(ts=T0 + timedelta(days=day, minutes=len(str(time.time()))))])
            pipeline.flush()
    finally:
        pipeline.stop()
    report = compact(lake, CompactOptions(orphan_grace=timedelta(0)))
    assert report.written_files == 2
    folders = sorted({o.key.rsplit("/", 1)[0] for o in lake.store.list("events/data/")})
    assert folders == ["events/data/year=2025/month=10/day=05", "events/data/year=2025/month=10/day=06"]


def test_each_flush_commits_its_indexes_with_its_files(lake: Lake, tmp_path: Path, make_event: MakeEvent) -> None:
    from dataclasses import replace

    from lakebench.engines.lake_indexed import LakeIndexedEngine
    from lakebench.index import fulltext, keys
    from lakebench.index.publish import summary_of

    pipeline = run_pipeline(lake, tmp_path, roll_interval_s=3600, idle_s=3600)
    try:
        pipeline.submit([make_event(entity_id="Fresh Page", body="quokka sightings")])
        pipeline.flush()
        pipeline.submit([make_event(entity_id="Fresh Page", body="wombat sightings")])
        pipeline.flush()
    finally:
        pipeline.stop()
    summary = summary_of(lake.table())
    directory = keys.Directory.from_bytes(lake.store.get(summary[keys.SUMMARY_KEY]))
    data_files = sorted(o.key for o in lake.store.list("events/data/"))
    assert sorted(s.data_key for s in directory.segments) == data_files
    assert all(lake.store.exists(keys.segment_key("events/index", k, "events/data")) for k in data_files)
    reader = LakeIndexedEngine(Lake(replace(lake.settings, read_only=True)), cache_dir=tmp_path / "reader-cache")
    try:
        assert summary[fulltext.SUMMARY_KEY] and reader.notices == []
        assert [h.entity_id for h in reader.search("wombat", 5)] == ["Fresh Page"]
        assert reader.search("quokka", 5) == []  # the newer version replaced it
    finally:
        reader.close()


def test_failed_flushes_are_retried_and_lose_nothing(lake: Lake, tmp_path: Path, make_event: MakeEvent) -> None:
    from lakebench.storage.faulty import FaultyStore

    faulty = FaultyStore(lake.store, fail_writes=3)
    lake.store = faulty  # the object store is down for the first three writes
    pipeline = run_pipeline(lake, tmp_path, roll_interval_s=0.05, idle_s=0.05)
    try:
        events = [make_event(entity_id=f"retry {i}") for i in range(20)]
        assert pipeline.submit(events) == ["accepted"] * 20  # durable in the WAL, store or no store
        wait_for(lambda: pipeline.stats.committed_events == 20, timeout=30)
        assert faulty.failures == 3 and pipeline.stats.flush_retries == 3
        assert pipeline.stats.last_error is None  # cleared by the commit that succeeded
    finally:
        pipeline.stop()
    rows = arrow_to_events(lake.table().scan().to_arrow())
    ids = [e.event_id for e in rows]
    assert sorted(ids) == sorted(e.event_id for e in events)


def test_compaction_drops_duplicates_across_bins_and_big_files(lake: Lake, make_event: MakeEvent) -> None:
    events = [make_event(entity_id=f"dup {i}", body=os.urandom(1_000).hex()) for i in range(30)]
    small = [LakeWriter(lake).write(events[i : i + 10]).files[0] for i in range(0, 30, 10)]
    big = LakeWriter(lake).write(events, skip_known=False)  # every event committed a second time, in one larger file
    # Each small file is a bin of its own; the big file is no merge candidate: only its duplicates
    # (whose kept copies sit in three other files) make it be rewritten.
    target = int(max(f.stats.bytes for f in small) * 1.5)
    assert big.files[0].stats.bytes > target
    options = CompactOptions(target_file_bytes=target, small_fraction=0.9, orphan_grace=timedelta(0))
    report = compact(lake, options)
    assert report.duplicates_removed == 30 and report.merged_files == 1
    rows = arrow_to_events(lake.table().scan().to_arrow())
    ids = [e.event_id for e in rows]
    assert sorted(ids) == sorted(e.event_id for e in events)
    assert compact(lake, options).duplicates_removed == 0


def test_dead_letter_replay_is_idempotent_across_a_crash(lake: Lake, make_event: MakeEvent) -> None:
    from lakebench.core.errors import StorageUnavailable
    from lakebench.storage.faulty import FaultyStore

    records = []
    for i in range(4):
        record = make_event(entity_id=f"no id {i}", body="z" * 300).to_json_dict()
        del record["event_id"]  # the pipeline assigns ids; a replay must assign the same ones every time
        records.append(record)
    letters = DeadLetters(lake.store)
    rejection = Rejection(1, (Problem("body", "over the limit"),), "line")
    letters.put([letter(Rejection(i, rejection.problems, "line"), "test", record=r) for i, r in enumerate(records)])
    healthy = lake.store
    lake.store = FaultyStore(healthy, fail_writes=1, prefix="dlq/")  # crash after the commit, before the file goes
    with pytest.raises(StorageUnavailable):
        replay_dead_letters(lake, Limits(max_body_bytes=1_000))
    first = sorted(e.event_id for e in arrow_to_events(lake.table().scan().to_arrow()))
    assert len(first) == 4
    lake.store = healthy
    assert replay_dead_letters(lake, Limits(max_body_bytes=1_000)) == {"replayed": 4, "still_rejected": 0}
    again = sorted(e.event_id for e in arrow_to_events(lake.table().scan().to_arrow()))
    assert again == first  # the same ids, written once
    assert list(letters.entries()) == []


def test_a_failure_after_the_commit_never_commits_again(lake: Lake, tmp_path: Path, make_event: MakeEvent) -> None:
    from lakebench.core.errors import StorageUnavailable

    pipeline = run_pipeline(lake, tmp_path, roll_interval_s=3600, idle_s=3600)
    calls: list[int] = []

    def flaky_index(events: list[Event]) -> None:  # e.g. an index refresh that meets a store blip
        calls.append(len(events))
        if len(calls) == 1:
            raise StorageUnavailable("index store blip")

    pipeline.hooks.flushed.append(flaky_index)
    first, second = [make_event(entity_id=f"a{i}") for i in range(3)], [make_event(entity_id="b")]
    try:
        pipeline.submit(first)
        assert pipeline.flush() == 3  # committed; the failing hook is logged, not a reason to retry
        assert "index store blip" in (pipeline.stats.last_error or "")
        assert pipeline.submit(second) == ["accepted"], pipeline.stats
        assert pipeline.flush() == 1, (pipeline.stats, calls)
    finally:
        pipeline.stop()
    assert calls == [3, 1]
    rows = arrow_to_events(lake.table().scan().to_arrow())
    ids = [e.event_id for e in rows]
    assert sorted(ids) == sorted(e.event_id for e in first + second)


def test_a_commit_that_failed_is_retried_alone(
    lake: Lake, tmp_path: Path, make_event: MakeEvent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The commit went through but its answer was lost: the retry must recognise it by its offsets
    even though newer events arrived meanwhile."""
    from lakebench.core.errors import StorageUnavailable
    from lakebench.lake.writer import LakeWriter as Writer

    real_commit = Writer.commit
    lost = []

    def commit_then_lose_the_answer(self: Writer, *args: object, **kwargs: object) -> tuple[int, bool]:
        answer = real_commit(self, *args, **kwargs)  # type: ignore[arg-type]
        if not lost:
            lost.append(answer)
            raise StorageUnavailable("connection reset after the commit")
        return answer

    monkeypatch.setattr(Writer, "commit", commit_then_lose_the_answer)
    pipeline = run_pipeline(lake, tmp_path, roll_interval_s=3600, idle_s=3600)
    first, second = [make_event(entity_id=f"c{i}") for i in range(4)], [make_event(entity_id="d")]
    try:
        pipeline.submit(first)
        with pytest.raises(StorageUnavailable):
            pipeline.flush()
        pipeline.submit(second)
        pipeline.flush()  # (or the flusher, which retries a failed batch by itself, got there first)
        assert pipeline.stats.committed_events == 5 and pipeline.buffered_events == 0
    finally:
        pipeline.stop()
    rows = arrow_to_events(lake.table().scan().to_arrow())
    ids = [e.event_id for e in rows]
    assert sorted(ids) == sorted(e.event_id for e in first + second)  # each once


@pytest.mark.parametrize("delay", [0.0, 0.0005, 0.01], ids=["no delay", "default delay", "long delay"])
def test_requests_that_arrive_together_share_an_fsync(
    lake: Lake, tmp_path: Path, make_event: MakeEvent, delay: float
) -> None:
    pipeline = run_pipeline(lake, tmp_path, roll_interval_s=3600, idle_s=3600, group_commit_delay_s=delay)
    events = [make_event(entity_id=f"page {i}") for i in range(240)]
    try:
        threads = [
            threading.Thread(target=lambda chunk=chunk: pipeline.submit(chunk))
            for chunk in (events[i : i + 1] for i in range(0, 120))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        async def together() -> list[list[str]]:
            return await asyncio.gather(*(pipeline.submit_async([e]) for e in events[120:]))

        assert asyncio.run(together()) == [["accepted"]] * 120
        assert pipeline.stats.acknowledged_requests == 240
        assert pipeline.wal.syncs < 240  # shared: fewer fsyncs than acknowledgements
        logged = {row[0] for row in (msgspec.json.decode(p) for _, p in pipeline.wal.replay())}
        assert logged == {e.event_id for e in events}  # every acknowledged event is in the log
        assert pipeline.flush() == 240
    finally:
        pipeline.stop()


def test_an_event_two_writers_took_is_committed_once(lake: Lake, tmp_path: Path, make_event: MakeEvent) -> None:
    """A client's retry that reached another worker: each writer acknowledged it, the table holds it once —
    whether the other writer committed it before this one wrote its files, or in between."""
    first = run_pipeline(lake, tmp_path / "a", roll_interval_s=3600, idle_s=3600)
    second = run_pipeline(lake, tmp_path / "b", roll_interval_s=3600, idle_s=3600, retry_max_wait_s=0.1)
    early, late, own = make_event(entity_id="early"), make_event(entity_id="late"), make_event(entity_id="own")
    try:
        for pipeline in (first, second):
            assert pipeline.submit([early]) == ["accepted"]
        first.flush()
        second.submit([late, own])
        first.submit([late])
        # `second` writes its files, then `first` commits `late` before `second` commits.
        second.hooks.files_written.append(lambda _rows: first.flush() if first.buffered_events else None)
        with pytest.raises(TransientError):
            second.flush()  # its commit saw `late` committed meanwhile: refused, to be written again
        assert second.flush() == 3  # the retry: `early` and `late` dropped, `own` committed
        # A retry that comes after this writer read the append holding its first attempt.
        slow, unrelated = make_event(entity_id="slow retry"), make_event(entity_id="unrelated")
        assert first.submit([slow]) == ["accepted"]
        first.flush()
        second.submit([unrelated])
        second.flush()  # reads `first`'s append of `slow`
        assert second.submit([slow]) == ["accepted"]  # this writer never took it
        second.flush()
    finally:
        first.stop()
        second.stop()
    ids = [e.event_id for e in arrow_to_events(lake.table().scan().to_arrow())]
    assert sorted(ids) == sorted(e.event_id for e in (early, late, own, slow, unrelated))


def test_a_duplicate_of_an_event_in_flight_is_answered_once_that_event_is_on_disk(
    lake: Lake, tmp_path: Path, make_event: MakeEvent, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = run_pipeline(lake, tmp_path, roll_interval_s=3600, idle_s=3600)
    event = make_event()
    disk = threading.Event()
    sync = pipeline.wal.sync
    monkeypatch.setattr(pipeline.wal, "sync", lambda: (disk.wait(10), sync())[1])
    answers: list[list[str]] = []
    try:
        first = threading.Thread(target=lambda: answers.append(pipeline.submit([event])))
        first.start()
        wait_for(lambda: pipeline.wal.next_offset == 1)  # written, its fsync held back
        retry = threading.Thread(target=lambda: answers.append(pipeline.submit([event])))
        retry.start()
        retry.join(0.3)
        assert retry.is_alive() and not answers  # "duplicate" would claim a stored event: not yet
        disk.set()
        first.join(10)
        retry.join(10)
        assert sorted(answers) == [["accepted"], ["duplicate"]]
    finally:
        disk.set()
        pipeline.stop()


def test_a_steady_stream_is_committed_in_rolls_not_in_a_chain_of_commits(
    lake: Lake, tmp_path: Path, make_event: MakeEvent
) -> None:
    """What arrives while a roll commits waits for its own roll (here: the idle rule, counted from
    the end of that commit) instead of being committed at once after it."""
    pipeline = run_pipeline(lake, tmp_path, roll_interval_s=3600, idle_s=0.4)
    committing, release = threading.Event(), threading.Event()
    ends: list[float] = []
    starts: list[float] = []

    def slow_commit(rows: object) -> None:
        starts.append(time.monotonic())
        committing.set()
        release.wait(10)

    pipeline.hooks.files_written.append(slow_commit)
    pipeline.hooks.committed.append(lambda rows: ends.append(time.monotonic()))
    try:
        pipeline.submit([make_event(entity_id="first")])
        assert committing.wait(10)  # the idle rule rolled it; its commit is held
        pipeline.submit([make_event(entity_id="during")])  # arrives while it commits
        time.sleep(0.5)  # longer than idle_s since "during" arrived: idle by the event alone
        release.set()
        wait_for(lambda: pipeline.stats.committed_events == 2)
        assert len(starts) == 2 and len(ends) == 2  # two rolls, one event each
        assert starts[1] - ends[0] >= 0.35  # the second waited idle_s after the first commit ended
    finally:
        release.set()
        pipeline.stop()


def test_an_explicit_flush_commits_everything_buffered(lake: Lake, tmp_path: Path, make_event: MakeEvent) -> None:
    """POST /v1/flush and stop: everything taken before and during the flush is committed."""
    pipeline = run_pipeline(lake, tmp_path, roll_interval_s=3600, idle_s=3600)
    late = make_event(entity_id="late")
    sent: list[list[str]] = []
    pipeline.hooks.files_written.append(lambda rows: None if sent else sent.append(pipeline.submit([late])))
    try:
        pipeline.submit([make_event(entity_id="early")])
        assert pipeline.flush() == 2  # "late" came during the first commit, and was committed too
        assert sent == [["accepted"]]
        assert pipeline.buffered_events == 0
    finally:
        pipeline.stop()


def test_pipelines_sharing_a_commit_lock_take_turns(
    lake: Lake, tmp_path: Path, make_event: MakeEvent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server's workers commit one at a time: none starts its commit while another's is under way."""
    lock = tmp_path / "commit.lock"
    pipelines = [
        run_pipeline(lake, tmp_path / name, roll_interval_s=3600, idle_s=3600, commit_lock=lock) for name in "ab"
    ]
    inside: list[str] = []
    overlaps: list[tuple[str, str]] = []
    real_commit = LakeWriter.commit

    def watched(self: LakeWriter, *args: object, **kwargs: object) -> tuple[int, bool]:
        name = threading.current_thread().name
        if inside:
            overlaps.append((inside[0], name))
        inside.append(name)
        try:
            time.sleep(0.2)  # a commit long enough for the other to arrive meanwhile
            return real_commit(self, *args, **kwargs)  # type: ignore[arg-type]
        finally:
            inside.remove(name)

    try:
        for n, pipeline in enumerate(pipelines):
            pipeline.submit([make_event(entity_id=f"e{n}-{i}") for i in range(20)])
        monkeypatch.setattr(LakeWriter, "commit", watched)
        flushes = [threading.Thread(target=p.flush, name=f"flush-{n}") for n, p in enumerate(pipelines)]
        for t in flushes:
            t.start()
        for t in flushes:
            t.join(30)
        assert not overlaps
        assert [p.stats.committed_events for p in pipelines] == [20, 20]
    finally:
        for pipeline in pipelines:
            pipeline.stop()
    assert lake.table().scan().to_arrow().num_rows == 40


def test_a_commit_turn_held_too_long_is_not_waited_for_forever(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A sibling whose commit hangs holds the others up for ``patience_s`` at most."""

    lock = tmp_path / "commit.lock"
    with lock.open("a") as sibling:
        fcntl.flock(sibling.fileno(), fcntl.LOCK_EX)  # another process's turn, never ending
        started = time.monotonic()
        with commit_turn(lock, patience_s=0.3):
            waited = time.monotonic() - started
        assert 0.3 <= waited < 5
        assert "committing without it" in caplog.text
        fcntl.flock(sibling.fileno(), fcntl.LOCK_UN)
    # Free again: taken at once, and held (another open of the file cannot take it meanwhile).
    with commit_turn(lock, patience_s=0.3), lock.open("a") as other, pytest.raises(BlockingIOError):
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
