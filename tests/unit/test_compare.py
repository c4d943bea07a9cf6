"""Comparing two runs: a change is called only when it is significant and beyond the factor."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lakebench.benchmark.compare import compare_results, compare_samples
from lakebench.benchmark.results import SCHEMA, Dataset, Decision, RunResult, environment, summarise, write_result
from lakebench.cli import app
from lakebench.core.errors import ConfigError

runner = CliRunner()


def lognormal(seed: int, median_ms: float, n: int = 300) -> list[float]:
    return list(np.random.default_rng(seed).lognormal(np.log(median_ms), 0.3, n))


def result_file(tmp_path: Path, run_id: str, samples: dict[str, list[float]], errors: int = 0) -> Path:
    """A result file whose benchmarks hold these samples; the first one counts ``errors`` wrong answers."""
    now = datetime(2026, 12, 3, tzinfo=UTC)
    result = RunResult(
        schema=SCHEMA,
        run_id=run_id,
        started_at=now,
        finished_at=now,
        lake={"url": "file:///x"},
        environment=environment(),
        dataset=Dataset(
            source="s", reused=False, events=1, entities=1, raw_bytes=1, parquet_bytes=1, files=1, snapshot_id=1
        ),
        method={},
        benchmarks=[
            summarise(name, "lake-sql", "d", values, errors=errors if i == 0 else 0, threshold_ms=500.0)
            for i, (name, values) in enumerate(samples.items())
        ],
        decision=Decision(option=1, name="n", reason="r", judged={}),
    )
    return write_result(result, tmp_path / run_id)


def test_the_verdicts_need_significance_and_size() -> None:
    base = lognormal(1, 10.0)
    assert compare_samples(base, lognormal(2, 10.0))[2] == "no change"  # the same distribution, other draws
    ratio, p, verdict = compare_samples(base, lognormal(3, 13.0))
    assert verdict == "slower" and p < 0.05 and 1.2 < ratio < 1.4
    assert compare_samples(base, lognormal(4, 7.0))[2] == "faster"
    small = compare_samples(base, [v * 1.05 for v in lognormal(5, 10.0, 3000)])
    assert small[1] < 0.05 and small[2] == "no change"  # significant, but within the 10 % factor
    assert compare_samples([1.0], [2.0])[2] == "not comparable"


def test_two_result_files_compared_benchmark_by_benchmark(tmp_path: Path) -> None:
    before = result_file(tmp_path, "01J0000000000000000000AAAA", {"zipf": lognormal(1, 10), "missing": lognormal(2, 5)})
    after = result_file(tmp_path, "01J0000000000000000000BBBB", {"zipf": lognormal(3, 14), "uniform": lognormal(4, 9)})
    rows = compare_results(before, after)
    assert [(r.benchmark, r.change) for r in rows] == [("zipf", "slower")]  # only what both runs measured
    assert rows[0].samples == (300, 300)

    cli = runner.invoke(app, ["compare", str(before), str(after), "--json"])
    assert cli.exit_code == 1  # something got slower: a CI gate fails
    assert json.loads(cli.stdout)["rows"][0]["change"] == "slower"
    same = runner.invoke(app, ["compare", str(before), str(before)])
    assert same.exit_code == 0 and "no change" in same.stdout


def test_files_that_share_nothing_or_do_not_exist_are_clear_errors(tmp_path: Path) -> None:
    a = result_file(tmp_path, "01J0000000000000000000CCCC", {"one": lognormal(1, 10)})
    b = result_file(tmp_path, "01J0000000000000000000DDDD", {"two": lognormal(1, 10)})
    with pytest.raises(ConfigError, match="share no benchmark"):
        compare_results(a, b)
    with pytest.raises(ConfigError, match="cannot read a result file"):
        compare_results(a, tmp_path / "absent.json")


def test_a_run_with_wrong_answers_never_passes_and_nan_is_not_json(tmp_path: Path) -> None:
    before = result_file(tmp_path, "01J0000000000000000000EEEE", {"zipf": lognormal(1, 10), "tiny": [1.0]})
    after = result_file(tmp_path, "01J0000000000000000000FFFF", {"zipf": lognormal(2, 5), "tiny": [2.0]}, errors=3)
    cli = runner.invoke(app, ["compare", str(before), str(after), "--json"])
    assert cli.exit_code == 1
    rows = {r["benchmark"]: r for r in json.loads(cli.stdout)["rows"]}  # strict JSON: no NaN
    assert rows["zipf"]["change"] == "wrong answers"  # faster, but wrong
    assert rows["tiny"]["change"] == "not comparable" and rows["tiny"]["ratio"] is None
