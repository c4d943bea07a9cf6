"""Query engines by name. Each engine answers the same questions over the same lake."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from lakebench.core.errors import ConfigError
from lakebench.engines.base import Engine

if TYPE_CHECKING:  # the lake (pyiceberg, pyarrow) is imported by the engines themselves, when opened
    from lakebench.lake.catalog import Lake

__all__ = ["ENGINES", "LOCAL_ENGINES", "Engine", "clickhouse_hot_days", "open_engine"]


def _lake_sql(lake: Lake) -> Engine:
    from lakebench.engines.lake_sql import LakeSqlEngine

    return LakeSqlEngine(lake)


def _lake_indexed(lake: Lake) -> Engine:
    from lakebench.engines.lake_indexed import LakeIndexedEngine

    return LakeIndexedEngine(lake)


def _clickhouse(lake: Lake) -> Engine:
    from lakebench.engines.clickhouse import ClickHouseEngine

    return ClickHouseEngine(lake, hot_days=clickhouse_hot_days(os.environ.get("LAKEBENCH_CLICKHOUSE_HOT_DAYS", "30")))


def clickhouse_hot_days(days: str) -> float:
    """``LAKEBENCH_CLICKHOUSE_HOT_DAYS``, checked: a number of days above 0."""
    try:
        value = float(days)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"LAKEBENCH_CLICKHOUSE_HOT_DAYS must be a number of days above 0, got {days!r}")
    return value


def _r2sql(lake: Lake) -> Engine:
    from lakebench.engines.r2sql import R2SqlEngine

    return R2SqlEngine(lake)


ENGINES: dict[str, Callable[[Lake], Engine]] = {
    "lake-sql": _lake_sql,
    "lake-indexed": _lake_indexed,
    "clickhouse": _clickhouse,
    "r2sql": _r2sql,  # needs an R2 SQL account (LAKEBENCH_R2SQL_*)
}
LOCAL_ENGINES = ("lake-sql", "lake-indexed", "clickhouse")


def open_engine(name: str, lake: Lake) -> Engine:
    try:
        factory = ENGINES[name]
    except KeyError:
        raise ConfigError(f"unknown engine {name!r}; choose one of: {', '.join(sorted(ENGINES))}") from None
    return factory(lake)
