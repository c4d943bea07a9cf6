"""The cost arithmetic against examples worked out by hand from the price table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lakebench.cli import app
from lakebench.core.errors import ConfigError
from lakebench.decide.cost import Measured, Workload, cost_table, load_prices, monthly_cost

ROUND = """
as_of = "2000-01-01"
[prices.r2_storage]
value = 0.02
unit = "per GB-month"
free = 10
[prices.r2_class_a]
value = 5.0
unit = "per million"
free = 1_000_000
[prices.r2_class_b]
value = 0.5
unit = "per million"
free = 1_000_000
[prices.r2_sql_scanned]
value = 0.01
unit = "per GB"
free = 0
[prices.r2_data_catalog]
value = 10.0
unit = "per million"
free = 0
[prices.pipelines_sink]
value = 0.1
unit = "per GB"
free = 0
[prices.workers_base]
value = 5.0
unit = "per month"
[prices.workers_requests]
value = 0.3
unit = "per million"
free = 0
[prices.redis_cache]
value = 10.0
unit = "per month"
[prices.clickhouse_service]
value = 100.0
unit = "per month"
[prices.clickhouse_storage]
value = 20.0
unit = "per TB-month"
"""

# 1,000 events a day of 100 KB raw, 20 KB of Parquet, kept 100 days: 1,000 x 100 x 20e3 B = 2 GB stored.
# 100 commits a day x 4 writes x 30 days = 12,000 writes; 2 catalog ops a commit, 1 a query.
# 10,000 lookups a day; each makes 2 requests and scans 50 MB (over R2 SQL's 10 MB minimum).
WORKLOAD = Workload(
    events_per_day=1_000,
    raw_bytes_per_event=100_000,
    parquet_bytes_per_event=20_000,
    retention_days=100,
    lookups_per_day=10_000,
    commits_per_day=100,
)
MEASURED = Measured(requests_per_lookup=2, bytes_scanned_per_lookup=50e6, cache_hit_ratio=0.9, hot_window_days=30)


@pytest.fixture
def prices(tmp_path: Path) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(ROUND)
    return path


def lines(option: int, prices: Path, workload: Workload = WORKLOAD) -> dict[str, float]:
    return {item: round(usd, 6) for item, usd, _ in monthly_cost(option, load_prices(prices), workload, MEASURED).lines}


def test_option_1_by_hand(prices: Path) -> None:
    assert lines(1, prices) == {
        "R2 storage": 0.0,  # 2 GB, under the 10 GB free
        "R2 Class A (writes)": 0.0,  # 12,000 writes, under 1M free
        "R2 Class B (reads)": 0.0,  # 10,000 x 2 x 30 = 600,000 reads, under the 1M free
        "R2 SQL (scanned)": 150.0,  # 10,000 x 50 MB x 30 = 15,000 GB x $0.01
        "R2 Data Catalog (operations)": 3.06,  # (100 x 2 + 10,000) x 30 = 306,000 ops x $10/M
        "Pipelines (Iceberg sink)": 0.3,  # 1,000 x 100 KB x 30 = 3 GB x $0.1
        "Workers (base)": 5.0,
        "Workers (requests)": 0.09,  # 300,000 requests x $0.3/M
    }


def test_option_2_sends_only_the_misses_to_the_lake(prices: Path) -> None:
    got = lines(2, prices)
    assert got["R2 SQL (scanned)"] == 15.0  # 1,000 misses a day x 50 MB x 30 = 1,500 GB x $0.01
    assert got["R2 Data Catalog (operations)"] == 0.36  # (200 + 1,000) x 30 = 36,000 ops x $10/M
    assert got["cache (Redis)"] == 10.0 and got["Workers (requests)"] == 0.09  # every lookup still reaches the Worker
    assert round(sum(got.values()), 6) == round(0 + 0 + 0 + 15.0 + 0.36 + 0.3 + 10.0 + 5.0 + 0.09, 6)


def test_option_3_answers_from_clickhouse(prices: Path) -> None:
    got = lines(3, prices)
    assert got["R2 SQL (scanned)"] == 0.0 and got["R2 Class B (reads)"] == 0.0
    assert got["R2 Data Catalog (operations)"] == 0.06  # commits only: 100 x 2 x 30 = 6,000 ops x $10/M
    assert got["ClickHouse service"] == 100.0
    # hot window: 1,000 x 30 days x 20 KB = 0.0006 TB, with its backup 0.0012 TB x $20
    assert got["ClickHouse storage (hot window + backup)"] == 0.024


def test_option_4_reads_the_indexed_lake_without_r2_sql(prices: Path) -> None:
    got = lines(4, prices)
    assert "R2 SQL (scanned)" not in got  # a Worker reads the index and the row group itself
    assert got["R2 Class B (reads)"] == 0.0  # 10,000 x 2 x 30 = 600,000 reads, under the 1M free
    assert got["R2 Data Catalog (operations)"] == 0.06  # commits only: no catalog call per query
    assert round(sum(got.values()), 6) == round(0.06 + 0.3 + 5.0 + 0.09, 6)
    big = lines(4, prices, WORKLOAD.scaled(10))  # 6M reads: 5M over the free million x $0.5
    assert big["R2 Class B (reads)"] == 2.5


def test_option_5_is_option_4_behind_the_cache(prices: Path) -> None:
    got = lines(5, prices, WORKLOAD.scaled(10))
    assert got["R2 Class B (reads)"] == 0.0  # 10% of 6M reads reach the lake: 600,000, under the free million
    assert got["cache (Redis)"] == 10.0 and "R2 SQL (scanned)" not in got
    with pytest.raises(ConfigError, match="option must be one of 1, 2, 3, 4, 5"):
        lines(6, prices)


def test_scaling_multiplies_volume_and_free_tiers_stop_covering(prices: Path) -> None:
    big = WORKLOAD.scaled(100)
    got = lines(1, prices, big)
    assert got["R2 storage"] == round((200 - 10) * 0.02, 6)  # 200 GB stored
    assert got["R2 Class B (reads)"] == round((60 - 1) * 0.5, 6)  # 60M reads, 1M free
    assert got["R2 Class A (writes)"] == 0.0  # commits are per roll interval, not per event
    table = cost_table(load_prices(prices), WORKLOAD, MEASURED)
    assert list(table) == ["1x", "10x", "100x"]
    assert table["100x"]["option 1"]["total_usd"] == round(sum(got.values()), 2)


def test_r2_sql_bills_at_least_10_mb_a_query(prices: Path) -> None:
    small = Measured(requests_per_lookup=1, bytes_scanned_per_lookup=1_000, cache_hit_ratio=0.0)
    got = {item: usd for item, usd, _ in monthly_cost(1, load_prices(prices), WORKLOAD, small).lines}
    assert round(got["R2 SQL (scanned)"], 6) == 30.0  # 10,000 x 10 MB x 30 = 3,000 GB x $0.01


def test_the_built_in_table_is_dated_and_sourced() -> None:
    table = load_prices()
    assert table.as_of and all(p.source.startswith("https://") for p in table.prices.values())
    w = Workload()  # 10,000 pages a day, 60 KB of Parquet each, kept a year: 219 GB
    storage = monthly_cost(1, table, w, Measured()).lines[0]
    assert storage[0] == "R2 storage" and round(storage[1], 3) == round((219 - 10) * 0.015, 3)


def test_bad_price_files_are_clear_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[prices.r2_storage]\nvalue = 'cheap'\nunit = 'GB'\n")
    with pytest.raises(ConfigError, match=r"\[prices.r2_storage\] needs a numeric value"):
        load_prices(broken)
    partial = tmp_path / "partial.toml"
    partial.write_text('[prices.r2_storage]\nvalue = 0.015\nunit = "per GB-month"\n')
    with pytest.raises(ConfigError, match="has no 'r2_class_a'"):
        monthly_cost(1, load_prices(partial), WORKLOAD, MEASURED)
    result = CliRunner().invoke(app, ["cost", "--prices", str(tmp_path / "absent.toml")])
    assert result.exit_code != 0 and "cannot read the prices file" in str(result.exception)


def test_the_cost_command_prints_every_option_and_scale(prices: Path) -> None:
    result = CliRunner().invoke(app, ["cost", "--prices", str(prices), "--lookups-per-day", "10000", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["prices_as_of"] == "2000-01-01"
    assert set(document) >= {"1x", "10x", "100x"} and set(document["1x"]) == {"option 1", "option 2", "option 3"}
    assert document["workload"]["lookups_per_day"] == 10_000
