"""Result documents: one JSON file per run, written once, holding every raw sample.

Percentiles are numpy's default (linear) method over ``samples_ms``, so anyone can recompute them
from the file.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from lakebench.core.errors import ConfigError

SCHEMA = "lakebench.run/2"  # /1 files (one engine, one profile) still load


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Environment(_Model):
    platform: str
    machine: str
    python: str
    cpu_count: int
    memory_bytes: int | None
    packages: dict[str, str]


class Dataset(_Model):
    source: str
    spec: dict[str, Any] = Field(default_factory=dict)
    reused: bool
    events: int
    entities: int
    raw_bytes: int | None
    parquet_bytes: int
    files: int
    snapshot_id: int | None
    write_seconds: float | None = None


class Benchmark(_Model):
    name: str
    engine: str  # the option measured (an engine, or an engine behind a cache)
    description: str
    samples_ms: list[float]  # every repetition's samples, in the order they were taken
    errors: int = 0
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    threshold_ms: float | None
    judged_by: str
    passed: bool | None
    profile: str = "local"
    queries: list[list[Any]] = Field(default_factory=list)  # what each sample asked, in sample order
    repetitions: int = 1
    rep_p50_ms: list[float] = Field(default_factory=list)
    rep_p95_ms: list[float] = Field(default_factory=list)
    noisy: bool = False  # a repetition's p50 or p95 more than 10 % from the median of them
    error_examples: list[str] = Field(default_factory=list)
    cache_hits: list[bool] | None = None  # per sample, for an option with a cache
    cache_hit_ratio: float | None = None
    requests_per_query: dict[str, float] | None = None  # by kind (GET, HEAD, LIST): None when not counted
    bytes_per_query: float | None = None


class OptionResult(_Model):
    profile: str
    option: str
    description: str
    cost_option: int
    first_answer_s: float | None  # process start to the first answer: its own figure
    open_s: float | None
    open_to_first_s: float | None = None  # from the engine's open (after imports) to its first answer
    first_query: list[Any]
    cold: str  # what "cold" meant for this run (page cache dropped, or why not)
    passed: bool
    verdict: str  # which thresholds it met or missed, with margins
    first_answer_right: bool = True
    failure: str | None = None  # the option's process failed: why
    worst_ratio: float | None = None  # the judged statistic over its threshold, furthest workload
    first_answer_traffic: dict[str, Any] | None = None  # requests and bytes of the first answer
    monthly_usd: float | None
    priced_from: str = ""  # measured figures, or the cost model's defaults where nothing was counted
    cost: dict[str, Any] | None = None  # the breakdown at 1x, 10x, 100x
    phases_s: dict[str, float] = Field(default_factory=dict)  # the worker's wall time by phase
    loops: list[dict[str, Any]] = Field(default_factory=list)  # closed and open loops, by concurrency


class Decision(_Model):
    option: int
    name: str
    reason: str
    judged: dict[str, Any]


class RunResult(_Model):
    schema_: str = Field(SCHEMA, alias="schema")
    run_id: str
    started_at: datetime
    finished_at: datetime
    lake: dict[str, Any]
    environment: Environment
    dataset: Dataset
    method: dict[str, Any]
    benchmarks: list[Benchmark]
    decision: Decision  # the primary profile's (r2 when measured)
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)  # name -> what the profile applies
    options: list[OptionResult] = Field(default_factory=list)
    decisions: dict[str, Decision] = Field(default_factory=dict)  # per profile

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)


def summarise(
    name: str,
    engine: str,
    description: str,
    samples_ms: list[float],
    *,
    errors: int = 0,
    threshold_ms: float | None,
    judged_by: str = "p95",
    **extra: Any,
) -> Benchmark:
    if not samples_ms:
        raise ValueError(f"benchmark {name!r} has no samples")
    figures = statistics_of(samples_ms)
    p50, p95, p99 = figures["p50"], figures["p95"], figures["p99"]
    passed: bool | None = None
    if threshold_ms is not None:
        passed = errors == 0 and figures[judged_by] < threshold_ms
    return Benchmark(
        name=name,
        engine=engine,
        description=description,
        samples_ms=[float(v) for v in samples_ms],
        errors=errors,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        max_ms=figures["max"],
        mean_ms=figures["mean"],
        threshold_ms=threshold_ms,
        judged_by=judged_by,
        passed=passed,
        **extra,
    )


def statistics_of(samples_ms: list[float]) -> dict[str, float]:
    """p50, p95, p99 (numpy's default, linear method), max and mean: how every printed figure is made."""
    data = np.asarray(samples_ms, dtype=np.float64)
    p50, p95, p99 = (float(v) for v in np.percentile(data, [50, 95, 99]))
    return {"p50": p50, "p95": p95, "p99": p99, "max": float(data.max()), "mean": float(data.mean())}


def environment() -> Environment:
    packages = {}
    for name in ("lakebench", "duckdb", "chdb", "pyarrow", "pyiceberg", "numpy", "moto"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = "not installed"
    memory: int | None = None
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = None
    return Environment(
        platform=platform.platform(),
        machine=platform.machine(),
        python=sys.version.split()[0],
        cpu_count=os.cpu_count() or 0,
        memory_bytes=memory,
        packages=packages,
    )


def check_results_dir(results_dir: Path) -> None:
    """Fail before a run, not after it, when its results could not be written."""
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=results_dir, prefix=".probe-"):
            pass
    except OSError as exc:
        raise ConfigError(f"--results-dir {results_dir} cannot hold results: {exc.strerror or exc}") from None


def write_result(result: RunResult, results_dir: Path) -> Path:
    """Write ``<results_dir>/<date>/<run-id>.json``; refuses to overwrite an existing file."""
    day = result.started_at.astimezone(UTC).strftime("%Y-%m-%d")
    folder = results_dir / day
    path = folder / f"{result.run_id}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as out:
            out.write(result.to_json())
            out.write("\n")
    except FileExistsError:
        raise  # a result file is never overwritten
    except OSError as exc:  # the run is done: keep its figures somewhere rather than lose them
        fallback = Path(tempfile.gettempdir()) / f"lakebench-{result.run_id}.json"
        fallback.write_text(result.to_json() + "\n", encoding="utf-8")
        raise ConfigError(f"cannot write {path} ({exc.strerror or exc}); the results are in {fallback}") from None
    return path


def load_result(path: Path) -> RunResult:
    document = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(document, dict) and document.get("schema") == "lakebench.run/1":
        for bench in document.get("benchmarks") or []:  # /1 runs read the configured lake directly
            if isinstance(bench, dict):
                bench.setdefault("profile", "direct")
    return RunResult.model_validate(document)
