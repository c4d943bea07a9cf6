"""The main job as a user runs it: every option under the local and r2 profiles, one small run
shared by the tests of this module, its figures checked against its own stored raw samples."""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from scipy.stats import mannwhitneyu
from typer.testing import CliRunner

from lakebench.benchmark.job import rejudge
from lakebench.benchmark.queries import ALL_WORKLOADS
from lakebench.benchmark.results import RunResult, load_result, statistics_of
from lakebench.cli import app
from lakebench.core.errors import ConfigError

runner = CliRunner()
OPTIONS = ["lake-sql", "lake-sql+cache", "clickhouse", "lake-indexed"]
LOOKUP_THRESHOLD_MS = 100.0  # between lake-sql's local and r2 lookups: one header request costs r2 150 ms

# One heavy run at a time, and this module's shared run made once: every test of it in one worker.
pytestmark = pytest.mark.xdist_group("benchmark-run")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, Path, str]:
    """(the result, its file, what the command printed)."""
    folder = tmp_path_factory.mktemp("run")
    args = ["run", "--count", "40", "--avg-size-kb", "1", "--samples", "4", "--search-samples", "1"]
    args += ["--repeat", "3", "--warmup", "2", "--options", ",".join(OPTIONS), "--profiles", "local,r2"]
    args += ["--lookup-threshold-ms", str(LOOKUP_THRESHOLD_MS), "--results-dir", str(folder / "results")]
    args += ["--loops", "2", "--open-rate", "50"]
    result = runner.invoke(app, [*args, "--lake", str(folder / "lake")])
    assert result.exit_code == 0, result.output
    files = sorted((folder / "results").glob("*/*.json"))
    assert len(files) == 1
    return load_result(files[0]), files[0], result.stdout


def test_every_stored_summary_and_printed_figure_recomputes_from_the_raw_samples(
    run: tuple[RunResult, Path, str],
) -> None:
    result, _, printed = run
    for b in result.benchmarks:
        figures = statistics_of(b.samples_ms)
        assert (b.p50_ms, b.p95_ms, b.p99_ms, b.max_ms, b.mean_ms) == (
            figures["p50"],
            figures["p95"],
            figures["p99"],
            figures["max"],
            figures["mean"],
        )
        n = len(b.samples_ms) // b.repetitions
        reps = [b.samples_ms[r * n : (r + 1) * n] for r in range(b.repetitions)]
        assert b.rep_p50_ms == [statistics_of(r)["p50"] for r in reps]
        if b.cache_hits is not None:
            assert b.cache_hit_ratio == sum(b.cache_hits) / len(b.cache_hits)
    # The printed table: per profile and option, the worst lookup p50 and p95 and the search p95.
    for o in result.options:
        marks = [b for b in result.benchmarks if b.profile == o.profile and b.engine == o.option]
        lookups = [statistics_of(b.samples_ms) for b in marks if b.name.startswith("lookup")]
        searches = [statistics_of(b.samples_ms) for b in marks if b.name.startswith("search")]
        section = printed.split(f"profile {o.profile}:", 1)[1]
        row = next(line for line in section.splitlines() if line.split() and line.split()[0] == o.option)
        expected = [
            f"{max(f['p50'] for f in lookups):,.1f} ms",
            f"{max(f['p95'] for f in lookups):,.1f} ms",
            f"{max(f['p95'] for f in searches):,.1f} ms",
            f"{o.first_answer_s:.2f} s",
        ]
        cells = re.findall(r"[\d,]+\.\d+ m?s", row)
        assert cells[:4] == expected, row


def test_every_option_under_every_profile_was_asked_the_same_queries(run: tuple[RunResult, Path, str]) -> None:
    result, _, _ = run
    by_workload: dict[str, list[Any]] = defaultdict(list)
    for b in result.benchmarks:
        assert len(b.queries) == len(b.samples_ms)
        by_workload[b.name].append(b)
    assert set(by_workload) == {"lookup-zipf", "lookup-missing", "search-selective", "search-common"}
    for name, marks in by_workload.items():
        assert {(b.profile, b.engine) for b in marks} == {(p, o) for p in ("local", "r2") for o in OPTIONS}, name
        assert all(b.queries == marks[0].queries for b in marks), name
        assert all(b.errors == 0 for b in marks), [(b.engine, b.error_examples) for b in marks]
    assert len({json.dumps(q) for q in by_workload["lookup-zipf"][0].queries}) > 1  # not one key asked 12 times


def test_r2_raises_lake_sql_latency_and_a_threshold_between_flips_the_decision(
    run: tuple[RunResult, Path, str],
) -> None:
    result, _, _ = run

    def samples(profile: str) -> list[float]:
        return next(
            b.samples_ms
            for b in result.benchmarks
            if (b.profile, b.engine, b.name) == (profile, "lake-sql", "lookup-zipf")
        )

    local, r2 = samples("local"), samples("r2")
    assert statistics.median(r2) > 3 * statistics.median(local)
    assert mannwhitneyu(local, r2, alternative="less").pvalue < 0.01
    verdicts = {(o.profile, o.option): o.passed for o in result.options}
    assert verdicts[("local", "lake-sql")] and not verdicts[("r2", "lake-sql")]
    assert result.decisions["local"].name != result.decisions["r2"].name
    # The same samples judged against a threshold both profiles meet: the r2 decision is local's again.
    relaxed = rejudge(result, lookup_threshold_ms=10_000)
    assert relaxed.decisions["r2"].name == relaxed.decisions["local"].name == result.decisions["local"].name
    assert relaxed.benchmarks[0].samples_ms == result.benchmarks[0].samples_ms


def test_every_option_is_priced_from_its_measured_figures(run: tuple[RunResult, Path, str]) -> None:
    result, _, printed = run
    for o in result.options:
        assert o.cost is not None and o.monthly_usd is not None
        assert set(o.cost) == {"1x", "10x", "100x"}
        assert next(iter(o.cost["1x"].values()))["total_usd"] == round(o.monthly_usd, 2)
    decision = result.decisions["local"]
    passing = [o for o in result.options if o.profile == "local" and o.passed]
    assert decision.name == min(passing, key=lambda o: o.monthly_usd or 0).option
    assert "monthly cost (USD) on r2" in printed and "decision on r2:" in printed and "report: " in printed


def test_report_command_judges_the_stored_samples_again_and_leaves_the_result_alone(
    run: tuple[RunResult, Path, str], tmp_path: Path
) -> None:
    _, path, _ = run
    before = path.read_bytes()
    out = runner.invoke(app, ["report", str(path), "--lookup-threshold-ms", "10000", "--out", str(tmp_path), "--json"])
    assert out.exit_code == 0, out.output
    document = json.loads(out.stdout)
    assert document["decisions"]["r2"]["name"] == document["decisions"]["local"]["name"]
    assert Path(document["html"]).parent == tmp_path and path.read_bytes() == before
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    failed = runner.invoke(app, ["report", str(broken)])
    assert isinstance(failed.exception, ConfigError)  # main() turns it into one line and exit code 2
    assert "broken.json is not a lakebench result file" in str(failed.exception)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_the_html_report_is_self_contained_and_its_charts_draw_in_chromium(
    run: tuple[RunResult, Path, str], tmp_path: Path
) -> None:
    _, path, _ = run
    page = path.with_suffix(".html")
    text = page.read_text(encoding="utf-8")
    assert text.count("<svg") >= 2 * 3  # per profile: lookup CDF, search CDF, latency against cost
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), "the page loads something from elsewhere"
    browser = chromium()
    if browser is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: tools/ensure-chromium installs it (Debian's package)")
        pytest.skip("chromium is not installed (tools/ensure-chromium installs Debian's package)")
    shot = tmp_path / "report.png"
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    command += ["--disable-component-update", "--no-first-run", "--disable-sync", f"--user-data-dir={tmp_path / 'u'}"]
    command += ["--hide-scrollbars", "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    from matplotlib import image

    pixels = (image.imread(shot)[:, :, :3] * 255).round()
    # The CDF lines are drawn in the palette's first two colours (lake-sql blue, lake-sql+cache red).
    for rgb in ((0x1F, 0x77, 0xB4), (0xD6, 0x27, 0x28)):
        drawn = (abs(pixels - rgb).max(axis=2) <= 8).sum()
        assert drawn > 200, f"colour {rgb} covers {drawn} pixels: the chart did not draw"


def test_every_option_also_ran_its_lookups_in_a_closed_and_an_open_loop(run: tuple[RunResult, Path, str]) -> None:
    result, _, printed = run
    zipf = 4 * 3  # samples x repetitions of lookup-zipf: the loops ask exactly those
    for o in result.options:
        assert [(loop["mode"], loop["concurrency"]) for loop in o.loops] == [("closed", 2), ("open", 2)], o.option
        for loop in o.loops:
            assert loop["calls"] == len(loop["samples_us"]) == zipf and loop["errors"] == 0
            assert loop["wrong_answers"] == 0
            assert loop["p50_ms"] == pytest.approx(statistics_of([us / 1000 for us in loop["samples_us"]])["p50"])
        open_loop = o.loops[1]
        assert open_loop["rate_per_s"] == 50
        if o.profile == "r2" and o.option == "lake-sql":  # at 50/s a 150 ms-a-call engine falls behind
            assert open_loop["p50_ms"] > o.loops[0]["p50_ms"]
            assert open_loop["traffic"]["requests"]
    assert "open loop at 50/s, 2 callers" in printed


def test_options_measured_end_to_end_through_the_db_service_answer_every_workload_right(tmp_path: Path) -> None:
    args = ["run", "--count", "30", "--avg-size-kb", "1", "--samples", "3", "--search-samples", "1", "--repeat", "3"]
    args += ["--warmup", "2", "--options", "lake-sql+cache,lake-indexed", "--profiles", "local", "--workloads", "all"]
    args += [
        "--through",
        "http",
        "--results-dir",
        str(tmp_path / "results"),
        "--lake",
        str(tmp_path / "lake"),
        "--json",
    ]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    result = RunResult.model_validate(json.loads(out.stdout))
    assert result.method["transport"].startswith("http")
    assert {b.name for b in result.benchmarks} == set(ALL_WORKLOADS)
    assert all(b.errors == 0 for b in result.benchmarks), [(b.name, b.error_examples) for b in result.benchmarks]
    cached = next(b for b in result.benchmarks if (b.engine, b.name) == ("lake-sql+cache", "lookup-zipf"))
    assert cached.cache_hits is not None and any(cached.cache_hits)  # the service's X-Cache said so
    assert all(o.first_answer_s is not None and o.first_answer_s > 0 for o in result.options)


def test_a_file_any_importer_reads_is_benchmarked_instead_of_generated_data(shared_data: Path, tmp_path: Path) -> None:
    articles = shared_data / "wikipedia" / "enwiki-articles.sample1000.tantivy-wiki.json"
    args = ["run", "--dataset", str(articles), "--format", "tantivy-wiki", "--samples", "3", "--search-samples", "1"]
    args += ["--repeat", "3", "--warmup", "1", "--options", "lake-sql,lake-indexed", "--profiles", "local"]
    args += ["--workloads", "all", "--results-dir", str(tmp_path / "results"), "--lake", str(tmp_path / "l"), "--json"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    result = RunResult.model_validate(json.loads(out.stdout))
    assert result.dataset.source.startswith("file:tantivy-wiki:enwiki-articles.sample1000.tantivy-wiki.json:sha256=")
    assert result.dataset.events == 1000 and all(b.errors == 0 for b in result.benchmarks)
    assert result.method["cost_inputs"]["raw_bytes_per_event"] == result.dataset.raw_bytes / 1000
    bad = tmp_path / "bad.ndjson"
    bad.write_text("not json\n")
    failed = runner.invoke(app, ["run", "--dataset", str(bad), "--profiles", "local", "--lake", str(tmp_path / "m")])
    assert isinstance(failed.exception, ConfigError) and "bad.ndjson (ndjson): no record of it" in str(failed.exception)
