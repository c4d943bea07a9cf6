"""Which keys a direct-lookup benchmark asks for: popular-first Zipf, uniform, and keys that do not exist.

Keys come from the lake itself (key columns only, read with pyiceberg), so the workload matches
whatever data the lake holds, generated or imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow.compute as pc

from lakebench.generate.text import zipf_cdf
from lakebench.lake.catalog import Lake

Key = tuple[str, str]
YCSB_ZIPF = 0.99


@dataclass(frozen=True, slots=True)
class KeySpace:
    """Distinct keys, most events first."""

    keys: list[Key]
    events: int
    latest: list[Key] = field(default_factory=list)  # the entities changed last, newest first
    span_days: float = 0.0  # from the oldest event to the newest

    def zipf(self, n: int, rng: np.random.Generator) -> list[Key]:
        ranks = np.searchsorted(zipf_cdf(len(self.keys), YCSB_ZIPF), rng.random(n))
        return [self.keys[int(r)] for r in ranks]

    def uniform(self, n: int, rng: np.random.Generator) -> list[Key]:
        return [self.keys[int(i)] for i in rng.integers(0, len(self.keys), size=n)]

    def missing(self, n: int, rng: np.random.Generator) -> list[Key]:
        """Keys in real namespaces, next to real ids, that are not in the lake."""
        present = set(self.keys)
        out: list[Key] = []
        while len(out) < n:
            ns, eid = self.keys[int(rng.integers(0, len(self.keys)))]
            candidate = (ns, f"{eid}~missing-{int(rng.integers(0, 1 << 30))}")
            if candidate not in present:
                out.append(candidate)
        return out


def key_space(lake: Lake) -> KeySpace:
    table = lake.table()
    if table.current_snapshot() is None:
        return KeySpace([], 0)
    keys = table.scan(selected_fields=("entity_ns", "entity_id", "ts")).to_arrow()
    counts = keys.group_by(["entity_ns", "entity_id"]).aggregate([("entity_id", "count"), ("ts", "max")])
    order = pc.sort_indices(
        counts,
        sort_keys=[("entity_id_count", "descending"), ("entity_ns", "ascending"), ("entity_id", "ascending")],
    )
    counts = counts.take(order)
    pairs = list(zip(counts["entity_ns"].to_pylist(), counts["entity_id"].to_pylist(), strict=True))
    newest = pc.sort_indices(counts, sort_keys=[("ts_max", "descending"), ("entity_ns", "ascending")])
    latest = [pairs[int(i)] for i in newest.to_pylist()[: max(1, min(100, len(pairs) // 100))]]
    low, high = pc.min_max(keys["ts"]).values()
    span = (high.as_py() - low.as_py()).total_seconds() / 86400 if keys.num_rows else 0.0
    return KeySpace(pairs, keys.num_rows, latest, span)
