"""One conformance suite: every query on every engine, over the same lakes, against the oracle."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from lakebench.benchmark.oracle import Oracle
from lakebench.core.config import Settings
from lakebench.core.models import FIELDS, Event
from lakebench.core.validate import parse_event
from lakebench.engines import LOCAL_ENGINES, Engine, open_engine
from lakebench.engines.base import QueryError
from lakebench.engines.r2sql import R2SqlConfig, R2SqlEngine
from lakebench.generate.importers import read_records
from lakebench.generate.synthetic import GeneratorSpec, generate
from lakebench.index.publish import build_indexes
from lakebench.lake.catalog import Lake
from lakebench.lake.compact import CompactOptions, compact
from lakebench.lake.layouts import get_layout
from lakebench.lake.schema import row_to_event
from lakebench.lake.writer import LakeWriter, WriterOptions
from lakebench.pipeline.core import Pipeline, PipelineConfig
from tests.integration.r2sql_standin import TOKEN as STANDIN_TOKEN
from tests.integration.r2sql_standin import running_standin

ENGINE_NAMES = [*LOCAL_ENGINES, "r2sql"]  # r2sql runs against the local stand-in of its HTTP API
REAL_FILES = {
    "tantivy-wiki": "wikipedia/enwiki-articles.sample1000.tantivy-wiki.json",
    "gharchive": "events/gharchive-2015-01-01-01.sample1000.tantivy-gh.json",
    "mediawiki-xml": "wikipedia/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
    "wikiticker": "events/wikiticker-2015-09-12-sampled.json.gz",
}
INJECTIONS = [
    "' OR '1'='1",
    "x'); DROP TABLE events; --",
    '" OR ""="',
    "\\'; SELECT 1; --",
    "{ns:String}",
    "?",
    "$1",
    "C:\\temp",
    "\\N",
    "a\tb\nc",
    "100%_",
]
# Entity ids a user can store: backslashes (ClickHouse reads its parameters in an escaped form),
# quotes, tabs and newlines, SQL wildcards, path separators, emoji and mixed scripts.
HOSTILE_IDS = [
    "C:\\temp",
    "C:\temp",
    "\\\\server\\share",
    "ends with a backslash \\",
    "\\N",
    'O\'Brien "quoted" `tick`',
    "tab\there",
    "new\nline",
    "carriage\r\nreturn",
    "100% done_",
    "cpp/container/vector",
    "a%2Fb?x=1&y=2#frag",
    "🎉 party 🎊",
    "東京/Zürich – Ελληνικά – עברית",
    "{p0:String}",
    "$1 ?",
]


def generated_events(count: int = 400) -> list[Event]:
    events = list(generate(GeneratorSpec(count=count, avg_size_kb=1.5, seed=21)))
    # Edge cases the generator does not make on its own.
    extra = [
        {
            "entity_ns": "en.wikipedia.org",
            "entity_id": "Talk:Cristiano Ronaldo",
            "ts": "2025-09-20T10:00:00Z",
            "body": "Zürich straße ÉCOLE naïve café — «quoted» 東京 emoji 🎉 end",
            "title": "Talk",
        },
        {
            "entity_ns": "en.wikipedia.org",
            "entity_id": "cpp/container/vector",
            "ts": "2025-09-21T10:00:00Z",
            "body": "std::vector<int> push_back O(1) amortised",
            "title": "vector",
        },
        {
            "entity_ns": "en.wikipedia.org",
            "entity_id": "it's; DROP TABLE events",
            "ts": "2025-09-22T10:00:00Z",
            "body": "hostile id",
        },
        {
            "entity_ns": "en.wikipedia.org",
            "entity_id": "Same Time",
            "ts": "2025-09-23T10:00:00Z",
            "version": 1,
            "body": "first",
        },
        {
            "entity_ns": "en.wikipedia.org",
            "entity_id": "Same Time",
            "ts": "2025-09-23T10:00:00Z",
            "version": 2,
            "body": "second wins by version",
        },
        {
            "entity_ns": "empty.example",
            "entity_id": "Gone",
            "ts": "2025-09-24T10:00:00Z",
            "type": "create",
            "body": "soon deleted",
        },
        {"entity_ns": "empty.example", "entity_id": "Gone", "ts": "2025-09-25T10:00:00Z", "type": "delete"},
    ]
    extra += [
        {
            "entity_ns": "hostile.example",
            "entity_id": entity_id,
            "ts": f"2025-09-26T10:{i:02d}:00Z",
            "title": entity_id,
            "body": f"hostile {i} {entity_id}",
            "attributes": {"id": entity_id, "n": i},
        }
        for i, entity_id in enumerate(HOSTILE_IDS)
    ]
    parsed = [parse_event(e) for e in extra]
    assert all(isinstance(e, Event) for e in parsed)
    return events + [e for e in parsed if isinstance(e, Event)]


def real_events(shared: Path, fmt: str) -> list[Event]:
    out = []
    for record in read_records(shared / REAL_FILES[fmt], fmt):
        event = parse_event(record.raw) if record.raw is not None else None
        if isinstance(event, Event):
            out.append(event)
    return out


WRITERS = ("batch", "pipeline", "compacted")
LAYOUTS = ("flat", "lookup", "hive-time")
# The generated dataset on every writer x layout; the real files as the batch writer lays them out;
# a lake written without indexes (lake-indexed answers from the Parquet files) and the same lake
# after `lakebench index build`.
DATASETS = [
    "generated-batch-flat",
    *(f"generated-{w}-{layout}" for w in WRITERS for layout in LAYOUTS if (w, layout) != ("batch", "flat")),
    "generated-unindexed-lookup",
    "generated-rebuilt-hive-time",
    *REAL_FILES,
]


def write_lake(lake: Lake, events: list[Event], writer: str, layout: str, state: Path) -> None:
    """Several commits and files, as each writer makes them: answers must span files and snapshots."""
    if writer in ("batch", "unindexed", "rebuilt"):
        half = len(events) // 2
        options = WriterOptions(target_file_bytes=2_000_000, index=writer == "batch")
        LakeWriter(lake, options, get_layout(layout)).write(events[half:])
        LakeWriter(lake, options, get_layout(layout)).write(events[:half])
        if writer == "rebuilt":
            assert build_indexes(lake).segments_built > 0
        return
    pipeline = Pipeline(lake, PipelineConfig(state_dir=state, layout=layout, roll_interval_s=3600, idle_s=3600))
    pipeline.start()
    try:
        for chunk in (events[i::3] for i in range(3)):  # three flushes, each a commit of several files
            assert set(pipeline.submit(chunk)) == {"accepted"}
            assert pipeline.flush() == len(chunk)
    finally:
        pipeline.stop()
    if writer == "compacted":
        report = compact(lake, CompactOptions(orphan_grace=timedelta(0)))
        assert report.merged_files > 0 and report.files_after < report.files_before


@pytest.fixture(scope="module", params=DATASETS)
def dataset(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lake, Oracle]]:
    folder = tmp_path_factory.mktemp(f"lake-{request.param}")
    lake = Lake(Settings(lake=str(folder / "lake")))
    if request.param.startswith("generated-"):
        _, writer, layout = request.param.split("-", 2)
        events = generated_events(400 if request.param == "generated-batch-flat" else 60)
        write_lake(lake, events, writer, layout, folder / "state")
    else:
        events = real_events(request.getfixturevalue("shared_data"), request.param)
        write_lake(lake, events, "batch", "flat", folder / "state")
    yield lake, Oracle(events)
    lake.close()


@pytest.fixture(scope="module", params=ENGINE_NAMES)
def engine(request: pytest.FixtureRequest, dataset: tuple[Lake, Oracle]) -> Iterator[Engine]:
    if request.param == "r2sql":
        with running_standin(dataset[0]) as url:
            yield R2SqlEngine(config=R2SqlConfig("acct", "bkt", STANDIN_TOKEN, url))
        return
    opened = open_engine(request.param, dataset[0])
    yield opened
    opened.close()


def test_lake_indexed_reads_the_indexes_its_writer_wrote(
    request: pytest.FixtureRequest, dataset: tuple[Lake, Oracle]
) -> None:
    """On every lake a lakebench writer indexed, lake-indexed answers through its indexes; on the
    unindexed lake it says why not and what to run (the other tests check its answers there too)."""
    engine = open_engine("lake-indexed", dataset[0])
    try:
        notices = engine.notices  # type: ignore[attr-defined]
        if "unindexed" in request.node.callspec.id:
            assert len(notices) == 2 and all("lakebench index build" in n for n in notices)
        else:
            assert notices == []
    finally:
        engine.close()


def sample_keys(oracle: Oracle, n: int = 150) -> list[tuple[str, str]]:
    """The most-versioned keys, an even spread of the rest, and every hostile id."""
    keys = sorted(oracle.by_key, key=lambda k: (-len(oracle.by_key[k]), k))
    step = max(1, len(keys) // n)
    hostile = [k for k in keys if k[0] == "hostile.example"]
    return list(dict.fromkeys(keys[:20] + keys[::step] + hostile))


def test_lookup_latest_version_and_missing_keys(engine: Engine, dataset: tuple[Lake, Oracle]) -> None:
    _, oracle = dataset
    for ns, eid in sample_keys(oracle):
        assert engine.lookup(ns, eid) == oracle.lookup(ns, eid), (ns, eid)
    ns, eid = next(iter(oracle.by_key))
    for missing in (eid + " ", eid.upper() + "x", "", "\u0000"):
        if (ns, missing) not in oracle.by_key:
            assert engine.lookup(ns, missing) is None
    assert engine.lookup("no.such.namespace", eid) is None


def test_history_oldest_first(engine: Engine, dataset: tuple[Lake, Oracle]) -> None:
    _, oracle = dataset
    for ns, eid in sample_keys(oracle, 40):
        assert engine.history(ns, eid) == oracle.history(ns, eid), (ns, eid)
    assert engine.history("no.such.namespace", "x") == []


def test_list_namespace_pages_to_the_end(engine: Engine, dataset: tuple[Lake, Oracle]) -> None:
    _, oracle = dataset
    namespaces = sorted({ns for ns, _ in oracle.by_key})[:6]
    for ns in namespaces:
        expected = oracle.listing(ns)
        got, cursor, pages = [], None, 0
        while True:
            page = engine.list_namespace(ns, cursor, limit=max(1, len(expected) // 3 or 1))
            got.extend(page.items)
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
            assert pages < 1000
        assert got == expected, ns
    empty = engine.list_namespace("no.such.namespace", None, 10)
    assert empty.items == [] and empty.next_cursor is None


def test_recent_and_count_by(engine: Engine, dataset: tuple[Lake, Oracle]) -> None:
    _, oracle = dataset
    assert engine.recent(25) == oracle.recent(25)
    ns = oracle.events[0].entity_ns
    assert engine.recent(10, ns) == oracle.recent(10, ns)
    assert engine.recent(5, "no.such.namespace") == []
    for field in ("entity_ns", "type", "day"):
        assert engine.count_by(field) == oracle.count_by(field), field  # type: ignore[arg-type]
    times = sorted(e.ts for e in oracle.events)
    since, until = times[len(times) // 4], times[3 * len(times) // 4]
    assert engine.count_by("day", since, until) == oracle.count_by("day", since, until)
    assert engine.count_by("type", until + timedelta(days=10000)) == []


def search_queries(oracle: Oracle) -> list[str]:
    freq = oracle.term_frequencies().most_common()
    frequent = [t for t, _ in freq[:3]]
    rare = [t for t, c in freq if c == 1][:2]
    unicode_terms = [t for t, _ in freq if not t.isascii()][:2]
    mid = [t for t, _ in freq[len(freq) // 10 : len(freq) // 10 + 2]]
    queries = frequent + rare + unicode_terms + mid + ["zzzqqqxxx", "", "!!!"]
    if len(frequent) > 1:
        queries.append(f"{frequent[0].upper()} {mid[0] if mid else frequent[1]}")
    return queries


def test_search_returns_the_matching_latest_live_versions(engine: Engine, dataset: tuple[Lake, Oracle]) -> None:
    _, oracle = dataset
    queries = search_queries(oracle)
    if engine.name == "r2sql" and len(oracle.events) > 5_000:
        queries = queries[::3]  # each r2sql search fetches the whole table through the stand-in: a sample
    for query in queries:
        expected = oracle.search(query)
        hits = engine.search(query, limit=10_000)
        assert {(h.entity_ns, h.entity_id, h.event_id) for h in hits} == expected, query
        top = engine.search(query, limit=3)
        assert len(top) == min(3, len(expected)), query
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True), query
    ns = oracle.events[0].entity_ns
    query = search_queries(oracle)[0]
    assert {(h.entity_ns, h.entity_id, h.event_id) for h in engine.search(query, 10_000, ns)} == oracle.search(
        query, ns
    )


def test_sql_binds_parameters_and_agrees(engine: Engine, dataset: tuple[Lake, Oracle]) -> None:
    _, oracle = dataset
    ns = oracle.events[0].entity_ns
    result = engine.sql("SELECT count(*) AS n FROM events WHERE entity_ns = ?", [ns])
    assert result.rows == [(sum(1 for e in oracle.events if e.entity_ns == ns),)]
    # 'events' inside a string literal stays a string: only the table identifier is mapped.
    literal = engine.sql("SELECT count(*) AS n FROM events WHERE entity_id <> 'events' AND entity_ns = ?", [ns])
    assert literal.rows == result.rows
    for hostile in INJECTIONS:
        assert engine.sql("SELECT count(*) AS n FROM events WHERE entity_id = ?", [hostile]).rows == [
            (sum(1 for e in oracle.events if e.entity_id == hostile),)
        ]


def test_sql_returns_every_column_as_stored(engine: Engine, dataset: tuple[Lake, Oracle]) -> None:
    _, oracle = dataset
    for ns, eid in sample_keys(oracle, 15):
        result = engine.sql("SELECT * FROM events WHERE entity_ns = ? AND entity_id = ?", [ns, eid])
        assert sorted(result.columns) == sorted(FIELDS)
        rows = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
        for row in rows:
            assert isinstance(row["ts"], datetime) and row["ts"].utcoffset() == timedelta(0), row["ts"]
        got = sorted((row_to_event(r) for r in rows), key=lambda e: (e.ts, e.version, e.event_id))
        assert got == oracle.history(ns, eid), (ns, eid)


# Engine-level input handling does not depend on how the lake was written: one lake is enough.
ONE_LAKE = pytest.mark.parametrize("dataset", ["generated-batch-flat"], indirect=True)


@ONE_LAKE
def test_injection_strings_in_every_parameter_are_just_values(engine: Engine) -> None:
    for hostile in INJECTIONS:
        assert engine.lookup(hostile, hostile) is None, hostile
        assert engine.history("en.wikipedia.org", hostile) == [], hostile
        assert engine.list_namespace(hostile, None, 5).items == [], hostile
        assert engine.recent(3, hostile) == [], hostile
        assert isinstance(engine.search(hostile, 5, hostile), list), hostile
        with pytest.raises(QueryError):
            engine.list_namespace("en.wikipedia.org", hostile, 5)  # a forged cursor is refused


@ONE_LAKE
def test_limits_are_validated(engine: Engine) -> None:
    for bad in (0, -1, 10**9):
        with pytest.raises(QueryError):
            engine.recent(bad)
    with pytest.raises(QueryError):
        engine.count_by("body")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "dataset", ["generated-batch-flat", "generated-pipeline-lookup", "generated-compacted-hive-time"], indirect=True
)
def test_clickhouse_hot_window_and_lake_archive_answer_together(dataset: tuple[Lake, Oracle]) -> None:
    from lakebench.engines.clickhouse import ClickHouseEngine

    lake, oracle = dataset
    assert len({e.ts.date() for e in oracle.events}) > 10  # enough days to split into hot and cold
    engine = ClickHouseEngine(lake, hot_days=5)
    try:
        assert 0 < engine.hot_rows() < len(oracle.events)  # part in the MergeTree, the rest read from the lake
        for ns, eid in sample_keys(oracle, 60):
            assert engine.lookup(ns, eid) == oracle.lookup(ns, eid)
            assert engine.history(ns, eid) == oracle.history(ns, eid)
        assert engine.count_by("day") == oracle.count_by("day")
    finally:
        engine.close()
