"""The lake writer, read back by independent readers, on a folder and on the S3-protocol server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pyarrow.parquet as pq
import pytest
from ulid import ULID

from lakebench.core.config import Settings
from lakebench.core.models import Event
from lakebench.engines.lake_sql import LakeSqlEngine
from lakebench.generate.synthetic import GeneratorSpec, generate
from lakebench.lake.catalog import Lake
from lakebench.lake.schema import arrow_to_events
from lakebench.lake.writer import LakeWriter, WriterOptions
from tests.conftest import T0

MakeEvent = Callable[..., Event]


def scan_all(lake: Lake) -> list[Event]:
    """pyiceberg's own scan: a reader independent of the lake-sql engine."""
    return arrow_to_events(lake.table().scan().to_arrow())


def test_iceberg_scan_returns_exactly_the_events_written(any_settings: Settings) -> None:
    events = list(generate(GeneratorSpec(count=120, avg_size_kb=3, seed=9)))
    lake = Lake(any_settings)
    result = LakeWriter(lake, WriterOptions(target_file_bytes=100_000)).write(events)
    assert result.events == 120 and len(result.files) > 1  # several files, one commit
    assert len(lake.table().snapshots()) == 1
    read = scan_all(lake)
    assert sorted(read, key=lambda e: e.event_id) == sorted(events, key=lambda e: e.event_id)


def test_duckdb_iceberg_scan_agrees(local_settings: Settings, make_event: MakeEvent) -> None:
    import duckdb

    from lakebench.engines.duck import connect

    lake = Lake(local_settings)
    events = [make_event(entity_id=f"k{i}") for i in range(50)]
    LakeWriter(lake).write(events)
    con = connect(local_settings)
    rows = con.execute(
        "SELECT event_id FROM iceberg_scan(?) ORDER BY event_id", [lake.table().metadata_location]
    ).fetchall()
    assert [r[0] for r in rows] == sorted(e.event_id for e in events)
    assert isinstance(con, duckdb.DuckDBPyConnection)


def test_files_are_ulid_named_sorted_zstd_parquet_under_events(local_settings: Settings) -> None:
    lake = Lake(local_settings)
    result = LakeWriter(lake).write(generate(GeneratorSpec(count=200, avg_size_kb=20, seed=4)))
    (written,) = result.files
    prefix, name = written.key.rsplit("/", 1)
    assert prefix == "events/data" and ULID.from_str(name.removesuffix(".parquet"))
    path = written.url.removeprefix("file://")
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups > 1  # small row groups for point lookups
    assert meta.row_group(0).column(6).compression == "ZSTD"
    table = pq.read_table(path)
    keys = list(
        zip(table["entity_ns"].to_pylist(), table["entity_id"].to_pylist(), table["ts"].to_pylist(), strict=True)
    )
    assert keys == sorted(keys)
    assert meta.schema.to_arrow_schema().field("entity_id").metadata[b"PARQUET:field_id"] == b"3"


def test_lookup_returns_the_latest_version(any_settings: Settings, make_event: MakeEvent) -> None:
    lake = Lake(any_settings)
    old = make_event(entity_id="TypeScript", ts=T0, version=1, body="v1")
    new = make_event(entity_id="TypeScript", ts=T0 + timedelta(hours=1), version=2, body="v2")
    other = make_event(entity_id="TypeScript!", ts=T0 + timedelta(hours=2), version=9)
    LakeWriter(lake).write([new, other])
    LakeWriter(lake).write([old])  # an older version arriving later does not win
    engine = LakeSqlEngine(lake)
    try:
        assert engine.lookup("en.wikipedia.org", "TypeScript") == new
        assert engine.lookup("en.wikipedia.org", "typescript") is None
        assert engine.lookup("de.wikipedia.org", "TypeScript") is None
    finally:
        engine.close()


def test_deleted_entity_returns_its_tombstone(local_settings: Settings, make_event: MakeEvent) -> None:
    lake = Lake(local_settings)
    created = make_event(entity_id="Gone", type="create", ts=T0)
    deleted = make_event(entity_id="Gone", type="delete", ts=T0 + timedelta(minutes=1), body=None)
    LakeWriter(lake).write([created, deleted])
    engine = LakeSqlEngine(lake)
    try:
        found = engine.lookup("en.wikipedia.org", "Gone")
        assert found is not None and found.type == "delete" and found.event_id == deleted.event_id
    finally:
        engine.close()


@pytest.mark.parametrize("entity_id", ["Talk:Cristiano Ronaldo", "cpp/container/vector", "東京", "it's; DROP TABLE"])
def test_unicode_and_hostile_ids_round_trip(local_settings: Settings, make_event: MakeEvent, entity_id: str) -> None:
    lake = Lake(local_settings)
    event = make_event(entity_id=entity_id)
    LakeWriter(lake).write([event, make_event(entity_id="neighbour")])
    engine = LakeSqlEngine(lake)
    try:
        assert engine.lookup("en.wikipedia.org", entity_id) == event
        assert engine.lookup("en.wikipedia.org", "' OR '1'='1") is None
    finally:
        engine.close()


def test_engine_sees_new_commits_after_refresh(local_settings: Settings, make_event: MakeEvent) -> None:
    lake = Lake(local_settings)
    lake.table()
    engine = LakeSqlEngine(lake)
    try:
        assert engine.lookup("en.wikipedia.org", "Later") is None  # empty table: no snapshot yet
        event = make_event(entity_id="Later")
        LakeWriter(lake).write([event])
        engine.refresh()
        assert engine.lookup("en.wikipedia.org", "Later") == event
    finally:
        engine.close()


def test_uncommitted_files_are_invisible(
    local_settings: Settings, make_event: MakeEvent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the Parquet file is published but before the commit leaves nothing visible."""
    lake = Lake(local_settings)
    LakeWriter(lake).write([make_event(entity_id="committed")])

    def crash(*_: object) -> int:
        raise RuntimeError("process died before the commit")

    monkeypatch.setattr(LakeWriter, "commit", crash)
    with pytest.raises(RuntimeError):
        LakeWriter(lake).write([make_event(entity_id="orphan")])
    data_files = [o.key for o in lake.store.list("events/data/")]
    assert len(data_files) == 2  # the orphan file is in the store...
    assert [e.entity_id for e in scan_all(lake)] == ["committed"]  # ...but no reader sees it
    engine = LakeSqlEngine(lake)
    try:
        assert engine.lookup("en.wikipedia.org", "orphan") is None
    finally:
        engine.close()


def test_empty_write_commits_nothing(local_settings: Settings) -> None:
    lake = Lake(local_settings)
    result = LakeWriter(lake).write([])
    assert result.files == [] and result.snapshot_id is None
    assert lake.table().current_snapshot() is None


def test_lost_commit_races_are_retried_on_fresh_metadata_then_reported(local_settings: Settings) -> None:
    from pyiceberg.exceptions import CommitFailedException

    from lakebench.core.errors import TransientError

    lake = Lake(local_settings)
    seen: list[object] = []

    def flaky(table: object) -> str:
        seen.append(table)
        if len(seen) < 3:
            raise CommitFailedException("another writer committed first")
        return "committed"

    assert lake.commit_with_retry(flaky, "test commit") == "committed"
    assert len(seen) == 3 and len({id(t) for t in seen}) == 3  # reloaded every time

    def always_loses(table: object) -> str:
        raise CommitFailedException("lost again")

    with pytest.raises(TransientError, match="test commit lost 4 commit races"):
        lake.commit_with_retry(always_loses, "test commit", attempts=4)
