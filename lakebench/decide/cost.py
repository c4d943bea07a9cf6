"""What each option costs a month: a dated, editable price table, the workload's inputs, and the
figures a run measured (requests and bytes per lookup, the cache's hit ratio).

The price table is a TOML file (``prices.toml`` beside this module, or ``--prices FILE``): each
price with its unit, free allowance, source and date, so a reader can check it and a user can
edit it. The arithmetic is plain and shown line by line (``Breakdown.lines``):

- storage: the lake's bytes (events/day x retention x Parquet bytes per event) over the free tier;
- writes (Class A): commits/day x object writes per commit (data file, manifest, manifest list,
  metadata) — the pipeline commits once per roll interval while events flow;
- reads (Class B): lookups that reach the lake x object requests per lookup, as measured;
- R2 SQL: bytes scanned per lookup (as measured, at least the 10 MB R2 SQL bills a query) x
  lookups that reach the lake; the catalog: operations per commit and per query;
- Pipelines: bytes written by its Iceberg sink; Workers: the plan, and requests over the included ones;
- Option 2 adds a cache and sends only the misses (1 - hit ratio, as measured) to the lake;
- Option 3 adds a ClickHouse service holding the hot window, which answers the lookups;
- Option 4 (the indexed lake) is read by a Worker straight from R2: no R2 SQL, no catalog call per
  query, object requests per lookup as measured; Option 5 is Option 4 behind the cache.

Scaling multiplies events and lookups; fixed-capacity lines (one Redis plan, one ClickHouse
service) are not resized, so at 10x and 100x Options 2 and 3 are lower bounds: check those plans'
limits (a 250 MB cache, one 8 GiB replica) against the scaled volume.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from lakebench.core.errors import ConfigError

DAYS_PER_MONTH: Final = 30  # the unit every daily figure is multiplied by (providers bill calendar months)
GB: Final = 1e9  # providers bill decimal gigabytes
R2_SQL_MIN_BYTES: Final = 10e6  # R2 SQL bills at least 10 MB a query
COST_OPTIONS: Final = (1, 2, 3, 4, 5)
DEFAULT_PRICES: Final = Path(__file__).with_name("prices.toml")


@dataclass(frozen=True, slots=True)
class Price:
    value: float  # USD per unit
    unit: str
    free: float = 0.0  # free allowance per month, in the unit's quantity
    source: str = ""
    as_of: str = ""


@dataclass(frozen=True, slots=True)
class PriceTable:
    prices: dict[str, Price]
    as_of: str

    def __getitem__(self, name: str) -> Price:
        try:
            return self.prices[name]
        except KeyError:
            raise ConfigError(f"the price table has no {name!r}; add it to the prices file") from None


def load_prices(path: Path | None = None) -> PriceTable:
    """The price table of a TOML file: ``[prices.<name>] value, unit, free, source, as_of``."""
    path = path or DEFAULT_PRICES
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the prices file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the prices file {path} is not valid TOML: {exc}") from None
    prices = {}
    for name, entry in (document.get("prices") or {}).items():
        try:
            prices[name] = Price(
                value=float(entry["value"]),
                unit=str(entry["unit"]),
                free=float(entry.get("free", 0.0)),
                source=str(entry.get("source", "")),
                as_of=str(entry.get("as_of", document.get("as_of", ""))),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"prices file {path}: [prices.{name}] needs a numeric value and a unit ({exc})") from None
    return PriceTable(prices, str(document.get("as_of", "")))


@dataclass(frozen=True, slots=True)
class Workload:
    """What the platform carries: the seed's example is 100K lookups a day, 80K of them from cache."""

    events_per_day: float = 10_000
    raw_bytes_per_event: float = 225_000
    parquet_bytes_per_event: float = 60_000  # measured from a lake: its Parquet bytes / events
    retention_days: float = 365
    lookups_per_day: float = 100_000
    commits_per_day: float = 17_280  # one per 5 s roll interval, around the clock
    writes_per_commit: float = 4  # data file, manifest, manifest list, table metadata
    catalog_ops_per_commit: float = 2  # load the table, commit
    catalog_ops_per_query: float = 1  # a lake SQL query loads the table

    def scaled(self, factor: float) -> Workload:
        """The same platform at ``factor`` times the volume: events, lookups (commits stay per interval)."""
        return replace(self, events_per_day=self.events_per_day * factor, lookups_per_day=self.lookups_per_day * factor)

    @property
    def stored_gb(self) -> float:
        return self.events_per_day * self.retention_days * self.parquet_bytes_per_event / GB

    @property
    def written_gb_per_month(self) -> float:
        return self.events_per_day * self.raw_bytes_per_event * DAYS_PER_MONTH / GB


@dataclass(frozen=True, slots=True)
class Measured:
    """Figures from a run: per lookup that reaches the lake, and the cache's hit ratio."""

    requests_per_lookup: float = 1.0  # object-store requests (GET, HEAD, LIST): Class B operations
    bytes_scanned_per_lookup: float = 0.0  # what a lake SQL service reads for one lookup
    cache_hit_ratio: float = 0.8  # 1 - engine calls / requests, as /metrics reports it
    hot_window_days: float = 30  # what ClickHouse holds (Option 3)


@dataclass(slots=True)
class Breakdown:
    option: int
    lines: list[tuple[str, float, str]] = field(default_factory=list)  # (item, USD a month, how)

    def add(self, item: str, usd: float, how: str) -> None:
        self.lines.append((item, usd, how))

    @property
    def total(self) -> float:
        return sum(usd for _, usd, _ in self.lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "option": self.option,
            "total_usd": round(self.total, 2),
            "lines": [{"item": i, "usd": round(u, 2), "how": h} for i, u, h in self.lines],
        }


def _billable(quantity: float, price: Price) -> tuple[float, str]:
    over = max(0.0, quantity - price.free)
    free = f" - {price.free:,.0f} free" if price.free else ""
    return over * price.value, f"({quantity:,.6g}{free}) x ${price.value:g} {price.unit}"


def _per_million(count: float, price: Price) -> tuple[float, str]:
    over = max(0.0, count - price.free)
    free = f" - {price.free / 1e6:,.1f}M free" if price.free else ""
    return over / 1e6 * price.value, f"({count / 1e6:,.2f}M{free}) x ${price.value:g} {price.unit}"


def _lake_lines(
    out: Breakdown, prices: PriceTable, w: Workload, m: Measured, lake_lookups_per_day: float, *, sql: bool = True
) -> None:
    out.add("R2 storage", *_billable(w.stored_gb, prices["r2_storage"]))
    out.add(
        "R2 Class A (writes)",
        *_per_million(w.commits_per_day * w.writes_per_commit * DAYS_PER_MONTH, prices["r2_class_a"]),
    )
    reads = lake_lookups_per_day * m.requests_per_lookup * DAYS_PER_MONTH
    out.add("R2 Class B (reads)", *_per_million(reads, prices["r2_class_b"]))
    if sql:
        billed = max(m.bytes_scanned_per_lookup, R2_SQL_MIN_BYTES) if lake_lookups_per_day else 0.0
        scanned_gb = lake_lookups_per_day * billed * DAYS_PER_MONTH / GB
        out.add("R2 SQL (scanned)", *_billable(scanned_gb, prices["r2_sql_scanned"]))
    per_query = w.catalog_ops_per_query if sql else 0.0  # an indexed reader loads the table per commit, not per query
    ops = (w.commits_per_day * w.catalog_ops_per_commit + lake_lookups_per_day * per_query) * DAYS_PER_MONTH
    out.add("R2 Data Catalog (operations)", *_per_million(ops, prices["r2_data_catalog"]))
    out.add("Pipelines (Iceberg sink)", *_billable(w.written_gb_per_month, prices["pipelines_sink"]))


def _workers_lines(out: Breakdown, prices: PriceTable, w: Workload) -> None:
    out.add("Workers (base)", *_billable(1, prices["workers_base"]))
    out.add("Workers (requests)", *_per_million(w.lookups_per_day * DAYS_PER_MONTH, prices["workers_requests"]))


def monthly_cost(option: int, prices: PriceTable, workload: Workload, measured: Measured) -> Breakdown:
    """One option's monthly cost, line by line."""
    out = Breakdown(option)
    if option == 1:
        _lake_lines(out, prices, workload, measured, workload.lookups_per_day)
    elif option == 2:
        misses = workload.lookups_per_day * (1 - measured.cache_hit_ratio)
        _lake_lines(out, prices, workload, measured, misses)
        out.add("cache (Redis)", *_billable(1, prices["redis_cache"]))
    elif option == 3:
        _lake_lines(out, prices, workload, measured, 0.0)  # the archive stays in the lake; ClickHouse answers
        out.add("ClickHouse service", *_billable(1, prices["clickhouse_service"]))
        hot_tb = workload.events_per_day * measured.hot_window_days * workload.parquet_bytes_per_event / 1e12
        out.add("ClickHouse storage (hot window + backup)", *_billable(2 * hot_tb, prices["clickhouse_storage"]))
    elif option in (4, 5):  # a Worker reads the lake's indexes and row groups itself: no R2 SQL
        reaching = workload.lookups_per_day * (1 - measured.cache_hit_ratio if option == 5 else 1.0)
        _lake_lines(out, prices, workload, measured, reaching, sql=False)
        if option == 5:
            out.add("cache (Redis)", *_billable(1, prices["redis_cache"]))
    else:
        raise ConfigError(f"option must be one of {', '.join(map(str, COST_OPTIONS))}, got {option}")
    _workers_lines(out, prices, workload)
    return out


def cost_table(
    prices: PriceTable,
    workload: Workload,
    measured: Measured,
    scales: tuple[float, ...] = (1, 10, 100),
    options: tuple[int, ...] = (1, 2, 3),
) -> dict[str, Any]:
    """Every option at each scale of the volume: ``{"1x": {"option 1": {...}, ...}, ...}``."""
    return {
        f"{scale:g}x": {
            f"option {o}": monthly_cost(o, prices, workload.scaled(scale), measured).to_dict() for o in options
        }
        for scale in scales
    }
