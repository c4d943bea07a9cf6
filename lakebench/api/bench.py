"""The db service's benchmark routes: start a run, follow it, read its report.

- ``GET /benchmark?type=lookup|search|all``: starts a run (lakebench/benchmark/job.py) in a process
  of its own (bench_runs.py) and answers 202 at once; one run at a time (409 while one goes on).
  The run generates its own dataset into an S3-protocol server on loopback and measures the
  options through the emulated network profiles: the lake the service serves is never touched.
- ``GET /benchmark/{run_id}``: the run's step and progress; when done, its result file, each
  profile's decision and the report's URL; when failed, why.
- ``GET /report`` and ``GET /report/{run_id}``: a run's HTML report (written beside its result).

Starting a run needs the service's token; following runs and reports are reads. (``POST /generate``,
events for the service's own lake, is in generate.py.)
"""

# No ``from __future__ import annotations``: the routes' parameter bounds come from the service's
# limits, so their annotations must be evaluated where the routes are defined.

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from lakebench.api.auth import require_token
from lakebench.api.bench_runs import BenchRuns, RunInProgress, decisions_out, iso
from lakebench.api.problems import ProblemRoute, RequestProblem, json_response, problem_responses

RUN_ID: Final = r"^[0-9A-HJKMNP-TV-Z]{26}$"  # a ULID, as run ids and result files are named
_RUN_ID = re.compile(RUN_ID[1:-1])  # for fullmatch
WORKLOADS: Final[dict[str, tuple[str, ...]]] = {
    "lookup": ("lookup-zipf", "lookup-missing"),
    "search": ("search-selective", "search-common"),
    "all": ("lookup-zipf", "lookup-missing", "search-selective", "search-common"),
}
DEFAULT_PROFILES: Final = ("local", "r2")
HTML_HEADERS: Final = {  # the report is one self-contained page: inline styles and SVG, no script
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
    "X-Content-Type-Options": "nosniff",
}


@dataclass(frozen=True, slots=True)
class BenchLimits:
    """Bounds of what one request to the benchmark routes or ``POST /generate`` may ask (the OpenAPI
    document states them)."""

    max_count: int = 20_000  # events of a run's generated dataset
    max_avg_size_kb: float = 1024.0
    max_run_mb: float = 256.0  # count x avg_size_kb: the dataset is held in the S3-protocol server's memory
    max_samples: int = 200
    max_search_samples: int = 50
    max_repeat: int = 5
    max_warmup: int = 200
    max_generate_count: int = 100_000  # POST /generate
    max_generate_avg_size_kb: float = 1024.0
    max_generate_mb: float = 64.0  # count x avgSizeKB of one POST /generate: a roll of the pipeline
    keep_runs: int = 20  # runs remembered for GET /benchmark/{id}


# -- the OpenAPI shapes -----------------------------------------------------------------------------


class BenchmarkStarted(BaseModel):
    run_id: str = Field(pattern=RUN_ID)
    status_url: str = Field(examples=["/benchmark/01K4K8CJ4QB109CAM1CS4Y21PT"])


class DecisionOut(BaseModel):
    option: int = Field(description="the option's line in the cost model (0: none meets the thresholds)")
    name: str = Field(description="the option's name, e.g. lake-sql+cache")
    reason: str


class BenchmarkRun(BaseModel):
    run_id: str
    type: Literal["lookup", "search", "all"]
    status: Literal["running", "done", "failed"]
    step: str = Field(description="what the run is doing; when failed, the step it failed in")
    done: int = Field(description="units of the step done")
    total: int | None = Field(description="units the step has; null when not known in advance")
    started_at: str
    finished_at: str | None
    params: dict[str, Any] = Field(description="what the run was asked to do")
    result_path: str | None = Field(default=None, description="the result file (done)")
    decisions: dict[str, DecisionOut] | None = Field(default=None, description="per network profile (done)")
    report_url: str | None = Field(default=None, description="the HTML report (done)")
    error: str | None = Field(default=None, description="why it failed (failed)")


class LastDecision(BaseModel):
    """The newest result file's decisions."""

    run_id: str
    result_path: str
    finished_at: str
    option: int = Field(description="the primary profile's decision (r2 when measured)")
    name: str
    reason: str
    decisions: dict[str, DecisionOut] = Field(description="per network profile")


# -- the results folder -----------------------------------------------------------------------------


def _by_run_id(results_dir: Path, suffix: str) -> list[Path]:
    """Result files (``.json``) or reports (``.html``) named by a run id, newest first (ULIDs sort by time)."""
    files = [p for p in results_dir.glob(f"*/*{suffix}") if _RUN_ID.fullmatch(p.stem)]
    return sorted(files, key=lambda p: p.stem, reverse=True)


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def find_report(results_dir: Path, run_id: str | None = None) -> Path | None:
    """A run's HTML report (the newest one without ``run_id``); never a file outside ``results_dir``."""
    if run_id is not None and not _RUN_ID.fullmatch(run_id):
        return None
    for path in _by_run_id(results_dir, ".html"):
        if (run_id is None or path.stem == run_id) and path.is_file() and _inside(path, results_dir):
            return path
    return None


_decisions: dict[Path, dict[str, Any]] = {}  # result files are written once: what one holds never changes


def last_decision(results_dir: Path) -> dict[str, Any] | None:
    """The decisions of the newest result file that loads; None when there is none."""
    from lakebench.benchmark.results import load_result

    for path in _by_run_id(results_dir, ".json")[:5]:
        if path in _decisions:
            return _decisions[path]
        try:
            result = load_result(path)
        except (OSError, ValueError):  # unreadable, or not a result document
            continue
        primary = result.decision
        document = {
            "run_id": result.run_id,
            "result_path": str(path),
            "finished_at": iso(result.finished_at),
            "option": primary.option,
            "name": primary.name,
            "reason": primary.reason,
            "decisions": decisions_out(result.decisions),
        }
        if len(_decisions) > 1_000:
            _decisions.clear()
        _decisions[path] = document
        return document
    return None


# -- the routes -------------------------------------------------------------------------------------


def _names(value: str | None, field: str, known: list[str], default: tuple[str, ...]) -> tuple[str, ...]:
    if value is None:
        return default
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        what = f"unknown {unknown[0]!r}" if unknown else "empty"
        detail = f"query parameter {field!r}: {what}; choose one or more (comma-separated) of: {', '.join(known)}"
        if "direct" in unknown:
            detail += " ('direct' would measure the lake this service serves, which a run never touches)"
        raise RequestProblem(422, "unprocessable", "Unprocessable Content", detail)
    return names


def bench_router(
    runs: BenchRuns,
    results_dir: Path,
    limits: BenchLimits,
    *,
    token: str | None,
    read_token: str | None,
) -> APIRouter:
    """``GET /benchmark``, ``GET /benchmark/{run_id}``, ``GET /report``, ``GET /report/{run_id}``."""
    from lakebench.benchmark.options import DEFAULT_OPTIONS, OPTIONS
    from lakebench.storage.netem import PROFILES

    starts = APIRouter(route_class=ProblemRoute, dependencies=[Depends(require_token(token))], tags=["benchmark"])
    reads = APIRouter(route_class=ProblemRoute, dependencies=[Depends(require_token(read_token))], tags=["benchmark"])
    RunId = Annotated[str, PathParam(pattern=RUN_ID, description="a run id (a ULID)")]
    option_names, profile_names = list(OPTIONS), list(PROFILES)

    @starts.get(
        "/benchmark",
        status_code=202,
        response_model=BenchmarkStarted,
        responses={
            202: {
                "description": "started: follow it at status_url",
                "headers": {"Location": {"schema": {"type": "string"}, "description": "the status_url"}},
            },
            **problem_responses(401, 409, 422, 500),
        },
    )
    async def start_benchmark(
        kind: Annotated[
            Literal["lookup", "search", "all"], Query(alias="type", description="which workloads run")
        ] = "all",
        count: Annotated[int, Query(ge=10, le=limits.max_count, description="events in the generated dataset")] = 200,
        avg_size_kb: Annotated[
            float,
            Query(
                gt=0,
                le=limits.max_avg_size_kb,
                description=f"their average size, KB (count x avg_size_kb at most {limits.max_run_mb:g} MB)",
            ),
        ] = 10.0,
        seed: Annotated[int, Query(ge=0, le=2**32 - 1, description="the dataset's seed")] = 42,
        samples: Annotated[int, Query(ge=1, le=limits.max_samples, description="per workload and repetition")] = 15,
        search_samples: Annotated[
            int, Query(ge=1, le=limits.max_search_samples, description="per search workload and repetition")
        ] = 4,
        repeat: Annotated[int, Query(ge=1, le=limits.max_repeat, description="repetitions of every workload")] = 3,
        warmup: Annotated[int, Query(ge=0, le=limits.max_warmup, description="warm-up lookups")] = 10,
        options: Annotated[
            str | None,
            Query(max_length=200, description=f"comma-separated, of: {', '.join(option_names)}"),
        ] = None,
        profiles: Annotated[
            str | None,
            Query(max_length=200, description=f"network profiles, comma-separated, of: {', '.join(profile_names)}"),
        ] = None,
    ) -> Response:
        """Start a benchmark run; 202 at once, with where to follow it. The run generates its own
        dataset (``count`` events of ``avg_size_kb``), measures each option under each network
        profile, judges them against the thresholds and decides per profile. One run at a time."""
        from lakebench.benchmark.job import RunOptions
        from lakebench.generate.synthetic import GeneratorSpec

        if count * avg_size_kb / 1000 > limits.max_run_mb:
            detail = (
                f"query parameters 'count' x 'avg_size_kb' make {count * avg_size_kb / 1000:,.1f} MB; at most "
                f"{limits.max_run_mb:g} MB (the dataset is held in memory during the run)"
            )
            raise RequestProblem(422, "unprocessable", "Unprocessable Content", detail)
        chosen = RunOptions(
            spec=GeneratorSpec(count=count, avg_size_kb=avg_size_kb, seed=seed),
            options=_names(options, "options", option_names, DEFAULT_OPTIONS),
            profiles=_names(profiles, "profiles", profile_names, DEFAULT_PROFILES),
            workloads=WORKLOADS[kind],
            samples=samples,
            search_samples=search_samples,
            repeat=repeat,
            warmup=warmup,
            results_dir=results_dir,
        )
        params = {
            "count": count,
            "avg_size_kb": avg_size_kb,
            "seed": seed,
            "samples": samples,
            "search_samples": search_samples,
            "repeat": repeat,
            "warmup": warmup,
            "options": list(chosen.options),
            "profiles": list(chosen.profiles or ()),
            "workloads": list(chosen.workloads),
        }
        try:
            run = await run_in_threadpool(runs.start, kind, chosen, params)
        except RunInProgress as busy:
            headers = {"Location": f"/benchmark/{busy.run_id}"} if busy.run_id else {}
            raise RequestProblem(
                409, "benchmark-running", "Conflict", f"{busy}; wait for it to finish, then start another", headers
            ) from None
        except OSError as exc:
            raise RequestProblem(
                500,
                "results-dir",
                "Internal Server Error",
                f"the results folder {results_dir} cannot be used ({exc.strerror or exc}); "
                "start the service with a writable --results-dir",
            ) from None
        url = f"/benchmark/{run.run_id}"
        return json_response({"run_id": run.run_id, "status_url": url}, 202, Location=url)

    @reads.get("/benchmark/{run_id}", response_model=BenchmarkRun, responses=problem_responses(401, 404, 422, 500))
    async def benchmark_status(run_id: RunId) -> Response:
        """A run's state: its current step and how far it is; when done, the result file, each
        profile's decision and the report's URL; when failed, why. The service remembers its last
        runs (and only its own process's, with several workers)."""
        document = runs.get(run_id)
        if document is None:
            raise RequestProblem(
                404,
                "unknown-run",
                "Not Found",
                f"no benchmark run {run_id} here: this service remembers its last {limits.keep_runs} runs "
                "since it started",
            )
        return json_response(document)

    async def send_report(path: Path) -> Response:
        body = await run_in_threadpool(path.read_bytes)
        return HTMLResponse(body, headers=HTML_HEADERS)

    html: dict[int | str, dict[str, Any]] = {
        200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "the report page"}
    }

    @reads.get("/report", response_class=HTMLResponse, responses={**html, **problem_responses(401, 404, 500)})
    async def latest_report() -> Response:
        """The newest run's HTML report (one self-contained page: decisions, latency CDFs, cost)."""
        path = await run_in_threadpool(find_report, results_dir)
        if path is None:
            raise RequestProblem(404, "no-report", "Not Found", "no benchmark run has written a report yet")
        return await send_report(path)

    @reads.get(
        "/report/{run_id}", response_class=HTMLResponse, responses={**html, **problem_responses(401, 404, 422, 500)}
    )
    async def report(run_id: RunId) -> Response:
        """A run's HTML report, by the id ``GET /benchmark`` gave or the id in its result file."""
        known = runs.report_of(run_id)
        if known is not None and known[1] is None:
            raise RequestProblem(
                404, "no-report", "Not Found", f"benchmark run {run_id} is {known[0]}: it has no report"
            )
        path = known[1] if known is not None else await run_in_threadpool(find_report, results_dir, run_id)
        if path is None or not path.is_file() or not _inside(path, results_dir):
            raise RequestProblem(404, "no-report", "Not Found", f"no report of run {run_id}")
        return await send_report(path)

    router = APIRouter()
    router.include_router(starts)
    router.include_router(reads)
    return router
