"""The pipeline's engine room: acknowledge durably, buffer, roll into Parquet, commit exactly once.

    submit(events) -> dedupe by event_id -> WAL append + fsync -> in-memory buffer -> ack
    flusher thread: roll when the buffer reaches ``roll_bytes``, when its oldest event is
    ``roll_interval_s`` old, or after ``idle_s`` without new events
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

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import orjson
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_random_exponential
from ulid import ULID

from lakebench.core.errors import TerminalError, TransientError, is_transient
from lakebench.core.logs import fields
from lakebench.core.models import Event, Limits
from lakebench.core.validate import parse_event
from lakebench.index.publish import discard
from lakebench.lake.catalog import Lake
from lakebench.lake.layouts import get_layout
from lakebench.lake.writer import LakeWriter, WriterOptions
from lakebench.pipeline.dedupe import DedupeWindow
from lakebench.pipeline.state import StateFolder, default_state_dir
from lakebench.pipeline.wal import WalCorrupted, WriteAheadLog

log = logging.getLogger(__name__)
Status = Literal["accepted", "duplicate"]


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
    between the steps). Each is called with the events of the flush."""

    files_written: list[Callable[[list[Event]], None]] = field(default_factory=list)  # published, not committed
    committed: list[Callable[[list[Event]], None]] = field(default_factory=list)  # committed, log not yet cut
    flushed: list[Callable[[list[Event]], None]] = field(default_factory=list)  # all done: readers see them


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


@dataclass(slots=True)
class _Buffer:
    events: list[Event] = field(default_factory=list)
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
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.hooks = PipelineHooks()
        self.failure: str | None = None  # why the flusher stopped, when a terminal fault stopped it

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
            event = parse_event(orjson.loads(payload), unlimited)
            if not isinstance(event, Event):
                raise WalCorrupted(f"WAL record {offset} in {self.wal.folder} no longer parses as an event: {event}")
            self.dedupe.add_pending([event.event_id])
            self._append_to_buffer([event], offset, [len(payload)])
            self.stats.replayed += 1
        self.wal.truncate(committed)
        self._thread = threading.Thread(target=self._run, name="lakebench-flusher", daemon=True)
        self._thread.start()

    def stop(self, flush: bool = True) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
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
        if self.failure is not None:
            raise PipelineStopped(f"the pipeline stopped committing and takes no events: {self.failure}")
        if self.buffered_bytes >= self.config.max_buffer_bytes:
            raise Backpressure(
                f"ingest buffer full ({self.buffered_bytes:,} of {self.config.max_buffer_bytes:,} bytes waiting "
                "for a commit)",
                retry_after=max(1, int(self.config.roll_interval_s)),
            )

    def submit(self, events: list[Event]) -> list[Status]:
        """Durably accept events; returns, per event, whether it was new or a duplicate of a known id."""
        self.admit()
        statuses: list[Status] = []
        fresh: list[Event] = []
        payloads: list[bytes] = []
        with self._lock:
            seen_now: set[str] = set()
            known = self.dedupe.seen([e.event_id for e in events])
            for event, seen in zip(events, known, strict=True):
                if seen or event.event_id in seen_now:
                    statuses.append("duplicate")
                    continue
                seen_now.add(event.event_id)
                statuses.append("accepted")
                fresh.append(event)
                payloads.append(orjson.dumps(event.to_json_dict()))
            if fresh:
                first = self.wal.append(payloads)  # durable before we acknowledge
                self.dedupe.add_pending(seen_now)
                self._append_to_buffer(fresh, first, [len(p) for p in payloads])
        self.stats.accepted += len(fresh)
        self.stats.duplicates += len(events) - len(fresh)
        if self._buffer.bytes >= self.config.roll_bytes:
            self._wake.set()
        return statuses

    def _append_to_buffer(self, events: list[Event], first_offset: int, sizes: list[int]) -> None:
        now = time.monotonic()
        buffer = self._buffer
        if not buffer.events:
            buffer.first_offset = first_offset
            buffer.oldest_at = now
        buffer.events.extend(events)
        buffer.last_offset = first_offset + len(events) - 1
        buffer.bytes += sum(sizes)
        buffer.newest_at = now

    @property
    def buffered_events(self) -> int:
        retry = self._retry
        return len(self._buffer.events) + (len(retry.events) if retry is not None else 0)

    @property
    def buffered_bytes(self) -> int:
        retry = self._retry
        return self._buffer.bytes + (retry.bytes if retry is not None else 0)

    # -- rolling --------------------------------------------------------------------------------

    def _due(self) -> bool:
        if self._retry_failed:  # a batch whose commit failed waits: retry it (not one being committed now)
            return True
        buffer = self._buffer
        if not buffer.events:
            return False
        now = time.monotonic()
        return (
            buffer.bytes >= self.config.roll_bytes
            or now - buffer.oldest_at >= self.config.roll_interval_s
            or now - buffer.newest_at >= self.config.idle_s
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
                retrying(self.flush)
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
            while True:
                with self._lock:
                    if self._retry is None:
                        if not self._buffer.events:
                            return committed
                        self._retry, self._buffer = self._buffer, _Buffer()
                    batch = self._retry
                try:
                    self._commit(batch)
                except BaseException:
                    self._retry_failed = True  # the batch stays, to be retried first and alone
                    raise
                with self._lock:
                    self._retry, self._retry_failed = None, False
                committed += len(batch.events)
                self._after_commit(batch)

    def _commit(self, buffer: _Buffer) -> None:
        started = time.perf_counter()
        first, last = buffer.first_offset, buffer.last_offset
        prefix = f"{self.writer_id}-{first:020d}-{last:020d}"
        result = self._writer.write_files(buffer.events, names=lambda n: f"{prefix}-{n:04d}.parquet")
        try:
            for hook in self.hooks.files_written:
                hook(buffer.events)
            self.dedupe.record_commit([e.event_id for e in buffer.events], first, last)  # before the commit
        except BaseException:
            discard(f.index for f in result.files if f.index is not None)  # the commit would have
            raise
        key = self.offset_property

        def already(table: object) -> bool:
            return int(getattr(table, "properties", {}).get(key, "-1")) >= last

        snapshot_id, done = self._writer.commit(
            result,
            summary={"lakebench.writer": self.writer_id, "lakebench.wal-offsets": f"{first}-{last}"},
            properties={key: str(last)},
            already_committed=already,
        )
        if not done:
            log.info("offsets %s-%s were already committed (replay after a crash); skipped", first, last)
        else:
            log.info(
                "commit",
                extra=fields(
                    writer=self.writer_id,
                    files=len(result.files),
                    events=len(buffer.events),
                    bytes=result.parquet_bytes,
                    snapshot_id=snapshot_id,
                    offsets=f"{first}-{last}",
                    ms=round((time.perf_counter() - started) * 1000, 1),
                ),
            )
        self.stats.flushes += 1
        self.stats.committed_events += len(buffer.events)
        self.stats.committed_offset = last
        self.stats.last_commit_at = time.time()
        self.stats.last_error = None
        self.stats.flush_seconds.append(time.perf_counter() - started)
        del self.stats.flush_seconds[:-1000]

    def _after_commit(self, buffer: _Buffer) -> None:
        """What follows a commit cannot undo it: a failure here is logged, never a reason to commit again."""
        events = buffer.events
        steps: list[tuple[str, Callable[[], object]]] = [
            *((f"hook {h!r}", functools.partial(h, events)) for h in self.hooks.committed),
            ("the WAL cut", functools.partial(self.wal.truncate, buffer.last_offset)),  # a replay skips them anyway
            *((f"hook {h!r}", functools.partial(h, events)) for h in self.hooks.flushed),
        ]
        for name, step in steps:
            try:
                step()
            except Exception as exc:
                self.stats.last_error = f"after commit, {name}: {type(exc).__name__}: {exc}"
                log.exception(
                    "%s failed after the commit of offsets %s-%s", name, buffer.first_offset, buffer.last_offset
                )
