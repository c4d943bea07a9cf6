"""The pipeline's engine room: acknowledge durably, buffer, roll into Parquet, commit exactly once.

    submit(rows) -> dedupe by event_id -> WAL write -> group fsync -> in-memory buffer -> ack
    (the syncer thread: one fsync covers every write made while the previous one ran, so requests
    that arrive together share it; an acknowledgement still means "on disk")
    flusher thread: roll what is buffered when it reaches ``roll_bytes``, when its oldest event
    is ``roll_interval_s`` old, or after ``idle_s`` without new events (one batch a roll)
    flush: write key-sorted files named from the WAL offsets they hold, then one Iceberg commit
    that also records ``lakebench.wal.<writer-id> = <last offset>`` as a table property, then cut
    the WAL.

Crash safety: a crash before the commit replays the WAL into the same file names (idempotent);
a crash after the commit but before the WAL cut replays events whose offsets the table already
records, and the commit precondition (checked on fresh metadata) skips them.

Faults: a flush that fails transiently (a 5xx, a timeout, a lost commit race) is retried with
exponential back-off and jitter (tenacity) while events keep arriving into the log; a terminal
fault (a refused credential, a missing bucket, a bad setting) stops the flusher and the pipeline
refuses new events with the reason, which ``/healthz`` and the stats show, until it is restarted.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final, Literal

import msgspec
import orjson
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_random_exponential
from ulid import ULID

from lakebench.core.errors import TerminalError, TransientError, is_transient
from lakebench.core.logs import fields
from lakebench.core.models import Event, EventRow, Limits
from lakebench.core.process import LockHeld, release_pid_lock, take_pid_lock
from lakebench.core.validate import parse_event
from lakebench.index.publish import discard
from lakebench.lake.catalog import Lake
from lakebench.lake.layouts import get_layout
from lakebench.lake.writer import LakeWriter, WriterOptions
from lakebench.pipeline.dedupe import DedupeWindow
from lakebench.pipeline.foreign import ForeignAppends
from lakebench.pipeline.state import StateFolder, default_state_dir
from lakebench.pipeline.wal import WalCorrupted, WriteAheadLog

if TYPE_CHECKING:
    from pyiceberg.table import Table

log = logging.getLogger(__name__)
Status = Literal["accepted", "duplicate"]
RowHook = Callable[[list[EventRow]], None]
_ROW_ENCODER = msgspec.json.Encoder()  # a row is logged as a JSON array in FIELDS order
_ROW_DECODER = msgspec.json.Decoder(EventRow)


class Backpressure(TransientError):
    """The buffer is full; the client should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PipelineStopped(TerminalError):
    """The flusher met a fault retrying cannot fix; the pipeline takes no events until restarted."""


@dataclass(slots=True)
class PipelineHooks:
    """Observers of a flush's steps (metrics, indexes, and the crash tests, which stop the process
    between the steps). Each is called with the events of the flush, as rows."""

    files_written: list[RowHook] = field(default_factory=list)  # published, not committed
    committed: list[RowHook] = field(default_factory=list)  # committed, log not yet cut
    flushed: list[RowHook] = field(default_factory=list)  # all done: readers see them


COMMIT_TURN_PATIENCE_S: Final = 60.0  # the longest a worker waits for a sibling's commit to end


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    state_dir: Path | None = None  # None: a folder of its own for the lake (pipeline/state.py)
    layout: str = "lookup"
    roll_bytes: int = 64 << 20
    roll_interval_s: float = 5.0
    idle_s: float = 1.0
    max_buffer_bytes: int = 512 << 20
    limits: Limits = Limits()
    writer_id: str | None = None
    writer: WriterOptions = WriterOptions()
    dedupe_window: int = 1_000_000  # at least this many of the latest committed event ids are remembered
    dedupe_max_age_s: float | None = 7 * 86400.0  # ... and none older than this
    retry_max_wait_s: float = 10.0  # the longest pause between two attempts of a failing flush
    group_commit_delay_s: float = 0.0005  # the syncer's wait before an fsync, for more writes to share it
    commit_lock: Path | None = None  # pipelines sharing this file (a server's workers) commit one at a time


@dataclass(slots=True)
class PipelineStats:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    flushes: int = 0
    committed_events: int = 0
    committed_offset: int = -1
    last_commit_at: float | None = None
    last_error: str | None = None
    flush_retries: int = 0
    replayed: int = 0
    dead_letters: int = 0
    dead_letters_dropped: int = 0
    flush_seconds: list[float] = field(default_factory=list)
    acknowledged_requests: int = 0  # submits answered after their events were on disk


@dataclass(slots=True)
class _Buffer:
    rows: list[EventRow] = field(default_factory=list)
    first_offset: int = -1
    last_offset: int = -1
    bytes: int = 0
    oldest_at: float = 0.0
    newest_at: float = 0.0


class Pipeline:
    def __init__(self, lake: Lake, config: PipelineConfig = PipelineConfig()) -> None:
        self.lake = lake
        self.config = config
        self.state_dir = config.state_dir or default_state_dir(lake)
        known = (self.state_dir / "writer.id").read_text().strip() if (self.state_dir / "writer.id").exists() else None
        # Locked and bound to this lake before anything in it is read or written.
        self.state = StateFolder(self.state_dir, lake, f"lakebench.wal.{config.writer_id or known}")
        try:
            self.writer_id = config.writer_id or known or self._new_writer_id(self.state_dir)
            self.offset_property = f"lakebench.wal.{self.writer_id}"
            self.wal = WriteAheadLog(self.state_dir / "wal")
            self.dedupe = DedupeWindow(self.state_dir / "dedupe", config.dedupe_window, config.dedupe_max_age_s)
        except BaseException:
            self.state.release()
            raise
        self.stats = PipelineStats()
        self._writer = LakeWriter(lake, config.writer, get_layout(config.layout))
        self._lock = threading.Lock()  # guards the buffer, the id window and WAL order
        self._flush_lock = threading.Lock()  # one flush at a time
        self._buffer = _Buffer()
        self._retry: _Buffer | None = None  # the batch being committed, or whose commit failed
        self._retry_failed = False
        self._rolled_at = 0.0  # when the last commit attempt ended (time.monotonic)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.hooks = PipelineHooks()
        self.failure: str | None = None  # why the flusher stopped, when a terminal fault stopped it
        # Group commit: written to the log, waiting for an fsync (in offset order), and who waits.
        self._unsynced: deque[tuple[int, list[EventRow], int]] = deque()
        self._unsynced_bytes = 0
        self._durable = 0  # every offset below this is on disk and in the buffer
        self._sync_cond = threading.Condition()
        self._async_waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._syncer: threading.Thread | None = None
        self._syncer_waits = False  # for a write: a writer must wake it
        self._foreign: ForeignAppends | None = None  # set by start()

    @staticmethod
    def _new_writer_id(state_dir: Path) -> str:
        """A writer id kept beside its WAL, so a restarted process resumes as the same writer."""
        writer_id = str(ULID()).lower()
        (state_dir / "writer.id").write_text(writer_id + "\n")
        return writer_id

    # -- start / stop ---------------------------------------------------------------------------

    def start(self) -> None:
        """Recover: what the table already holds is skipped, the rest of the WAL is buffered again."""
        table = self.lake.table()
        committed = int(table.properties.get(self.offset_property, "-1"))
        self.stats.committed_offset = committed
        self.wal.advance_to(committed + 1)
        unlimited = Limits(max_body_bytes=1 << 62, max_attributes_bytes=1 << 62, max_attributes_depth=1 << 20)
        for offset, payload in self.wal.replay(after=committed):
            row = _logged_row(payload, unlimited)
            if row is None:
                raise WalCorrupted(f"WAL record {offset} in {self.wal.folder} no longer parses as an event")
            self.dedupe.add_pending([row.event_id])
            self._append_to_buffer([row], offset, len(payload))
            self.stats.replayed += 1
        self.wal.truncate(committed)
        self._foreign = ForeignAppends(self.lake, self.writer_id, table)
        self._durable = self.wal.next_offset
        self._syncer = threading.Thread(target=self._sync_loop, name="lakebench-wal-sync", daemon=True)
        self._syncer.start()
        self._thread = threading.Thread(target=self._run, name="lakebench-flusher", daemon=True)
        self._thread.start()

    def stop(self, flush: bool = True) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        with self._sync_cond:
            self._sync_cond.notify_all()
        if self._syncer is not None:
            self._syncer.join()  # it syncs what was written before it leaves
        with self._sync_cond:  # whoever still waits is answered: not acknowledged
            waiters, self._async_waiters = self._async_waiters, []
            self._sync_cond.notify_all()
        _wake_up(waiters, PipelineStopped("the pipeline stopped before these events were on disk"))
        try:
            if flush:
                self.flush()  # what fails to commit here stays in the WAL for the next start
        finally:
            self.wal.close()
            self.state.release()
            self._writer.close()

    # -- ingest ---------------------------------------------------------------------------------

    def admit(self) -> None:
        """Raise what ``submit`` would refuse any events with now (stopped, or backpressure)."""
        if self._stop.is_set():
            raise PipelineStopped("the pipeline is shutting down and takes no events")
        if self.failure is not None:
            raise PipelineStopped(f"the pipeline stopped committing and takes no events: {self.failure}")
        if self.buffered_bytes >= self.config.max_buffer_bytes:
            raise Backpressure(
                f"ingest buffer full ({self.buffered_bytes:,} of {self.config.max_buffer_bytes:,} bytes waiting "
                "for a commit)",
                retry_after=max(1, int(self.config.roll_interval_s)),
            )

    def submit(self, events: Sequence[Event | EventRow]) -> list[Status]:
        """Durably accept events; returns, per event, whether it was new or a duplicate of a known id.
        Returns once they are on disk (sharing an fsync with whatever else arrived meanwhile)."""
        statuses, end = self._take(events)
        with self._sync_cond:
            while self._durable < end:
                self._check_syncing()
                self._sync_cond.wait(timeout=1.0)
        self.stats.acknowledged_requests += 1
        return statuses

    async def submit_async(self, events: Sequence[Event | EventRow]) -> list[Status]:
        """``submit`` for an event loop: the wait for the disk holds no thread."""
        statuses, end = self._take(events)
        with self._sync_cond:
            durable = self._durable >= end
            if not durable:
                self._check_syncing()
                loop = asyncio.get_running_loop()
                future: asyncio.Future[None] = loop.create_future()
                self._async_waiters.append((end, loop, future))
        if not durable:
            await future
        self.stats.acknowledged_requests += 1
        return statuses

    def _take(self, events: Sequence[Event | EventRow]) -> tuple[list[Status], int]:
        """Dedupe and write to the log (not yet synced); the statuses, and the offset the caller's
        acknowledgement waits for (0: nothing new)."""
        self.admit()
        rows = [e.row() if isinstance(e, Event) else e for e in events]
        payloads = [_ROW_ENCODER.encode(r) for r in rows]
        statuses: list[Status] = []
        fresh: list[EventRow] = []
        fresh_payloads: list[bytes] = []
        end = 0
        with self._lock:
            seen_now: set[str] = set()
            known = self.dedupe.seen([r.event_id for r in rows])
            for row, payload, seen in zip(rows, payloads, known, strict=True):
                if seen or row.event_id in seen_now:
                    statuses.append("duplicate")
                    continue
                seen_now.add(row.event_id)
                statuses.append("accepted")
                fresh.append(row)
                fresh_payloads.append(payload)
            if len(fresh) < len(rows):
                # A duplicate may still be waiting for its fsync (a retry of a request in flight):
                # its answer waits for the same one as everything written before it.
                end = self.wal.next_offset
            if fresh:
                try:
                    first = self.wal.write(fresh_payloads)  # acknowledged once a sync covers it
                except BaseException as exc:  # a log written part-way: nothing may follow it
                    self._fail(exc)
                    raise PipelineStopped(f"the write-ahead log could not be written: {exc}") from exc
                self.dedupe.add_pending(seen_now)
                size = sum(len(p) for p in fresh_payloads)
                self._unsynced.append((first, fresh, size))
                self._unsynced_bytes += size
                end = first + len(fresh)
        if end <= self._durable:
            end = 0
        self.stats.accepted += len(fresh)
        self.stats.duplicates += len(rows) - len(fresh)
        if end and self._syncer_waits:  # (set under the condition before it looks for writes: never missed)
            with self._sync_cond:
                self._sync_cond.notify_all()
        return statuses, end

    def _check_syncing(self) -> None:
        if self.failure is not None:
            raise PipelineStopped(f"the pipeline stopped and takes no events: {self.failure}")
        if self._syncer is None or not self._syncer.is_alive():
            raise PipelineStopped("the pipeline is not running (start() it first, or it was stopped)")

    # -- group commit ---------------------------------------------------------------------------

    def _sync_loop(self) -> None:
        """fsync the log while writes wait for it; each sync acknowledges every write before it.

        Before each fsync the syncer lets ``group_commit_delay_s`` pass (as PostgreSQL's
        ``commit_delay``, MySQL's ``binlog_group_commit_sync_delay``): the requests that arrive
        meanwhile share the fsync. Without it, a busy event loop that hands the syncer one or
        two writes at a time paid an fsync and two thread hand-overs for each (bench/pipeline.py:
        half a millisecond took one-event requests from 4,500 to 6,200 a second on two workers,
        with half the fsyncs and a lower p99)."""
        delay = self.config.group_commit_delay_s
        while True:
            with self._sync_cond:
                self._syncer_waits = True
                while self.wal.next_offset <= self._durable and not self._stop.is_set():
                    self._sync_cond.wait()
                self._syncer_waits = False
                if self.wal.next_offset <= self._durable:
                    return  # stopping, and nothing waits
            if delay > 0:
                self._stop.wait(delay)  # a stop does not wait for it
            try:
                upto = self.wal.sync()
            except BaseException as exc:  # the log's state on disk is unknown: take no more events
                self._fail(exc)
                with self._sync_cond:
                    waiters, self._async_waiters = self._async_waiters, []
                    self._sync_cond.notify_all()
                _wake_up(waiters, PipelineStopped(f"the log could not be synced: {exc}"))
                return
            with self._lock:  # into the buffer in offset order, before anyone is told
                while self._unsynced and self._unsynced[0][0] < upto:
                    first, rows, size = self._unsynced.popleft()
                    self._unsynced_bytes -= size
                    self._append_to_buffer(rows, first, size)
            with self._sync_cond:
                self._durable = max(self._durable, upto)
                ready = [w for w in self._async_waiters if w[0] <= upto]
                if ready:
                    self._async_waiters = [w for w in self._async_waiters if w[0] > upto]
                self._sync_cond.notify_all()
            _wake_up(ready, None)
            if self._buffer.bytes >= self.config.roll_bytes:
                self._wake.set()

    def _append_to_buffer(self, rows: list[EventRow], first_offset: int, size: int) -> None:
        now = time.monotonic()
        buffer = self._buffer
        if not buffer.rows:
            buffer.first_offset = first_offset
            buffer.oldest_at = now
        buffer.rows.extend(rows)
        buffer.last_offset = first_offset + len(rows) - 1
        buffer.bytes += size
        buffer.newest_at = now

    @property
    def buffered_events(self) -> int:
        retry = self._retry
        return len(self._buffer.rows) + (len(retry.rows) if retry is not None else 0)

    @property
    def buffered_bytes(self) -> int:
        retry = self._retry
        return self._buffer.bytes + self._unsynced_bytes + (retry.bytes if retry is not None else 0)

    # -- rolling --------------------------------------------------------------------------------

    def _due(self) -> bool:
        if self._retry_failed:  # a batch whose commit failed waits: retry it (not one being committed now)
            return True
        buffer = self._buffer
        if not buffer.rows:
            return False
        now = time.monotonic()
        return (
            buffer.bytes >= self.config.roll_bytes
            or now - buffer.oldest_at >= self.config.roll_interval_s
            # idle: nothing new for idle_s while events could arrive (a commit may have held them up)
            or now - max(buffer.newest_at, self._rolled_at) >= self.config.idle_s
        )

    def _run(self) -> None:
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait_random_exponential(multiplier=0.2, max=self.config.retry_max_wait_s),  # full jitter
            stop=lambda _: self._stop.is_set(),
            sleep=self._pause,  # a stop interrupts the pause
            before_sleep=self._note_retry,
            reraise=True,
        )
        while not self._stop.is_set():
            self._wake.wait(timeout=0.05)
            self._wake.clear()
            if self._stop.is_set() or not self._due():
                continue
            try:
                retrying(self._roll)
            except Exception as exc:  # the WAL still holds every event: nothing acknowledged is lost
                if is_transient(exc):
                    continue  # stopping while a transient fault lasted: the WAL keeps the events
                self._fail(exc)
                return

    def _pause(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _note_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        self.stats.flush_retries += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}" if exc else None
        log.warning("flush failed (attempt %d), retrying: %s", state.attempt_number, self.stats.last_error)

    def _fail(self, exc: BaseException) -> None:
        self.failure = f"{type(exc).__name__}: {exc}"
        self.stats.last_error = self.failure
        log.error("flusher stopped by a fault retrying cannot fix: %s", self.failure, exc_info=exc)

    def flush(self) -> int:
        """Write and commit everything buffered now; returns the number of events committed.

        A batch whose commit failed is kept apart and retried first, alone, with the same log
        offsets — never merged with newer events — so the commit's precondition (this writer's
        recorded offset) recognises it if the failed attempt did commit after all.
        """
        if self.failure is not None:
            raise PipelineStopped(f"the pipeline stopped committing: {self.failure}")
        committed = 0
        with self._flush_lock:
            while batch := self._commit_one():
                committed += batch
        return committed

    def _roll(self) -> int:
        """The background roll: one batch (the failed one, or what is buffered now). What arrives
        while it commits waits for its own roll: committing it at once, and what arrives meanwhile
        after it, would make a steady stream a chain of small commits, each paying a commit's
        fixed cost (about a third of a second with the indexes)."""
        with self._flush_lock:
            return self._commit_one()

    def _commit_one(self) -> int:
        """Commit the failed batch, or else the buffer; the events committed (0: nothing buffered)."""
        with self._lock:
            if self._retry is None:
                if not self._buffer.rows:
                    return 0
                self._retry, self._buffer = self._buffer, _Buffer()
            batch = self._retry
        try:
            self._commit(batch)
        except BaseException:
            self._retry_failed = True  # the batch stays, to be retried first and alone
            raise
        finally:
            self._rolled_at = time.monotonic()
        with self._lock:
            self._retry, self._retry_failed = None, False
        self._after_commit(batch)
        return len(batch.rows)

    def _commit(self, buffer: _Buffer) -> None:
        started = time.perf_counter()
        first, last = buffer.first_offset, buffer.last_offset
        prefix = f"{self.writer_id}-{first:020d}-{last:020d}"
        ids = [r.event_id for r in buffer.rows]
        rows = buffer.rows
        foreign = self._foreign
        if foreign is not None:  # a retry another worker (or pipeline) took first: committed once, there
            elsewhere = foreign.committed_elsewhere(self.lake.table(), ids)
            if elsewhere:
                rows = [r for r in rows if r.event_id not in elsewhere]
                log.info(
                    "%d events of offsets %s-%s were committed by another writer; skipped", len(elsewhere), first, last
                )
        result = self._writer.write_files(rows, names=lambda n: f"{prefix}-{n:04d}.parquet")
        try:
            for hook in self.hooks.files_written:
                hook(buffer.rows)
            self.dedupe.record_commit(ids, first, last)  # before the commit
        except BaseException:
            discard(f.index for f in result.files if f.index is not None)  # the commit would have
            raise
        key = self.offset_property

        def already(table: Table) -> bool:
            if int(table.properties.get(key, "-1")) >= last:
                return True
            if foreign is not None:
                foreign.check_commit(table, [r.event_id for r in rows])
            return False

        with commit_turn(self.config.commit_lock):
            snapshot_id, done = self._writer.commit(
                result,
                summary={"lakebench.writer": self.writer_id, "lakebench.wal-offsets": f"{first}-{last}"},
                properties={key: str(last)},
                already_committed=already,
            )
        if not done:
            log.info("offsets %s-%s were already committed (replay after a crash); skipped", first, last)
        else:
            if foreign is not None:
                foreign.mine(snapshot_id)
            log.info(
                "commit",
                extra=fields(
                    writer=self.writer_id,
                    files=len(result.files),
                    events=len(buffer.rows),
                    bytes=result.parquet_bytes,
                    snapshot_id=snapshot_id,
                    offsets=f"{first}-{last}",
                    ms=round((time.perf_counter() - started) * 1000, 1),
                ),
            )
        self.stats.flushes += 1
        self.stats.committed_events += len(buffer.rows)
        self.stats.committed_offset = last
        self.stats.last_commit_at = time.time()
        self.stats.last_error = None
        self.stats.flush_seconds.append(time.perf_counter() - started)
        del self.stats.flush_seconds[:-1000]

    def _after_commit(self, buffer: _Buffer) -> None:
        """What follows a commit cannot undo it: a failure here is logged, never a reason to commit again."""
        rows = buffer.rows
        steps: list[tuple[str, Callable[[], object]]] = [
            *((f"hook {h!r}", functools.partial(h, rows)) for h in self.hooks.committed),
            ("the WAL cut", functools.partial(self.wal.truncate, buffer.last_offset)),  # a replay skips them anyway
            *((f"hook {h!r}", functools.partial(h, rows)) for h in self.hooks.flushed),
        ]
        for name, step in steps:
            try:
                step()
            except Exception as exc:
                self.stats.last_error = f"after commit, {name}: {type(exc).__name__}: {exc}"
                log.exception(
                    "%s failed after the commit of offsets %s-%s", name, buffer.first_offset, buffer.last_offset
                )


@contextmanager
def commit_turn(lock: Path | None, patience_s: float = COMMIT_TURN_PATIENCE_S) -> Iterator[None]:
    """Hold ``lock`` (an exclusive ``flock``, let go if the process dies) for one commit.

    Workers of one server roll at about the same moments; committing together, all but one lose
    the catalog's compare-and-swap and redo the commit on the winner's snapshot — the full-text
    documents applied again, the metadata written again — on the same cores. Taking turns, each
    commits once, on the latest snapshot. A sibling whose commit hangs holds no one up for longer
    than ``patience_s``: past it, this commit goes ahead without its turn (the compare-and-swap
    keeps it correct; other writers meet it anyway)."""
    if lock is None:
        yield
        return
    deadline = time.monotonic() + patience_s
    handle: IO[str] | None = None
    while handle is None:
        try:
            handle = take_pid_lock(lock)
        except LockHeld as held:
            if time.monotonic() >= deadline:
                why = "waited %.0f s for the commit turn (%s, PID %s): committing without it"
                log.warning(why, patience_s, lock, held.holder)
                break
            time.sleep(0.005)  # a poll: flock has no timeout
    try:
        yield
    finally:
        if handle is not None:
            release_pid_lock(handle)


def _wake_up(
    waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]], error: Exception | None
) -> None:
    """Settle the waiters' futures: one call into each event loop, however many wait there (each
    call into a loop from another thread is a write to its wake-up pipe)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for _, loop, future in waiters:
        by_loop.setdefault(loop, []).append(future)
    for loop, futures in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, futures, error)
        except RuntimeError:  # that loop is closed: nobody waits there any more
            log.warning("%d acknowledgements for a closed event loop were dropped", len(futures))


def _settle(futures: list[asyncio.Future[None]], error: Exception | None) -> None:
    for future in futures:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def _logged_row(payload: bytes, limits: Limits) -> EventRow | None:
    """A log record as a row: a JSON array (this version), or an event object (logs written before)."""
    if payload[:1] == b"[":
        try:
            return _ROW_DECODER.decode(payload)
        except msgspec.DecodeError:
            return None
    event = parse_event(orjson.loads(payload), limits)
    return event.row() if isinstance(event, Event) else None
