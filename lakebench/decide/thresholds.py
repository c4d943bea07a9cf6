"""The seed's thresholds and options.

The seed picked an option by lookup latency alone (< 500 ms Option 1, 500–2000 ms Option 2, above,
or search over 5 s, Option 3). lakebench measures every option instead and picks, per network
profile, the cheapest that meets every threshold (lakebench/benchmark/job.py, ``decide_profile``);
these are the thresholds' defaults and the options' names, which the service's /status shows.
"""

from __future__ import annotations

from typing import Final

LOOKUP_THRESHOLD_MS: Final = 500.0
LOOKUP_CACHE_LIMIT_MS: Final = 2000.0
SEARCH_THRESHOLD_MS: Final = 5000.0

OPTIONS: Final[dict[int, str]] = {
    1: "Option 1: lake SQL only (R2 SQL over Iceberg), no cache",
    2: "Option 2: lake SQL + stale-while-revalidate cache",
    3: "Option 3: ClickHouse (hot window) + lake SQL (archive)",
}
