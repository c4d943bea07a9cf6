from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from lakebench.benchmark.results import SCHEMA, Dataset, Decision, RunResult, environment, summarise, write_result
from lakebench.decide.thresholds import decide


@pytest.mark.parametrize(
    ("lookup_ms", "option"), [(0.5, 1), (499.9, 1), (500.0, 2), (1999.0, 2), (2000.0, 2), (2000.1, 3)]
)
def test_seed_framework_boundaries(lookup_ms: float, option: int) -> None:
    decision = decide(lookup_ms, lookup_label="lookup p95")
    assert decision.option == option
    assert f"lookup p95 = {lookup_ms:.1f} ms" in decision.reason


def test_slow_search_forces_option_3_even_with_fast_lookups() -> None:
    decision = decide(3.0, lookup_label="lookup p95", search_ms=6000.0, search_label="search p95")
    assert decision.option == 3 and "search p95 = 6000.0 ms" in decision.reason
    assert decide(3.0, lookup_label="l", search_ms=4000.0, search_label="s").option == 1


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
