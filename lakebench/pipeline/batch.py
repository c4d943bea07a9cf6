"""Batch ingest of files: every good record is written, every bad one is reported with its position.

``ingest_file`` writes into the lake's Iceberg table (the seed's "Option B", direct write);
``convert_file`` writes one sorted Parquet file and commits nothing (the seed's NDJSON -> Parquet step).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from lakebench.core.errors import InputError
from lakebench.core.ids import stable_event_id
from lakebench.core.models import Event, Limits
from lakebench.core.validate import Problem, Rejection, parse_event
from lakebench.generate.importers import SourceRecord, read_records
from lakebench.lake.catalog import Lake
from lakebench.lake.parquet import FileStats, ParquetOptions, write_events_parquet
from lakebench.lake.schema import events_to_arrow
from lakebench.lake.writer import LakeWriter, WriteResult
from lakebench.storage import open_store


@dataclass(slots=True)
class IngestReport:
    source: str
    format: str
    accepted: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    input_error: str | None = None  # the input stopped being readable part-way (records before it are kept)
    write: WriteResult | None = None
    parquet: FileStats | None = None

    @property
    def ok(self) -> bool:
        return not self.rejected and self.input_error is None


class _Validated:
    """Validates records as they stream past, remembering rejections and a mid-stream input error."""

    def __init__(self, records: Iterable[SourceRecord], limits: Limits, report: IngestReport) -> None:
        self._records = records
        self._limits = limits
        self._report = report

    def __iter__(self) -> Iterator[Event]:
        report = self._report
        try:
            for record in self._records:
                if record.raw is None:
                    report.rejected.append(Rejection(record.position, record.problems, record.unit))
                    continue
                parsed = parse_event(record.raw, self._limits)
                if isinstance(parsed, Event):
                    report.accepted += 1
                    if isinstance(record.raw, dict) and record.raw.get("event_id") is None:
                        parsed = _with_stable_id(parsed, record.raw)
                    yield parsed
                else:
                    report.rejected.append(Rejection(record.position, tuple(parsed), record.unit))
        except InputError as exc:
            report.input_error = str(exc)


def _with_stable_id(event: Event, raw: dict[str, Any]) -> Event:
    """A record that came without an ``event_id`` gets one derived from its content, the same on every
    run: ingesting a file twice adds nothing the second time (two identical records are one event)."""
    canonical = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS, default=str).decode("utf-8", "surrogatepass")
    return dataclasses.replace(event, event_id=stable_event_id(event.ts, "ingest", canonical))


def _check_readable(path: Path | str) -> None:
    if str(path) != "-" and not Path(path).is_file():
        raise InputError(f"input file {path} does not exist or is not a file")


def ingest_file(
    lake: Lake,
    path: Path | str,
    fmt: str = "ndjson",
    *,
    limits: Limits = Limits(),
    writer: LakeWriter | None = None,
    progress: Callable[[int], None] | None = None,
    summary: dict[str, str] | None = None,
) -> IngestReport:
    _check_readable(path)
    report = IngestReport(source=str(path), format=fmt)
    events = _Validated(read_records(path, fmt), limits, report)
    report.write = (writer or LakeWriter(lake)).write(
        events, summary={"lakebench.source": f"{fmt}:{Path(str(path)).name}", **(summary or {})}, progress=progress
    )
    return report


def convert_file(
    source: Path | str,
    target: str,
    fmt: str = "ndjson",
    *,
    limits: Limits = Limits(),
    options: ParquetOptions = ParquetOptions(),
) -> IngestReport:
    """NDJSON (or any importer format) -> one key-sorted Parquet file at a path or object URL."""
    _check_readable(source)
    report = IngestReport(source=str(source), format=fmt)
    events = list(_Validated(read_records(source, fmt), limits, report))
    parent, _, name = target.rstrip("/").rpartition("/")
    if not name.endswith(".parquet"):
        report.rejected.append(Rejection(0, (Problem("OUT", f"{target!r} must end in .parquet"),), "argument"))
        return report
    store = open_store(parent or ".")
    staging = store.staging_path(".parquet")
    try:
        report.parquet = write_events_parquet(events_to_arrow(events), staging, options)
        store.publish_file(name, staging)
    finally:
        staging.unlink(missing_ok=True)
        if staging.parent.name == ".staging":  # a local target: leave no empty staging folder beside it
            with contextlib.suppress(OSError):
                staging.parent.rmdir()
    return report
