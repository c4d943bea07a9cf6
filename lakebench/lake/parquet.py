"""How lakebench lays out a Parquet file: key-sorted, zstd, row groups small enough for point lookups."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from lakebench.lake.schema import sort_for_lookup, text_bytes

# Statistics where they prune (keys, time, type); none for bodies, which would only bloat footers.
STATS_COLUMNS = ["event_id", "entity_ns", "entity_id", "ts", "type", "version"]
DICTIONARY_COLUMNS = ["entity_ns", "type"]


@dataclass(frozen=True, slots=True)
class ParquetOptions:
    row_group_bytes: int = 512 << 10  # uncompressed bytes per row group: a point lookup decodes about this much
    max_row_group_rows: int = 64 * 1024
    compression: str = "zstd"
    compression_level: int | None = None


@dataclass(frozen=True, slots=True)
class FileStats:
    rows: int
    row_groups: int
    bytes: int
    raw_bytes: int


def rows_per_group(table: pa.Table, options: ParquetOptions) -> int:
    rows = int(table.num_rows)
    if rows == 0:
        return 1
    per_row = max(1, int(table.nbytes) // rows)
    return max(1, min(options.max_row_group_rows, options.row_group_bytes // per_row))


def write_events_parquet(
    table: pa.Table, where: Path | BinaryIO, options: ParquetOptions = ParquetOptions(), *, presorted: bool = False
) -> FileStats:
    """Write events (in the lake's Arrow schema) as one sorted Parquet file."""
    ordered = table if presorted else sort_for_lookup(table)
    group_rows = rows_per_group(ordered, options)
    with pq.ParquetWriter(
        where,
        ordered.schema,
        compression=options.compression,
        compression_level=options.compression_level,
        use_dictionary=DICTIONARY_COLUMNS,
        write_statistics=STATS_COLUMNS,
    ) as writer:
        writer.write_table(ordered, row_group_size=group_rows)
    size = where.stat().st_size if isinstance(where, Path) else where.tell()
    groups = (ordered.num_rows + group_rows - 1) // group_rows
    return FileStats(rows=ordered.num_rows, row_groups=groups, bytes=size, raw_bytes=text_bytes(ordered))
