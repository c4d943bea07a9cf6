"""The SQL sandbox on every engine that takes SQL: each escape attempt is refused, each runaway
query is stopped inside its limits, ordinary questions still run, and nothing connects out."""

from __future__ import annotations

import contextlib
import glob
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from lakebench.core.config import Settings
from lakebench.engines.base import Engine, QueryError, SqlLimits
from lakebench.engines.clickhouse import ClickHouseEngine
from lakebench.engines.lake_indexed import LakeIndexedEngine
from lakebench.engines.lake_sql import LakeSqlEngine
from lakebench.engines.r2sql import R2SqlConfig, R2SqlEngine
from lakebench.engines.sandbox import CLICKHOUSE, DUCKDB, R2SQL, SqlDialect, check
from lakebench.generate.synthetic import GeneratorSpec, generate
from lakebench.lake.catalog import Lake
from lakebench.lake.writer import LakeWriter
from tests.conformance import sql_attacks
from tests.integration.r2sql_standin import TOKEN as STANDIN_TOKEN
from tests.integration.r2sql_standin import running_standin

LIMITS = SqlLimits(max_rows=1_000, timeout_s=2.0, memory_bytes=256 << 20, threads=2)
# A stopped query returns within its time limit plus this: generous, because the tests share 2 cores
# with benchmark runs, and a runaway query left running would take minutes, not seconds.
SLACK_S = 8.0


class Listener:
    """A TCP listener on loopback that counts every connection made to it."""

    def __init__(self) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(16)
        self.socket.settimeout(0.2)
        self.port = int(self.socket.getsockname()[1])
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                conn, _ = self.socket.accept()
                self.connections += 1
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.socket.close()


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    opened = Listener()
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    opened = Lake(Settings(lake=str(tmp_path_factory.mktemp("sandbox") / "lake")))
    LakeWriter(opened).write(generate(GeneratorSpec(count=150, avg_size_kb=1.5, seed=3)))
    yield opened
    opened.close()


@dataclass
class Target:
    engine: Engine
    dialect: SqlDialect
    attacks: list[str]


@pytest.fixture(scope="module", params=["lake-sql", "lake-indexed", "clickhouse", "r2sql"])
def target(request: pytest.FixtureRequest, lake: Lake) -> Iterator[Target]:
    with contextlib.ExitStack() as stack:
        engine: Engine
        if request.param == "lake-sql":
            engine, dialect, attacks = LakeSqlEngine(lake, LIMITS), DUCKDB, sql_attacks.DUCKDB
        elif request.param == "lake-indexed":
            engine, dialect, attacks = LakeIndexedEngine(lake, sql_limits=LIMITS), DUCKDB, sql_attacks.DUCKDB
        elif request.param == "clickhouse":
            engine, dialect, attacks = ClickHouseEngine(lake, sql_limits=LIMITS), CLICKHOUSE, sql_attacks.CLICKHOUSE
        else:
            url = stack.enter_context(running_standin(lake, timeout_s=LIMITS.timeout_s + 1))
            config = R2SqlConfig("acct", "bkt", STANDIN_TOKEN, url)
            engine, dialect, attacks = R2SqlEngine(config=config, sql_limits=LIMITS), R2SQL, sql_attacks.R2SQL
        stack.callback(engine.close)
        yield Target(engine, dialect, attacks)


def fill(template: str, port: int, folder: str) -> str:
    """The attempt with its ``{port}``, ``{lake}`` and ``{catalog}`` filled in (other braces kept)."""
    values = {"{port}": str(port), "{lake}": folder, "{catalog}": f"{folder}/catalog.db"}
    for key, value in values.items():
        template = template.replace(key, value)
    return template


def test_each_corpus_holds_at_least_forty_attempts() -> None:
    for corpus in (sql_attacks.DUCKDB, sql_attacks.CLICKHOUSE, sql_attacks.R2SQL):
        assert len(corpus) >= 40 and len(set(corpus)) == len(corpus)


@pytest.mark.parametrize(
    ("dialect", "corpus"),
    [(DUCKDB, sql_attacks.DUCKDB), (CLICKHOUSE, sql_attacks.CLICKHOUSE), (R2SQL, sql_attacks.R2SQL)],
    ids=["duckdb", "clickhouse", "r2sql"],
)
def test_the_checker_refuses_every_attempt_before_anything_runs(dialect: SqlDialect, corpus: list[str]) -> None:
    let_through = []
    for attack in corpus:
        try:
            check(fill(attack, 1, "/lake"), dialect)
        except QueryError:
            continue
        let_through.append(attack)
    assert let_through == []


def test_every_escape_attempt_is_refused_and_nothing_connects_out(
    target: Target, listener: Listener, lake: Lake
) -> None:
    before = set(glob.glob("/tmp/lakebench-attack*"))
    answered = []
    for template in target.attacks:
        attack = fill(template, listener.port, lake.url.removeprefix("file://"))
        try:
            result = target.engine.sql(attack)
        except QueryError as exc:
            assert str(exc), attack
            continue
        answered.append((attack, result.rows[:2]))
    assert answered == []
    assert listener.connections == 0  # no table function, extension or setting reached the network
    assert set(glob.glob("/tmp/lakebench-attack*")) == before  # and nothing was written
    assert target.engine.sql("SELECT count(*) AS n FROM events").rows[0][0] == 150  # still serving


def test_runaway_queries_stop_inside_their_limits(target: Target) -> None:
    for query in sql_attacks.RUNAWAY[target.dialect.sqlglot]:
        started = time.monotonic()
        with pytest.raises(QueryError) as refused:
            target.engine.sql(query)
        elapsed = time.monotonic() - started
        assert elapsed < LIMITS.timeout_s + SLACK_S, (query, elapsed)
        assert "limit" in str(refused.value) or "did not answer" in str(refused.value), str(refused.value)


def test_ordinary_questions_pass_the_sandbox(target: Target) -> None:
    for query in sql_attacks.LEGITIMATE[target.dialect.sqlglot]:
        params = ["2025-01-01T00:00:00Z"] if "ts >= ?" in query else ["%"] if "LIKE ?" in query else []
        if "entity_ns = ?" in query or "entity_ns <> ?" in query:
            params = ["en.wikipedia.org"]
        result = target.engine.sql(query, params)
        assert result.columns, query
        assert result.rows, query


def test_rows_are_limited_and_marked_truncated(target: Target) -> None:
    result = target.engine.sql("SELECT a.event_id FROM events a, events b")  # 22,500 rows
    assert len(result.rows) == LIMITS.max_rows and result.truncated


def test_parameters_must_match_the_placeholders(target: Target) -> None:
    with pytest.raises(QueryError, match="placeholders"):
        target.engine.sql("SELECT count(*) FROM events WHERE entity_id = ?", [])
    with pytest.raises(QueryError, match="placeholders"):
        target.engine.sql("SELECT count(*) FROM events", ["x"])
    with pytest.raises(QueryError, match="not supported"):
        target.engine.sql("SELECT count(*) FROM events WHERE entity_id = ?", [["a", "list"]])


def test_query_size_is_bounded(target: Target) -> None:
    with pytest.raises(QueryError, match="characters"):
        target.engine.sql("SELECT 1 " + " " * LIMITS.max_chars)
