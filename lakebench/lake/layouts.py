"""Which rows go into which file, and under which path: the lake's physical layouts.

Every layout writes key-sorted files into the same Iceberg table, so every engine reads them all;
a layout only changes how well files prune for a given query.

- ``flat``: one key-sorted run per batch (``events/data/<name>.parquet``).
- ``lookup``: namespace-bucketed, key-sorted (``events/data/ns_bucket=07/…``): a direct lookup
  touches one bucket's files and, within them, one row group.
- ``hive-time``: Cloudflare Pipelines' time partitions (``events/data/year=2025/month=10/day=04/…``),
  key-sorted within each day: recent-events and time-range queries prune by path and statistics.
"""

from __future__ import annotations

import zlib
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from lakebench.core.errors import ConfigError
from lakebench.lake.schema import sort_indices

Part = tuple[str, pa.Array]  # (relative folder, row indices in key order)


class Layout(Protocol):
    name: str

    def split(self, table: pa.Table) -> list[Part]:
        """Group rows into files' folders; each group's indices are in key order."""
        ...


def _groups(table: pa.Table, labels: pa.Array) -> list[Part]:
    """Rows grouped by label, each group in key order."""
    order = sort_indices(table)
    ordered_labels = labels.take(order)
    parts: list[Part] = []
    for label in pc.unique(ordered_labels).to_pylist():
        mask = pc.equal(ordered_labels, label)
        parts.append((str(label), order.filter(mask)))
    return sorted(parts, key=lambda p: p[0])


class FlatLayout:
    name = "flat"

    def split(self, table: pa.Table) -> list[Part]:
        return [("", sort_indices(table))]


class LookupLayout:
    name = "lookup"

    def __init__(self, buckets: int = 16) -> None:
        self.buckets = buckets

    def bucket(self, namespace: str) -> int:
        return zlib.crc32(namespace.encode("utf-8")) % self.buckets

    def split(self, table: pa.Table) -> list[Part]:
        encoded = pc.dictionary_encode(table["entity_ns"]).combine_chunks()
        buckets = pa.array([f"ns_bucket={self.bucket(ns):02d}" for ns in encoded.dictionary.to_pylist()])
        return _groups(table, buckets.take(encoded.indices))


class HiveTimeLayout:
    name = "hive-time"

    def split(self, table: pa.Table) -> list[Part]:
        folders = pc.strftime(table["ts"], format="year=%Y/month=%m/day=%d")  # ts is UTC
        return _groups(table, folders.combine_chunks())


LAYOUTS = {"flat": FlatLayout, "lookup": LookupLayout, "hive-time": HiveTimeLayout}


def get_layout(name: str) -> Layout:
    try:
        factory = LAYOUTS[name]
    except KeyError:
        raise ConfigError(f"unknown layout {name!r}; choose one of: {', '.join(LAYOUTS)}") from None
    layout: Layout = factory()
    return layout
