"""Running a write again adds nothing: batch writes skip events whose ``event_id`` the table holds,
on every store and layout; ``run`` benchmarks exactly the dataset it names."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable
from pathlib import Path

import pyarrow.compute as pc
import pytest
from typer.testing import CliRunner

from lakebench.cli import app
from lakebench.core.config import Settings
from lakebench.core.errors import TransientError
from lakebench.core.models import Event
from lakebench.engines import open_engine
from lakebench.generate.synthetic import GeneratorSpec, generate
from lakebench.lake.catalog import Lake
from lakebench.lake.layouts import get_layout
from lakebench.lake.writer import LakeWriter, WriterOptions

runner = CliRunner()


def table_ids(lake: Lake) -> list[str]:
    table = lake.table()
    if table.current_snapshot() is None:
        return []
    ids = table.scan(selected_fields=("event_id",)).to_arrow()["event_id"]
    return sorted(ids.to_pylist())


def snapshot_count(lake: Lake) -> int:
    return len(lake.table().snapshots())


@pytest.mark.parametrize("layout", ["flat", "lookup", "hive-time"])
def test_writing_the_same_events_twice_adds_nothing(any_settings: Settings, layout: str) -> None:
    events = list(generate(GeneratorSpec(count=120, avg_size_kb=1, seed=5)))
    with Lake(any_settings) as lake:
        writer = LakeWriter(lake, layout=get_layout(layout))
        first = writer.write(events)
        assert first.events == 120 and first.skipped == 0
        before, snapshots = table_ids(lake), snapshot_count(lake)
        again = writer.write(events)
        assert again.events == 0 and again.skipped == 120 and again.files == [] and again.snapshot_id is None
        assert table_ids(lake) == before and snapshot_count(lake) == snapshots
        # Half old, half new: only the new half is written.
        more = list(generate(GeneratorSpec(count=60, avg_size_kb=1, seed=6)))
        mixed = writer.write(events[:60] + more)
        assert (mixed.events, mixed.skipped) == (60, 60)
        assert table_ids(lake) == sorted(before + [e.event_id for e in more])


def test_a_mostly_known_batch_writes_its_few_new_events_in_one_file(local_settings: Settings) -> None:
    events = list(generate(GeneratorSpec(count=400, avg_size_kb=1, seed=9)))
    more = list(generate(GeneratorSpec(count=3, avg_size_kb=1, seed=10)))
    with Lake(local_settings) as lake:
        writer = LakeWriter(lake, WriterOptions(min_parallel_bytes=100_000, threads=4))
        writer.write(events)
        again = writer.write(events + more)
        assert (again.events, again.skipped, len(again.files)) == (3, 400, 1)


def test_importing_a_source_again_adds_nothing(tmp_path: Path, shared_data: Path) -> None:
    from lakebench.pipeline.batch import ingest_file

    rows = (shared_data / "wikipedia" / "enwiki-articles.sample1000.tantivy-wiki.json").read_text().splitlines()[:20]
    source = tmp_path / "articles.json"
    source.write_text("\n".join(rows) + "\n")
    with Lake(Settings(lake=str(tmp_path / "lake"))) as lake:
        first = ingest_file(lake, source, "tantivy-wiki")
        second = ingest_file(lake, source, "tantivy-wiki")
        assert first.write is not None and second.write is not None
        assert first.write.events == 20 and (second.write.events, second.write.skipped) == (0, 20)


def test_an_event_repeated_within_one_input_is_written_once(local_settings: Settings) -> None:
    events = list(generate(GeneratorSpec(count=30, avg_size_kb=1, seed=2)))
    with Lake(local_settings) as lake:
        result = LakeWriter(lake).write(events + events[:10])
        assert (result.events, result.skipped) == (30, 10)
        assert len(set(table_ids(lake))) == len(table_ids(lake)) == 30


def test_the_lookup_reads_only_files_whose_bounds_can_hold_the_ids(
    local_settings: Settings, make_event: Callable[..., Event]
) -> None:
    """Pipeline-like lakes hold time-ordered ids: a new batch's ids fall outside old files' bounds."""
    with Lake(local_settings) as lake:
        writer = LakeWriter(lake)
        for n in range(4):
            writer.write([make_event(entity_id=f"e{n}-{i}") for i in range(20)])
        gets = lake.store.stats.snapshot().get("GET", 0)
        fresh = [make_event(entity_id=f"new-{i}") for i in range(20)]  # later ids than every file's upper bound
        assert writer.write(fresh).events == 20
        assert lake.store.stats.snapshot().get("GET", 0) == gets  # no existing file's event_id column was read
        old = writer.write([make_event(entity_id="late", event_id=table_ids(lake)[0])])  # an id the table holds
        assert (old.events, old.skipped) == (0, 1)
        assert lake.store.stats.snapshot().get("GET", 0) > gets  # that one's file was read


def test_a_writer_that_committed_the_same_events_meanwhile_stops_the_commit(local_settings: Settings) -> None:
    events = list(generate(GeneratorSpec(count=40, avg_size_kb=1, seed=8)))
    with Lake(local_settings) as lake:
        writer = LakeWriter(lake)
        writer.write(events[:1])  # the table exists
        started, committed = threading.Event(), threading.Event()

        def slow_events() -> object:
            for i, event in enumerate(events):
                if i == 1:
                    started.set()
                    assert committed.wait(60)
                yield event

        failure: list[BaseException] = []

        def write_slowly() -> None:
            try:
                LakeWriter(Lake(local_settings)).write(slow_events())  # type: ignore[arg-type]
            except BaseException as exc:
                failure.append(exc)

        thread = threading.Thread(target=write_slowly)
        thread.start()
        assert started.wait(60)
        writer.write(events[10:20])  # another writer commits some of the same events meanwhile
        committed.set()
        thread.join(60)
        assert failure and isinstance(failure[0], TransientError) and "run again" in str(failure[0])
        ids = table_ids(lake)
        assert len(ids) == len(set(ids)) == 11  # nothing twice
        assert LakeWriter(lake).write(events).events == 29  # running again adds the rest, once
        assert len(set(table_ids(lake))) == len(table_ids(lake)) == 40


def test_ingest_and_generate_twice_leave_the_table_unchanged(tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    out = tmp_path / "events.ndjson"
    assert runner.invoke(app, ["generate", "--count", "40", "--avg-size-kb", "1", "--out", str(out)]).exit_code == 0
    # Records without an event_id get one derived from their content: the same on every ingest.
    no_ids = tmp_path / "no-ids.ndjson"
    no_ids.write_text(
        "".join(
            json.dumps({k: v for k, v in json.loads(line).items() if k != "event_id"}) + "\n"
            for line in out.read_text().splitlines()
        )
    )
    for source in (out, no_ids):
        target = str(tmp_path / f"lake-{source.stem}")
        first = runner.invoke(app, ["ingest", str(source), "--lake", target, "--json"])
        second = runner.invoke(app, ["ingest", str(source), "--lake", target, "--json"])
        assert first.exit_code == second.exit_code == 0, second.output
        assert (json.loads(first.stdout)["written"], json.loads(first.stdout)["skipped"]) == (40, 0)
        assert (json.loads(second.stdout)["written"], json.loads(second.stdout)["skipped"]) == (0, 40)
        with Lake(Settings(lake=target)) as opened:
            assert len(table_ids(opened)) == 40 and snapshot_count(opened) == 1

    for _ in range(2):
        result = runner.invoke(app, ["generate", "--count", "40", "--avg-size-kb", "1", "--lake", lake, "--json"])
        assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["skipped"] == 40 and json.loads(result.stdout)["events"] == 0
    with Lake(Settings(lake=lake)) as opened:
        ids = table_ids(opened)
        assert len(ids) == len(set(ids)) == 40
        engine = open_engine("lake-sql", opened)
        try:
            history = engine.history("en.wikipedia.org", "TypeScript")
        finally:
            engine.close()
        assert len(history) == len({e.event_id for e in history})  # every version once


def run_json(tmp_path: Path, count: int, lake: Path) -> dict[str, object]:
    args = ["run", "--count", str(count), "--avg-size-kb", "1", "--samples", "3", "--repeat", "1", "--warmup", "1"]
    args += [
        "--profiles",
        "direct",
        "--options",
        "lake-sql",
        "--workloads",
        "lookup-zipf",
        "--lake",
        str(lake),
        "--results-dir",
        str(tmp_path / "results"),
        "--json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    document: dict[str, object] = json.loads(result.stdout)
    return document


def test_run_twice_with_different_counts_benchmarks_exactly_each_dataset(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    first = run_json(tmp_path, 50, lake)
    second = run_json(tmp_path, 80, lake)
    third = run_json(tmp_path, 50, lake)
    for document, count in ((first, 50), (second, 80), (third, 50)):
        dataset = document["dataset"]
        assert isinstance(dataset, dict) and dataset["events"] == count, dataset
        assert dataset["source"] == GeneratorSpec(count=count, avg_size_kb=1).dataset_id
    assert first["lake"]["url"] == third["lake"]["url"] == f"file://{lake}"  # type: ignore[index]
    assert third["dataset"]["reused"] is True  # type: ignore[index]
    # The lake held the 50-event dataset: the 80-event one got a lake of its own, and says so.
    assert second["lake"]["url"].startswith(f"file://{lake}/datasets/")  # type: ignore[index]
    assert "lake of its own" in second["lake"]["note"]  # type: ignore[index]
    with Lake(Settings(lake=str(lake))) as opened:
        assert len(table_ids(opened)) == 50


def test_run_with_an_explicit_catalog_refuses_a_lake_holding_other_data(tmp_path: Path) -> None:
    catalog = f"sqlite:///{tmp_path}/catalog.db"
    settings = Settings(lake=str(tmp_path / "lake"), catalog=catalog)
    with Lake(settings) as lake:
        LakeWriter(lake).write(generate(GeneratorSpec(count=20, avg_size_kb=1, seed=1)))
    args = ["run", "--count", "30", "--avg-size-kb", "1", "--profiles", "direct"]
    args += ["--lake", str(tmp_path / "lake"), "--catalog", catalog]
    result = runner.invoke(app, [*args, "--results-dir", str(tmp_path / "r")])
    assert result.exit_code != 0
    assert "holds other events than the dataset" in str(result.exception)


def test_known_ids_work_when_the_table_has_files_without_bounds(local_settings: Settings) -> None:
    """Bounds are an optimisation: a file whose metrics lack them is read, never skipped."""
    from lakebench.lake import known

    events = list(generate(GeneratorSpec(count=20, avg_size_kb=1, seed=4)))
    with Lake(local_settings) as lake:
        LakeWriter(lake).write(events)
        ids = known.KnownIds(lake)
        ids._files = {url: dataclasses.replace(f, lower=None, upper=None) for url, f in ids._files.items()}
        assert ids.new([e.event_id for e in events[:5]] + ["7ZZZZZZZZZZZZZZZZZZZZZZZZZ"]) == [False] * 5 + [True]
        held = pc.unique(lake.table().scan(selected_fields=("event_id",)).to_arrow()["event_id"])
        assert len(held) == 20
