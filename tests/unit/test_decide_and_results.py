from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lakebench.benchmark.job import decide_profile
from lakebench.benchmark.results import (
    SCHEMA,
    Dataset,
    Decision,
    OptionResult,
    RunResult,
    environment,
    summarise,
    write_result,
)


def option(name: str, usd: float | None, passed: bool, profile: str = "r2", failure: str | None = None) -> OptionResult:
    return OptionResult(
        profile=profile,
        option=name,
        description=name,
        cost_option=1,
        first_answer_s=1.0,
        open_s=0.5,
        first_query=["lookup", "ns", "id"],
        cold="",
        passed=passed,
        verdict=f"{name} verdict",
        failure=failure,
        monthly_usd=usd,
    )


def test_the_decision_is_the_cheapest_option_that_meets_every_threshold() -> None:
    results = [option("a", 100.0, True), option("b", 20.0, True), option("c", 5.0, False)]
    decision = decide_profile("r2", results)
    assert decision.name == "b" and decision.judged["passing"] == ["b", "a"]
    assert "b meets every threshold (b verdict)" in decision.reason and "$20.00 a month" in decision.reason
    assert "also meeting them: a $100.00" in decision.reason and "not meeting them: c" in decision.reason


def test_when_no_option_meets_the_thresholds_the_decision_says_so_and_why_each_missed() -> None:
    results = [option("a", 100.0, False), option("b", None, False, failure="b failed: boom")]
    decision = decide_profile("r2", results)
    assert (decision.option, decision.name) == (0, "none")
    assert "no option meets every threshold" in decision.reason and "b: b verdict" in decision.reason
    assert decision.judged["closest"] == "a"


def test_summary_uses_numpy_percentiles_and_the_judged_statistic() -> None:
    samples = [1.0, 2.0, 3.0, 4.0, 100.0]
    bench = summarise("b", "e", "d", samples, threshold_ms=50.0, judged_by="p50")
    assert bench.p95_ms == float(np.percentile(samples, 95)) and bench.max_ms == 100.0
    assert bench.passed is True
    assert summarise("b", "e", "d", samples, threshold_ms=50.0, judged_by="max").passed is False
    assert summarise("b", "e", "d", samples, errors=1, threshold_ms=50.0, judged_by="p50").passed is False
    with pytest.raises(ValueError, match="no samples"):
        summarise("b", "e", "d", [], threshold_ms=1.0)


def test_result_files_are_never_overwritten(tmp_path: Path) -> None:
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    result = RunResult(
        schema=SCHEMA,
        run_id="01J0000000000000000000TEST",
        started_at=now,
        finished_at=now,
        lake={"url": "file:///x"},
        environment=environment(),
        dataset=Dataset(
            source="s", reused=False, events=1, entities=1, raw_bytes=1, parquet_bytes=1, files=1, snapshot_id=1
        ),
        method={},
        benchmarks=[summarise("b", "e", "d", [1.0], threshold_ms=500.0)],
        decision=Decision(option=1, name="n", reason="r", judged={}),
    )
    path = write_result(result, tmp_path)
    assert path == tmp_path / "2026-11-29" / "01J0000000000000000000TEST.json"
    with pytest.raises(FileExistsError):
        write_result(result, tmp_path)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (ConnectionResetError("reset by peer"), True),
        (TimeoutError("read timed out"), True),
        (OSError("When uploading part: AWS Error NETWORK_CONNECTION during CreateMultipartUpload: curlCode 7"), True),
        (OSError("AWS Error SLOW_DOWN during PutObject operation: Please reduce your request rate"), True),
        (OSError("AWS Error INTERNAL_FAILURE during PutObject"), True),
        (OSError("AWS Error ACCESS_DENIED during PutObject operation: Access Denied"), False),
        (OSError("AWS Error NO_SUCH_BUCKET during ListObjectsV2"), False),
        (PermissionError(13, "Permission denied", "/lake/events"), False),
        (FileNotFoundError(2, "No such file or directory", "/gone"), False),
        (OSError(28, "No space left on device"), False),
        (ValueError("a bug"), False),
        # a number that merely contains 401 or 403 is no status code
        (ConnectionResetError("reset while writing 00000000000000401337.parquet"), True),
        (type("OperationalError", (Exception,), {})("database is locked [SQL: ... 00403-uuid.metadata.json]"), True),
        (OSError("HTTP 403 Forbidden"), False),
        (OSError("unexpected status code 503 from the endpoint"), True),
    ],
)
def test_faults_are_classified_by_what_retrying_can_fix(error: Exception, transient: bool) -> None:
    from lakebench.core.errors import StorageError, StorageUnavailable, is_transient

    assert is_transient(error) is transient
    assert is_transient(StorageUnavailable("x")) and not is_transient(StorageError("x"))


def test_a_cached_option_is_priced_by_the_requests_its_misses_made() -> None:
    from lakebench.benchmark.job import _measured

    def bench(name: str, hits: list[bool], heads_per_query: float) -> Any:
        return summarise(
            name,
            "lake-sql+cache",
            "",
            [1.0] * len(hits),
            threshold_ms=None,
            cache_hits=hits,
            cache_hit_ratio=sum(hits) / len(hits),
            requests_per_query={"HEAD": heads_per_query},
            bytes_per_query=heads_per_query * 100,
        )

    zipf = bench("lookup-zipf", [True, True, False] * 2, 2 / 6)  # 2 misses, one HEAD each
    missing = bench("lookup-missing", [True] + [False] * 5, 5 / 6)  # 5 misses, one HEAD each
    measured, counted = _measured([zipf, missing], hot_window_days=3.0)
    assert counted and measured.requests_per_lookup == pytest.approx(1.0)  # 7 requests / 7 misses
    assert measured.bytes_scanned_per_lookup == pytest.approx(100.0)
    assert measured.cache_hit_ratio == pytest.approx(4 / 6) and measured.hot_window_days == 3.0
    uncounted, counted = _measured([summarise("lookup-zipf", "x", "", [1.0], threshold_ms=None)], 30.0)
    assert not counted and uncounted.requests_per_lookup == 1.0  # the model's default, said so
