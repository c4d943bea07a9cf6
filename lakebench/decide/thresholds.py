"""The seed's decision framework, applied to measured figures.

- direct lookup < 500 ms                 -> Option 1: lake SQL only (R2 SQL), no cache
- direct lookup 500–2000 ms              -> Option 2: lake SQL behind a stale-while-revalidate cache
- direct lookup > 2000 ms, or full-text
  search > 5 s                           -> Option 3: ClickHouse for hot data, lake SQL for the archive
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

LOOKUP_THRESHOLD_MS: Final = 500.0
LOOKUP_CACHE_LIMIT_MS: Final = 2000.0
SEARCH_THRESHOLD_MS: Final = 5000.0

OPTIONS: Final[dict[int, str]] = {
    1: "Option 1: lake SQL only (R2 SQL over Iceberg), no cache",
    2: "Option 2: lake SQL + stale-while-revalidate cache",
    3: "Option 3: ClickHouse (hot window) + lake SQL (archive)",
}


@dataclass(frozen=True, slots=True)
class Decision:
    option: int
    name: str
    reason: str


def decide(lookup_ms: float, *, lookup_label: str, search_ms: float | None = None, search_label: str = "") -> Decision:
    """Pick an option from the judged direct-lookup latency (and full-text search latency when measured)."""
    notes: list[str] = []
    if search_ms is None:
        notes.append("full-text search not measured in this run, so only direct lookup decides")
    elif search_ms > SEARCH_THRESHOLD_MS:
        reason = f"{search_label} = {search_ms:.1f} ms > {SEARCH_THRESHOLD_MS:.0f} ms search threshold"
        return Decision(3, OPTIONS[3], reason)
    if lookup_ms < LOOKUP_THRESHOLD_MS:
        option, rule = 1, f"< {LOOKUP_THRESHOLD_MS:.0f} ms"
    elif lookup_ms <= LOOKUP_CACHE_LIMIT_MS:
        option, rule = (
            2,
            f"within {LOOKUP_THRESHOLD_MS:.0f}–{LOOKUP_CACHE_LIMIT_MS:.0f} ms (a cache absorbs it)",
        )
    else:
        option, rule = 3, f"> {LOOKUP_CACHE_LIMIT_MS:.0f} ms"
    reason = f"{lookup_label} = {lookup_ms:.1f} ms {rule}"
    if search_ms is not None:
        reason += f"; {search_label} = {search_ms:.1f} ms ≤ {SEARCH_THRESHOLD_MS:.0f} ms"
    if notes:
        reason += f" ({'; '.join(notes)})"
    return Decision(option, OPTIONS[option], reason)
