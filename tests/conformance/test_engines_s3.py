"""Every engine on the S3-protocol server, and lake-indexed's one-GET lookups there."""

from __future__ import annotations

import contextlib

import pytest

from lakebench.benchmark.oracle import Oracle
from lakebench.core.config import Settings
from lakebench.engines import LOCAL_ENGINES, open_engine
from lakebench.engines.base import Engine
from lakebench.engines.lake_indexed import LakeIndexedEngine
from lakebench.engines.r2sql import R2SqlConfig, R2SqlEngine
from lakebench.generate.synthetic import GeneratorSpec, generate
from lakebench.lake.catalog import Lake
from lakebench.lake.layouts import get_layout
from lakebench.lake.writer import LakeWriter, WriterOptions
from tests.integration.r2sql_standin import TOKEN as STANDIN_TOKEN
from tests.integration.r2sql_standin import running_standin

pytestmark = pytest.mark.s3


# Every engine on a flat lake; ClickHouse, whose s3() glob must reach nested folders, on hive-time too.
@pytest.mark.parametrize(
    ("name", "layout"), [*((n, "flat") for n in (*LOCAL_ENGINES, "r2sql")), ("clickhouse", "hive-time")]
)
def test_engine_answers_on_s3(s3_settings: Settings, name: str, layout: str) -> None:
    events = list(generate(GeneratorSpec(count=150, avg_size_kb=1, seed=5)))
    with Lake(s3_settings) as lake:
        LakeWriter(lake, WriterOptions(target_file_bytes=60_000), get_layout(layout)).write(events)
        oracle = Oracle(events)
        with contextlib.ExitStack() as stack:
            engine: Engine
            if name == "r2sql":  # the client, against the stand-in of R2 SQL's API serving this S3 lake
                url = stack.enter_context(running_standin(lake))
                engine = R2SqlEngine(config=R2SqlConfig("acct", "bkt", STANDIN_TOKEN, url))
            else:
                engine = open_engine(name, lake)
            stack.callback(engine.close)
            for ns, eid in list(oracle.by_key)[: 10 if layout == "hive-time" else 25]:
                assert engine.lookup(ns, eid) == oracle.lookup(ns, eid)
                assert engine.history(ns, eid) == oracle.history(ns, eid)
            assert engine.lookup("en.wikipedia.org", "missing page") is None
            ns = events[0].entity_ns
            assert engine.list_namespace(ns, None, 10_000).items == oracle.listing(ns)
            assert engine.count_by("day") == oracle.count_by("day")
            assert engine.sql("SELECT count(*) FROM events").rows == [(len(events),)]
            term = oracle.term_frequencies().most_common(5)[-1][0]
            assert {(h.entity_ns, h.entity_id, h.event_id) for h in engine.search(term, 10_000)} == oracle.search(term)


def test_lake_indexed_makes_exactly_one_get_per_lookup_once_warm(s3_settings: Settings) -> None:
    events = list(generate(GeneratorSpec(count=300, avg_size_kb=1, seed=8)))
    with Lake(s3_settings) as lake:
        LakeWriter(lake, WriterOptions(target_file_bytes=100_000)).write(events)
        engine = LakeIndexedEngine(lake)
        try:
            oracle = Oracle(events)
            for ns, eid in list(oracle.by_key)[:50]:
                assert engine.lookup(ns, eid) == oracle.lookup(ns, eid)  # cold: its index blocks, the footer
                lake.store.stats.reset()
                assert engine.lookup(ns, eid) == oracle.lookup(ns, eid)
                assert lake.store.stats.snapshot()["GET"] == 1  # counted at the object-store client
                assert engine.last_stats.requests == {"GET": 1}
            lake.store.stats.reset()
            assert engine.lookup("en.wikipedia.org", "not there") is None
            assert "GET" not in lake.store.stats.snapshot()  # a missing key costs no request
        finally:
            engine.close()
