"""The architecture options a run compares, each a real stack reached the same way.

- ``lake-sql`` (the seed's Option 1): SQL over the lake's Parquet (DuckDB, one connection, its object
  cache on), no cache;
- ``lake-sql+cache`` (Option 2): the same behind the stale-while-revalidate cache the db service
  uses (lakebench/cache/swr.py), caching entity and history answers as the service does;
- ``clickhouse`` (Option 3): ClickHouse (chDB) holding the hot window in a key-sorted MergeTree;
- ``lake-indexed`` and ``lake-indexed+cache`` (Option 4): the lake with the key and full-text
  indexes its writer wrote beside the data, with and without the cache.

``OptionRunner.ask`` returns the engine's answer and, for a cached option, whether the cache served
it — what the run's hit ratio is measured from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

from lakebench.benchmark.queries import Query, answer, call
from lakebench.cache.base import CachePolicy
from lakebench.cache.memory import MemoryBackend
from lakebench.cache.swr import SwrCache
from lakebench.core.errors import ConfigError
from lakebench.engines import open_engine
from lakebench.lake.catalog import Lake


@dataclass(frozen=True, slots=True)
class OptionSpec:
    name: str
    engine: str
    cached: bool
    cost_option: int  # the line in the cost model (lakebench/decide/cost.py)
    description: str


OPTIONS: Final[dict[str, OptionSpec]] = {
    o.name: o
    for o in (
        OptionSpec("lake-sql", "lake-sql", False, 1, "Option 1: SQL over the lake (DuckDB), no cache"),
        OptionSpec("lake-sql+cache", "lake-sql", True, 2, "Option 2: lake SQL behind a stale-while-revalidate cache"),
        OptionSpec("clickhouse", "clickhouse", False, 3, "Option 3: ClickHouse (chDB) hot window + the lake"),
        OptionSpec("lake-indexed", "lake-indexed", False, 4, "Option 4: the lake with its written indexes"),
        OptionSpec(
            "lake-indexed+cache", "lake-indexed", True, 5, "Option 4 with the stale-while-revalidate cache in front"
        ),
    )
}
DEFAULT_OPTIONS: Final = ("lake-sql", "lake-sql+cache", "clickhouse", "lake-indexed")
CACHED_KINDS: Final = frozenset({"lookup", "history"})  # what the db service caches


def option_spec(name: str) -> OptionSpec:
    try:
        return OPTIONS[name]
    except KeyError:
        raise ConfigError(f"unknown option {name!r}; choose from {', '.join(OPTIONS)}") from None


class OptionRunner:
    """One option, opened over one lake."""

    def __init__(self, spec: OptionSpec, lake: Lake) -> None:
        self.spec = spec
        self.engine = open_engine(spec.engine, lake)
        # An in-process backend as large as the service's default; entries stay fresh for the run.
        self.cache = SwrCache(MemoryBackend(), CachePolicy()) if spec.cached else None

    def ask(self, query: Query) -> tuple[Any, bool | None]:
        """(the engine's answer, or the cached body's bytes; whether the cache served it: None when the
        option has no cache for this query). ``canonical`` turns either into the compared form."""
        if self.cache is None or query.kind not in CACHED_KINDS:
            return call(self.engine, query), None
        key = "\x1f".join([query.kind, *map(str, query.args)])
        served = self.cache.get(key, lambda: self._load(query))
        return served.body, served.state in ("fresh", "stale", "negative")

    @staticmethod
    def canonical(query: Query, raw: Any) -> Any:
        if not isinstance(raw, bytes):
            return answer(query, raw)
        body = orjson.loads(raw)
        if query.kind == "lookup":
            return None if body is None else body["event_id"]
        return [e["event_id"] for e in body]

    def _load(self, query: Query) -> tuple[bytes, bool]:
        raw = call(self.engine, query)
        if query.kind == "lookup":
            return (orjson.dumps(raw.to_json_dict()), True) if raw is not None else (b"null", False)
        return orjson.dumps([e.to_json_dict() for e in raw]), bool(raw)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
        self.engine.close()
