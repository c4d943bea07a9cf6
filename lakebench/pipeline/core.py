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
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import orjson
from ulid import ULID

from lakebench.core.errors import TransientError
from lakebench.core.models import Event, Limits
from lakebench.core.validate import parse_event
from lakebench.lake.catalog import Lake
from lakebench.lake.layouts import get_layout
from lakebench.lake.writer import LakeWriter, WriterOptions
from lakebench.pipeline.wal import WalCorrupted, WriteAheadLog

log = logging.getLogger(__name__)
Status = Literal["accepted", "duplicate"]
FAULT_ENV = "LAKEBENCH_FAULT"  # fault injection for crash tests: after-files | after-commit


class Backpressure(TransientError):
    """The buffer is full; the client should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    state_dir: Path = Path(".lakebench/pipeline")
    layout: str = "lookup"
    roll_bytes: int = 64 << 20
    roll_interval_s: float = 5.0
    idle_s: float = 1.0
    max_buffer_bytes: int = 512 << 20
    limits: Limits = Limits()
    writer_id: str | None = None
    writer: WriterOptions = WriterOptions()


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
    replayed: int = 0
    flush_seconds: list[float] = field(default_factory=list)


@dataclass(slots=True)
class _Buffer:
    events: list[Event] = field(default_factory=list)
    first_offset: int = -1
    last_offset: int = -1
    bytes: int = 0
    oldest_at: float = 0.0
    newest_at: float = 0.0


def _fault(point: str) -> None:
    if os.environ.get(FAULT_ENV) == point:
        log.warning("fault injection: SIGKILL at %s", point)
        os.kill(os.getpid(), signal.SIGKILL)


class Pipeline:
    def __init__(self, lake: Lake, config: PipelineConfig = PipelineConfig()) -> None:
        self.lake = lake
        self.config = config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.writer_id = config.writer_id or self._stable_writer_id(config.state_dir)
        self.offset_property = f"lakebench.wal.{self.writer_id}"
        self.wal = WriteAheadLog(config.state_dir / "wal")
        self.stats = PipelineStats()
        self._writer = LakeWriter(lake, config.writer, get_layout(config.layout))
        self._lock = threading.Lock()  # guards the buffer, the id set and WAL order
        self._flush_lock = threading.Lock()  # one flush at a time
        self._buffer = _Buffer()
        self._ids: set[str] = set()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_commit: list[Callable[[list[Event]], None]] = []

    @staticmethod
    def _stable_writer_id(state_dir: Path) -> str:
        """A writer id kept beside its WAL, so a restarted process resumes as the same writer."""
        path = state_dir / "writer.id"
        if path.exists():
            return path.read_text().strip()
        writer_id = str(ULID()).lower()
        path.write_text(writer_id + "\n")
        return writer_id

    # -- start / stop ---------------------------------------------------------------------------

    def start(self) -> None:
        """Recover: what the table already holds is skipped, the rest of the WAL is buffered again."""
        table = self.lake.table()
        committed = int(table.properties.get(self.offset_property, "-1"))
        self.stats.committed_offset = committed
        self.wal.advance_to(committed + 1)
        if table.current_snapshot() is not None:
            ids = table.scan(selected_fields=("event_id",)).to_arrow()["event_id"]
            self._ids.update(ids.to_pylist())
        for offset, payload in self.wal.replay(after=committed):
            event = parse_event(orjson.loads(payload), Limits(max_body_bytes=1 << 62))
            if not isinstance(event, Event):
                raise WalCorrupted(f"WAL record {offset} in {self.wal.folder} no longer parses as an event: {event}")
            self._ids.add(event.event_id)
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

    # -- ingest ---------------------------------------------------------------------------------

    def submit(self, events: list[Event]) -> list[Status]:
        """Durably accept events; returns, per event, whether it was new or a duplicate of a known id."""
        if self._buffer.bytes >= self.config.max_buffer_bytes:
            raise Backpressure(
                f"ingest buffer full ({self._buffer.bytes:,} of {self.config.max_buffer_bytes:,} bytes waiting "
                "for a commit)",
                retry_after=max(1, int(self.config.roll_interval_s)),
            )
        statuses: list[Status] = []
        fresh: list[Event] = []
        payloads: list[bytes] = []
        with self._lock:
            seen_now: set[str] = set()
            for event in events:
                if event.event_id in self._ids or event.event_id in seen_now:
                    statuses.append("duplicate")
                    continue
                seen_now.add(event.event_id)
                statuses.append("accepted")
                fresh.append(event)
                payloads.append(orjson.dumps(event.to_json_dict()))
            if fresh:
                first = self.wal.append(payloads)  # durable before we acknowledge
                self._ids.update(seen_now)
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
        return len(self._buffer.events)

    # -- rolling --------------------------------------------------------------------------------

    def _due(self) -> bool:
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
        backoff = 0.0
        while not self._stop.is_set():
            self._wake.wait(timeout=0.05 if backoff == 0 else backoff)
            self._wake.clear()
            if self._stop.is_set():
                return
            if not self._due():
                continue
            try:
                self.flush()
                backoff = 0.0
            except Exception as exc:  # keep serving: the WAL still holds every event
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("flush failed; retrying")
                backoff = min(5.0, max(0.2, backoff * 2))

    def flush(self) -> int:
        """Write and commit everything buffered now; returns the number of events committed."""
        with self._flush_lock:
            with self._lock:
                buffer = self._buffer
                if not buffer.events:
                    return 0
                self._buffer = _Buffer()
            try:
                self._commit(buffer)
            except BaseException:
                with self._lock:  # put the events back in front, in offset order
                    newer = self._buffer
                    buffer.events.extend(newer.events)
                    buffer.bytes += newer.bytes
                    if newer.events:
                        buffer.last_offset, buffer.newest_at = newer.last_offset, newer.newest_at
                    self._buffer = buffer
                raise
            return len(buffer.events)

    def _commit(self, buffer: _Buffer) -> None:
        started = time.perf_counter()
        first, last = buffer.first_offset, buffer.last_offset
        prefix = f"{self.writer_id}-{first:020d}-{last:020d}"
        result = self._writer.write_files(buffer.events, names=lambda n: f"{prefix}-{n:04d}.parquet")
        _fault("after-files")
        key = self.offset_property

        def already(table: object) -> bool:
            return int(getattr(table, "properties", {}).get(key, "-1")) >= last

        _, committed = self._writer.commit(
            result,
            summary={"lakebench.writer": self.writer_id, "lakebench.wal-offsets": f"{first}-{last}"},
            properties={key: str(last)},
            already_committed=already,
        )
        _fault("after-commit")
        self.wal.truncate(last)
        self.stats.flushes += 1
        self.stats.committed_events += len(buffer.events)
        self.stats.committed_offset = last
        self.stats.last_commit_at = time.time()
        self.stats.flush_seconds.append(time.perf_counter() - started)
        del self.stats.flush_seconds[:-1000]
        if not committed:
            log.info("offsets %s-%s were already committed (replay after a crash); skipped", first, last)
        for callback in self.on_commit:
            callback(buffer.events)
