"""Indexes written with the data: readers only read, a new reader fetches only what it needs, the
full-text index follows every update, and a lake written without indexes says what to run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lakebench.api.service import ServiceConfig, build_app
from lakebench.benchmark.oracle import Oracle
from lakebench.cli import app
from lakebench.core.config import Settings
from lakebench.core.errors import StorageError
from lakebench.core.models import Event
from lakebench.engines import LOCAL_ENGINES, open_engine
from lakebench.engines.lake_indexed import LakeIndexedEngine
from lakebench.generate.synthetic import GeneratorSpec, generate
from lakebench.index import fulltext, keys
from lakebench.index.publish import summary_of
from lakebench.lake.catalog import Lake
from lakebench.lake.compact import CompactOptions, compact, referenced_index_objects
from lakebench.lake.layouts import get_layout
from lakebench.lake.writer import LakeWriter, WriterOptions
from tests.conftest import T0

MakeEvent = Callable[..., Event]
runner = CliRunner()


def write(lake: Lake, events: list[Event], **options: Any) -> None:
    layout = get_layout(options.pop("layout", "flat"))
    LakeWriter(lake, WriterOptions(target_file_bytes=options.pop("file_bytes", 400_000), **options), layout).write(
        events
    )


def lake_files(settings: Settings) -> dict[str, tuple[int, int]]:
    """Every object of the lake with its size and modification time (a folder lake)."""
    root = Path(settings.lake_url.removeprefix("file://"))
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and p.name != "catalog.db"
    }


def generated(count: int = 300, seed: int = 3) -> list[Event]:
    return list(generate(GeneratorSpec(count=count, avg_size_kb=1.0, seed=seed)))


@pytest.mark.parametrize("layout", ["flat", "hive-time"])
def test_every_engine_reads_a_store_that_refuses_every_write(any_settings: Settings, layout: str) -> None:
    events = generated()
    with Lake(any_settings) as lake:
        write(lake, events[:150], layout=layout)
        write(lake, events[150:], layout=layout)
    oracle = Oracle(events)
    read_only = replace(any_settings, read_only=True)
    with Lake(read_only) as lake:
        with pytest.raises(StorageError, match="read-only"):
            lake.store.put_bytes("events/index/x", b"x")
        ns, eid = max(oracle.by_key, key=lambda k: len(oracle.by_key[k]))
        term = oracle.term_frequencies().most_common(3)[-1][0]
        for name in LOCAL_ENGINES:
            engine = open_engine(name, lake)
            try:
                assert engine.lookup(ns, eid) == oracle.lookup(ns, eid), name
                assert engine.history(ns, eid) == oracle.history(ns, eid), name
                hits = engine.search(term, 1000)
                assert {(h.entity_ns, h.entity_id, h.event_id) for h in hits} == oracle.search(term), name
                assert engine.list_namespace(ns, None, 1000).items == oracle.listing(ns), name
                assert engine.recent(5) == oracle.recent(5), name
                assert engine.count_by("type") == oracle.count_by("type"), name
                assert [list(r) for r in engine.sql("SELECT count(*) AS n FROM events").rows] == [[len(events)]], name
            finally:
                engine.close()
        assert lake.store.stats.snapshot().get("PUT", 0) == 0


def test_every_read_command_and_route_leaves_a_read_only_lake_untouched(tmp_path: Path) -> None:
    settings = Settings(lake=str(tmp_path / "lake"))
    events = generated(200)
    with Lake(settings) as lake:
        write(lake, events)
    before = lake_files(settings)
    oracle = Oracle(events)
    ns, eid = next(iter(oracle.by_key))
    term = oracle.term_frequencies().most_common(1)[0][0]
    env = {"LAKEBENCH_READ_ONLY": "1"}
    lake_opt = ["--lake", str(tmp_path / "lake")]
    for engine in LOCAL_ENGINES:
        for command in (
            ["lookup", ns, eid],
            ["history", ns, eid],
            ["search", term],
            ["sql", "SELECT count(*) FROM events"],
        ):
            result = runner.invoke(app, [*command, "--engine", engine, *lake_opt, "--json"], env=env)
            assert result.exit_code == 0, (engine, command, result.output)
            assert "note:" not in result.stderr
    written = subprocess.run(
        [sys.executable, "-m", "lakebench.cli", "generate", "--count", "5", *lake_opt],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert written.returncode == 2 and "read-only" in written.stderr, written.stderr
    config = ServiceConfig(settings=replace(settings, read_only=True), engine="lake-indexed", cache=None, ingest=False)
    with TestClient(build_app(config)) as client:
        for url in (
            f"/v1/entities/{ns}/{eid}",
            f"/v1/entities/{ns}/{eid}/history",
            f"/v1/namespaces/{ns}/entities",
            "/v1/recent",
            f"/v1/search?q={term}",
            "/v1/count?by=type",
        ):
            response = client.get(url)
            assert response.status_code == 200, (url, response.text)
    assert lake_files(settings) == before


def test_a_new_reader_fetches_the_directory_then_only_the_blocks_it_needs(any_settings: Settings) -> None:
    events = generated(400)
    with Lake(any_settings) as lake:
        for part in range(4):  # four commits, several files each
            write(lake, events[part::4], file_bytes=100_000)
        files = int(summary_of(lake.table())["total-data-files"])
        assert files >= 8
    oracle = Oracle(events)
    with Lake(replace(any_settings, read_only=True)) as lake:
        engine = LakeIndexedEngine(lake)
        try:
            assert lake.store.stats.snapshot().get("GET", 0) == 2  # the table's metadata and its key directory
            ns, eid = max(oracle.by_key, key=lambda k: len(oracle.by_key[k]))
            assert engine.lookup(ns, eid) == oracle.lookup(ns, eid)
            # A block of each segment holding the key (its versions may span files), a footer and a row group.
            assert engine.last_stats.requests["GET"] <= 2 * len(oracle.by_key[(ns, eid)]) + 1
            assert engine.lookup(ns, eid) == oracle.lookup(ns, eid)
            assert engine.last_stats.requests == {"GET": 1}  # warm: the row group only
            absent = [engine.lookup(ns, f"absent {i}") for i in range(200)]
            assert absent == [None] * 200
            assert lake.store.stats.snapshot().get("GET", 0) < 2 + 2 * files + 2 + 20  # filters spare nearly all
        finally:
            engine.close()


def test_hash_collisions_are_told_apart(
    local_settings: Settings, monkeypatch: pytest.MonkeyPatch, make_event: MakeEvent
) -> None:
    """Every key hashes alike, at write and at read: a run of 600 records spans three blocks of a
    segment, and two files; each lookup reads rows until it finds its own key."""
    monkeypatch.setattr(keys, "_hash_text", lambda key: 42)
    events = [
        make_event(entity_id=f"Page {i % 20}", body=f"body {i}", ts=T0 + timedelta(minutes=i)) for i in range(1200)
    ]
    with Lake(local_settings) as lake:
        write(lake, events[:600], file_bytes=1 << 30)
        write(lake, events[600:], file_bytes=1 << 30)
        engine = LakeIndexedEngine(lake)
        try:
            oracle = Oracle(events)
            for i in range(20):
                assert engine.lookup("en.wikipedia.org", f"Page {i}") == oracle.lookup("en.wikipedia.org", f"Page {i}")
                assert engine.history("en.wikipedia.org", f"Page {i}") == oracle.history(
                    "en.wikipedia.org", f"Page {i}"
                )
            assert engine.lookup("en.wikipedia.org", "Page 99") is None
        finally:
            engine.close()


def test_two_writers_of_one_version_publish_files_that_never_clash(local_settings: Settings) -> None:
    """Two writers start from the same full-text version and change different entities the same
    number of times: tantivy names their files alike; neither may overwrite the other's."""
    events = generated(60)
    with Lake(local_settings) as lake:
        write(lake, events)
        base = summary_of(lake.table())[fulltext.SUMMARY_KEY]
        oracle = Oracle(events)
        (ns_a, id_a), (ns_b, id_b) = list(oracle.by_key)[:2]

        def update(ns: str, entity_id: str, word: str) -> str:
            writer = fulltext.FullTextWriter(lake.store, "events/index")
            try:
                writer.begin(base)
                row = {"entity_ns": ns, "entity_id": entity_id, "event_id": "01" + "Z" * 24, "type": "update"}
                docs = {**row, "ts": 2**60, "version": 1, "title": None, "text": word}
                writer.apply(pa.Table.from_pylist([docs]))
                return writer.publish()
            finally:
                writer.close()

        def only_term(ns: str, entity_id: str) -> str:
            """A term of the entity's text that no other entity has."""
            latest = oracle.lookup(ns, entity_id)
            assert latest is not None
            return next(t for t in oracle.term_frequencies() if oracle.search(t) == {(ns, entity_id, latest.event_id)})

        old_a, old_b = only_term(ns_a, id_a), only_term(ns_b, id_b)
        first, second = update(ns_a, id_a, "xylophone"), update(ns_b, id_b, "zeppelin")
        cases = [
            (first, id_a, "xylophone", "zeppelin", old_b, id_b),
            (second, id_b, "zeppelin", "xylophone", old_a, id_a),
        ]
        for manifest, mine, word, other_word, other_old, other in cases:
            reader = fulltext.FullTextReader(lake.store, "events/index", Path(os.environ["XDG_CACHE_HOME"]) / "clash")
            try:
                reader.open(manifest)
                assert [h.entity_id for h in reader.search([word], 5)] == [mine]
                assert reader.search([other_word], 5) == []
                assert [h.entity_id for h in reader.search([other_old], 5)] == [other]  # untouched in this version
            finally:
                reader.close()


def test_fulltext_follows_updates_deletes_and_late_events(local_settings: Settings, make_event: MakeEvent) -> None:
    def found(engine: LakeIndexedEngine, term: str) -> list[str]:
        engine.refresh()
        return [h.entity_id for h in engine.search(term, 10)]

    with Lake(local_settings) as lake:
        write(lake, [make_event(entity_id="Page", body="alpha", ts=T0), make_event(entity_id="Other", body="alpha")])
        engine = LakeIndexedEngine(lake)
        try:
            assert found(engine, "alpha") == ["Other", "Page"] or sorted(found(engine, "alpha")) == ["Other", "Page"]
            write(lake, [make_event(entity_id="Page", body="beta", ts=T0 + timedelta(hours=1))])
            assert found(engine, "alpha") == ["Other"] and found(engine, "beta") == ["Page"]
            write(lake, [make_event(entity_id="Page", body="stale", ts=T0 + timedelta(minutes=30))])  # late, older
            assert found(engine, "stale") == [] and found(engine, "beta") == ["Page"]
            write(lake, [make_event(entity_id="Page", type="delete", body=None, ts=T0 + timedelta(hours=2))])
            assert found(engine, "beta") == []
            write(lake, [make_event(entity_id="Page", body="ghost", ts=T0 + timedelta(hours=1, minutes=30))])
            assert found(engine, "ghost") == []  # older than the delete: the entity stays deleted
            write(lake, [make_event(entity_id="Page", body="reborn", ts=T0 + timedelta(hours=3))])
            assert found(engine, "reborn") == ["Page"]
            assert found(engine, "alpha") == ["Other"]
        finally:
            engine.close()


def test_compaction_merges_the_segments_with_the_files(local_settings: Settings) -> None:
    events = generated(300)
    with Lake(local_settings) as lake:
        for part in range(5):
            write(lake, events[part::5])
        before = int(summary_of(lake.table())["total-data-files"])
        index_objects = {o.key for o in lake.store.list("events/index/")}
        report = compact(lake, CompactOptions(orphan_grace=timedelta(0), keep_last=1))
        assert report.files_after < before
        # What no retained snapshot reads is gone: older directories, manifests, merged files' segments.
        left = {o.key for o in lake.store.list("events/index/")}
        table = lake.table()
        live = {lake.key_of(str(t.file.file_path)) for t in table.scan().plan_files()}
        assert left == referenced_index_objects(lake, table, live)
        assert len([k for k in left if "/keys/dir/" in k]) == 1 and len(left) < len(index_objects)
        summary = summary_of(lake.table())
        directory = keys.Directory.from_bytes(lake.store.get(summary[keys.SUMMARY_KEY]))
        assert sorted(s.data_key for s in directory.segments) == sorted(
            lake.key_of(str(t.file.file_path)) for t in lake.table().scan().plan_files()
        )
        assert fulltext.SUMMARY_KEY in summary
        engine = LakeIndexedEngine(lake)
        try:
            oracle = Oracle(events)
            assert engine.notices == []
            for ns, eid in list(oracle.by_key)[:40]:
                assert engine.lookup(ns, eid) == oracle.lookup(ns, eid)
        finally:
            engine.close()


def test_a_lake_without_indexes_says_what_to_run_and_answers_meanwhile(tmp_path: Path) -> None:
    settings = Settings(lake=str(tmp_path / "lake"))
    events = generated(200)
    with Lake(settings) as lake:
        write(lake, events[:100], index=False)
    lake_opt = ["--lake", str(tmp_path / "lake")]
    oracle = Oracle(events[:100])
    ns, eid = next(iter(oracle.by_key))
    result = runner.invoke(app, ["lookup", ns, eid, "--engine", "lake-indexed", *lake_opt, "--json"])
    assert result.exit_code == 0, result.output
    assert "lakebench index build" in result.stderr
    assert json.loads(result.stdout)["event"]["event_id"] == oracle.lookup(ns, eid).event_id  # type: ignore[union-attr]
    with Lake(settings) as lake:
        write(lake, events[100:])  # an indexed writer does not extend an unindexed snapshot
        assert keys.SUMMARY_KEY not in summary_of(lake.table())
    built = runner.invoke(app, ["index", "build", *lake_opt, "--json"])
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout)["segments_built"] == 1  # the unindexed write's file; the later one had its own
    with Lake(settings) as lake:
        write(lake, generated(50, seed=9))  # from here on, writers extend the built indexes
        engine = LakeIndexedEngine(lake)
        try:
            assert engine.notices == []
            oracle = Oracle(events + generated(50, seed=9))
            for ns, eid in list(oracle.by_key)[:50]:
                assert engine.lookup(ns, eid) == oracle.lookup(ns, eid)
            term = oracle.term_frequencies().most_common(2)[-1][0]
            assert {(h.entity_ns, h.entity_id, h.event_id) for h in engine.search(term, 1000)} == oracle.search(term)
        finally:
            engine.close()
    again = runner.invoke(app, ["lookup", ns, eid, "--engine", "lake-indexed", *lake_opt])
    assert again.exit_code == 0 and "index build" not in again.stderr


def test_no_reader_needs_the_local_cache_to_survive(local_settings: Settings) -> None:
    """The full-text copy lives in a cache folder: a reader whose cache was wiped fetches it again."""
    events = generated(100)
    with Lake(local_settings) as lake:
        write(lake, events)
        oracle = Oracle(events)
        term = oracle.term_frequencies().most_common(1)[0][0]
        cache = Path(os.environ["XDG_CACHE_HOME"]) / "wiped"
        for _ in range(2):
            engine = LakeIndexedEngine(lake, cache_dir=cache)
            try:
                assert {(h.entity_ns, h.entity_id, h.event_id) for h in engine.search(term, 1000)} == oracle.search(
                    term
                )
            finally:
                engine.close()
            for path in sorted(cache.rglob("*"), reverse=True):
                path.unlink() if path.is_file() else path.rmdir()


def test_a_writer_that_loses_a_commit_race_rebuilds_its_indexes_on_the_winners(
    local_settings: Settings, monkeypatch: pytest.MonkeyPatch, make_event: MakeEvent
) -> None:
    """Writer A prepares its commit; writer B commits first; A's commit fails the catalog's
    compare-and-swap, and its next attempt builds the directory and full-text version on B's."""
    from lakebench.index.publish import IndexWriter

    with Lake(local_settings) as lake:
        write(lake, [make_event(entity_id="Base", body="foundation")])
        calls: list[int] = []
        real = IndexWriter.properties

        def racing(self: IndexWriter, table: Any, added: Any, removed: Any = ()) -> dict[str, str]:
            calls.append(1)
            if len(calls) == 1:  # B commits while A is in its first attempt
                write(lake, [make_event(entity_id="Winner", body="bravo")])
            return real(self, table, added, removed)

        monkeypatch.setattr(IndexWriter, "properties", racing)
        write(lake, [make_event(entity_id="Loser", body="alpha"), make_event(entity_id="Base", body="rebuilt")])
        monkeypatch.undo()
        assert len(calls) == 3  # A's first attempt, B's commit, A's second attempt
        engine = LakeIndexedEngine(lake)
        try:
            assert engine.notices == []
            found = {w: [h.entity_id for h in engine.search(w, 5)] for w in ("alpha", "bravo", "rebuilt", "foundation")}
            assert found == {"alpha": ["Loser"], "bravo": ["Winner"], "rebuilt": ["Base"], "foundation": []}
            for entity in ("Loser", "Winner", "Base"):
                assert engine.lookup("en.wikipedia.org", entity) is not None
        finally:
            engine.close()
