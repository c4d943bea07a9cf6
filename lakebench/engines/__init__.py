"""Query engines by name. Each engine answers the same questions over the same lake."""

from __future__ import annotations

from collections.abc import Callable

from lakebench.core.errors import ConfigError
from lakebench.engines.base import Engine
from lakebench.lake.catalog import Lake

__all__ = ["ENGINES", "Engine", "open_engine"]


def _lake_sql(lake: Lake) -> Engine:
    from lakebench.engines.lake_sql import LakeSqlEngine

    return LakeSqlEngine(lake)


ENGINES: dict[str, Callable[[Lake], Engine]] = {"lake-sql": _lake_sql}


def open_engine(name: str, lake: Lake) -> Engine:
    try:
        factory = ENGINES[name]
    except KeyError:
        raise ConfigError(f"unknown engine {name!r}; choose one of: {', '.join(sorted(ENGINES))}") from None
    return factory(lake)
