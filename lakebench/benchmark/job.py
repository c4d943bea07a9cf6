"""The main job (``lakebench run``): every architecture option measured side by side, like for like,
under each network profile, judged against the thresholds, priced, and one recommended per profile.

Method (also written into each result file's ``method``):
- the dataset is written once by lakebench's own writer; for the emulated profiles it lives in an
  S3-protocol server on loopback (moto) and each profile puts a ``ProfiledEndpoint`` in front of it
  (lakebench/storage/netem.py), through which every engine's reads pass and are counted;
- every option gets the same queries in the same order, the same sample count, the same warm-up,
  in a process of its own (lakebench/benchmark/worker.py) that starts with empty local caches; the
  queries of each sample are stored beside it;
- each answer is checked outside the timing against the oracle (lake-sql, on the unshaped server,
  answering in full); one wrong answer fails the option;
- time to first answer (process start to the first answer) is its own figure; hot figures come
  after the warm-up; each workload runs ``repeat`` times, percentiles are over all samples, and a
  repetition whose p50 or p95 is more than 10 % from the median of them flags the figure noisy;
- per profile the decision is the cheapest option (lakebench/decide/cost.py, with the measured
  requests, bytes and hit ratio) that meets every threshold at the judged statistic.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
from ulid import ULID

from lakebench.benchmark.options import DEFAULT_OPTIONS, OPTIONS, OptionSpec, option_spec
from lakebench.benchmark.oracle import Oracle
from lakebench.benchmark.queries import (
    DEFAULT_WORKLOADS,
    Query,
    Workload,
    answer,
    build_workloads,
    call,
    check,
    pick_terms,
)
from lakebench.benchmark.results import (
    SCHEMA,
    Benchmark,
    Dataset,
    Decision,
    OptionResult,
    RunResult,
    check_results_dir,
    environment,
    statistics_of,
    summarise,
    write_result,
)
from lakebench.benchmark.runner import NoProgress, Progress
from lakebench.benchmark.workloads import KeySpace, key_space
from lakebench.core.config import Settings
from lakebench.core.errors import ConfigError, TerminalError
from lakebench.decide.cost import Measured, PriceTable, cost_table, load_prices, monthly_cost
from lakebench.decide.cost import Workload as CostInputs
from lakebench.decide.thresholds import LOOKUP_THRESHOLD_MS, SEARCH_THRESHOLD_MS
from lakebench.engines import clickhouse_hot_days, open_engine
from lakebench.generate.synthetic import GeneratorSpec, generate
from lakebench.lake.catalog import Lake, redact_url
from lakebench.lake.writer import LakeWriter
from lakebench.storage.netem import PROFILES, ProfiledEndpoint, profiled

JUDGES: Final = ("p50", "p95", "p99", "max", "mean")
NOISY: Final = 0.10
DIRECT: Final = "direct"  # the configured lake as it is: no emulation


@dataclass(frozen=True, slots=True)
class FileDataset:
    """A file any importer reads (``--dataset FILE --format F``), benchmarked instead of generated data."""

    path: Path
    fmt: str = "ndjson"

    @property
    def dataset_id(self) -> str:
        import hashlib

        try:
            with self.path.open("rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()[:16]
        except OSError as exc:
            raise ConfigError(f"--dataset {self.path}: {exc.strerror or exc}") from None
        return f"file:{self.fmt}:{self.path.name}:sha256={digest}"


@dataclass(frozen=True, slots=True)
class RunOptions:
    spec: GeneratorSpec = field(default_factory=lambda: GeneratorSpec(count=300))
    dataset: FileDataset | None = None  # a file to benchmark instead of the generated dataset
    options: tuple[str, ...] = DEFAULT_OPTIONS
    profiles: tuple[str, ...] | None = None  # None: local and r2 for a local lake, direct for a bucket
    workloads: tuple[str, ...] = DEFAULT_WORKLOADS
    samples: int = 15  # per workload and repetition
    search_samples: int = 4  # per full-text search workload and repetition
    repeat: int = 3
    warmup: int = 10
    judge: str = "p95"
    lookup_threshold_ms: float = LOOKUP_THRESHOLD_MS
    search_threshold_ms: float = SEARCH_THRESHOLD_MS
    workload_seed: int = 7
    results_dir: Path = Path("results")
    prices: Path | None = None
    lookups_per_day: float = 100_000
    events_per_day: float = 10_000
    transport: str = "engine"  # engine: the option in the worker process; http: through the db service
    loop_levels: tuple[int, ...] = ()  # concurrency levels of the closed (and open) loops; () for none
    open_rate: float | None = None  # calls/s of the open loop
    run_id: str | None = None  # the result's id (a ULID); a new one when None


Source = GeneratorSpec | FileDataset


def holds_exactly(lake: Lake, spec: Source) -> bool:
    """Whether the table holds this dataset and nothing else: every commit that added events in the
    current snapshot's lineage wrote this dataset, and the table counts exactly its events."""
    from pyiceberg.table.snapshots import Operation, ancestors_of

    table = lake.table()
    current = table.current_snapshot()
    if current is None or current.summary is None:
        return False
    appends = [
        s for s in ancestors_of(current, table.metadata) if s.summary and s.summary.operation == Operation.APPEND
    ]
    return (
        bool(appends)
        and all(s.summary is not None and s.summary.get("lakebench.dataset") == spec.dataset_id for s in appends)
        and (isinstance(spec, FileDataset) or int(current.summary.get("total-records") or 0) == spec.count)
    )


def dataset_lake(lake: Lake, spec: Source) -> tuple[Lake, str | None]:
    """The lake ``run`` benchmarks: the given one when it is empty or holds exactly this dataset;
    otherwise a lake of the dataset's own, ``<lake>/datasets/<dataset>``. (lake, why it moved)."""
    table = lake.table()
    if table.current_snapshot() is None or holds_exactly(lake, spec):
        return lake, None
    if lake.settings.catalog is not None:
        raise ConfigError(
            f"the lake {lake.url} (catalog {redact_url(lake.settings.catalog_url)}) holds other events than the "
            f"dataset {spec.dataset_id}; benchmark it on an empty lake, or leave out --catalog so that run keeps "
            "each dataset in a lake of its own"
        )
    slug = re.sub(r"[^A-Za-z0-9_.]+", "-", spec.dataset_id).strip("-")
    own = Lake(dataclasses.replace(lake.settings, lake=f"{lake.url}/datasets/{slug}"))
    return own, f"{lake.url} holds other events than this dataset, so it lives in a lake of its own: {own.url}"


def ensure_dataset(lake: Lake, spec: Source, progress: Progress) -> tuple[bool, int | None, float | None]:
    """Write the dataset unless the lake holds it already; (reused, raw bytes, write seconds)."""
    if holds_exactly(lake, spec):
        table = lake.table()
        for snapshot in table.snapshots():
            summary = snapshot.summary
            if summary is not None and summary.get("lakebench.dataset") == spec.dataset_id:
                raw = summary.get("lakebench.raw-bytes")
                return True, int(raw) if raw else None, None
    if isinstance(spec, FileDataset):
        from lakebench.pipeline.batch import ingest_file

        progress.start(f"importing {spec.path} ({spec.fmt}) into {lake.url}", None)
        report = ingest_file(
            lake, spec.path, spec.fmt, progress=progress.advance, summary={"lakebench.dataset": spec.dataset_id}
        )
        progress.done()
        if report.input_error or report.write is None or not report.write.events:
            why = report.input_error or f"no record of it is a valid event ({len(report.rejected)} rejected)"
            raise ConfigError(f"--dataset {spec.path} ({spec.fmt}): {why}; `lakebench ingest` lists each problem")
        return False, report.write.raw_bytes, report.write.seconds
    progress.start(f"generating {spec.count:,} events of ~{spec.avg_size_kb:g} KB into {lake.url}", spec.count)
    result = LakeWriter(lake).write(
        generate(spec), summary={"lakebench.dataset": spec.dataset_id}, progress=progress.advance
    )
    progress.done()
    return False, result.raw_bytes, result.seconds


def describe_dataset(
    lake: Lake, spec: Source, keys: KeySpace, reused: bool, raw: int | None, secs: float | None
) -> Dataset:
    snapshot = lake.table().current_snapshot()
    summary = snapshot.summary if snapshot is not None else None

    def total(name: str) -> int:
        value = summary[name] if summary is not None else None
        return int(value) if value else 0

    return Dataset(
        source=spec.dataset_id,
        spec=asdict(spec),
        reused=reused,
        events=total("total-records"),
        entities=len(keys.keys),
        raw_bytes=raw,
        parquet_bytes=total("total-files-size"),
        files=total("total-data-files"),
        snapshot_id=snapshot.snapshot_id if snapshot is not None else None,
        write_seconds=secs,
    )


@dataclass(slots=True)
class Target:
    """Where the options read the dataset under one profile."""

    profile: str
    settings: Settings
    endpoint: ProfiledEndpoint | None  # counts requests and bytes; None for a direct lake
    cold: str
    folder: Path | None = None  # a local lake's folder: its files are dropped from the page cache per option


def drop_page_cache(root: Path) -> str:
    """Ask the OS to drop a local lake's files from its page cache (``posix_fadvise(DONTNEED)``)."""
    if not hasattr(os, "posix_fadvise"):
        return "page cache not dropped: posix_fadvise is not available on this OS"
    dropped = 0
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                dropped += 1
            finally:
                os.close(fd)
    return f"the lake's {dropped} files dropped from the OS page cache (posix_fadvise DONTNEED) before the process"


def _worker_settings(settings: Settings) -> dict[str, Any]:
    return {"lake": settings.lake, "catalog": settings.catalog, "s3": asdict(settings.s3)}


@dataclass(slots=True)
class Measurement:
    output: dict[str, Any] | None
    traffic: dict[str, dict[str, Any]]  # "<workload> <rep>" -> requests by kind and bytes out
    failure: str | None = None


def measure_option(
    target: Target,
    option: OptionSpec,
    task: dict[str, Any],
    cache_home: Path,
    progress: Progress,
    env: dict[str, str] | None = None,
) -> Measurement:
    """Run one option in a fresh worker process; read the endpoint's counters at each of its marks."""
    env = {**os.environ, **(env or {}), "XDG_CACHE_HOME": str(cache_home)}  # empty local caches
    traffic: dict[str, dict[str, Any]] = {}
    log: list[str] = []
    stdout: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-m", "lakebench.benchmark.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        output = proc.stdout
        reader = threading.Thread(target=lambda: stdout.append(output.read()), daemon=True)
        reader.start()
        try:
            proc.stdin.write(json.dumps({**task, "option": option.name, "settings": _worker_settings(target.settings)}))
            proc.stdin.write("\n")
            proc.stdin.flush()
            label: str | None = None
            before = target.endpoint.stats.snapshot() if target.endpoint else None
            for line in proc.stderr:  # the worker's marks, progress and log, in order
                if line.startswith("mark "):
                    now = target.endpoint.stats.snapshot() if target.endpoint else None
                    if label is not None and now is not None and before is not None:
                        traffic[label] = _delta(before, now)
                    label, before = line[5:].strip(), now
                    proc.stdin.write("ok\n")
                    proc.stdin.flush()
                elif line.startswith("progress "):
                    progress.advance(int(line.split()[1]))
                else:
                    log.append(line.rstrip())
            code = proc.wait()
            reader.join()
        except BaseException:  # interrupted: no worker outlives the run, and its own children go with it
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    if code != 0 or not stdout or not stdout[0].strip():
        why = next((line for line in reversed(log) if line.strip()), f"exit code {code}")
        return Measurement(None, traffic, f"{option.name} failed under {target.profile}: {why}")
    try:
        return Measurement(json.loads(stdout[0]), traffic)
    except ValueError:
        return Measurement(None, traffic, f"{option.name} failed under {target.profile}: its report was not JSON")


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    kinds = set(before["requests"]) | set(after["requests"])
    requests = {k: after["requests"].get(k, 0) - before["requests"].get(k, 0) for k in kinds}
    return {"requests": {k: v for k, v in requests.items() if v}, "bytes_out": after["bytes_out"] - before["bytes_out"]}


@contextmanager
def _targets(
    settings: Settings, options: RunOptions, profiles: tuple[str, ...], progress: Progress, stack: ExitStack
) -> Iterator[tuple[Lake, list[Target], dict[str, Any], str | None, tuple[bool, int | None, float | None]]]:
    """The lake the oracle reads, one target per profile, the profiles' definitions, a note, and how
    the dataset got there."""
    emulated = [p for p in profiles if p != DIRECT]
    source: Source = options.dataset or options.spec
    definitions: dict[str, Any] = {}
    targets: list[Target] = []
    note: str | None = None
    if DIRECT in profiles:
        lake, note = dataset_lake(stack.enter_context(Lake(settings)), source)
        written = ensure_dataset(lake, source, progress)
        folder = lake.url.removeprefix("file://") if lake.url.startswith("file://") else None
        # A local folder's pages are dropped before each option's process (run_job), which says so here.
        cold = "" if folder else "a bucket: nothing of it is in this machine's page cache"
        definitions[DIRECT] = {"lake": lake.url, "source": "the configured lake, no emulation"}
        targets.append(Target(DIRECT, lake.settings, None, cold, Path(folder) if folder else None))
        oracle_lake = lake
    if emulated:
        from lakebench.storage.embedded import EmbeddedS3

        server = stack.enter_context(EmbeddedS3())
        bucket = server.bucket("lakebench-run")
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lakebench-run-")))
        staged = Settings(lake=f"s3://{bucket}/lake", catalog=f"sqlite:///{work / 'catalog.db'}", s3=server.s3())
        staged_lake = stack.enter_context(Lake(staged))
        if DIRECT not in profiles:
            written = ensure_dataset(staged_lake, source, progress)
            oracle_lake = staged_lake
            note = "the dataset was written into an S3-protocol server on loopback (moto), read through each profile"
        else:  # the same dataset, once more, where the profiles can shape its reads
            ensure_dataset(staged_lake, source, progress)
        for seed, name in enumerate(emulated):
            endpoint = stack.enter_context(profiled(server.url, PROFILES[name], seed=11 + seed))
            profile = PROFILES[name]
            definitions[name] = {k: getattr(profile, k) for k in profile.__dataclass_fields__}
            cold = (
                "the lake is held in the S3-protocol server's memory, so there is no page cache to drop; "
                "every read crosses the profile"
            )
            targets.append(Target(name, dataclasses.replace(staged, s3=server.s3(endpoint.url)), endpoint, cold))
    yield oracle_lake, targets, definitions, note, written


def default_profiles(settings: Settings) -> tuple[str, ...]:
    return ("local", "r2") if settings.lake_url.startswith("file://") else (DIRECT,)


def run_job(settings: Settings, options: RunOptions, progress: Progress | None = None) -> tuple[RunResult, Path]:
    if options.judge not in JUDGES:
        raise TerminalError(f"--judge must be one of {', '.join(JUDGES)}, got {options.judge!r}")
    chosen = [option_spec(o) for o in options.options]
    profiles = options.profiles or default_profiles(settings)
    for name in profiles:
        if name != DIRECT and name not in PROFILES:
            raise ConfigError(f"unknown profile {name!r}; choose from {DIRECT}, {', '.join(PROFILES)}")
    if options.transport not in ("engine", "http"):
        raise ConfigError(f"--through must be engine or http, got {options.transport!r}")
    if options.repeat < 1 or options.samples < 1:
        raise ConfigError("--samples and --repeat must be at least 1")
    prices = load_prices(options.prices)
    progress = progress or NoProgress()
    check_results_dir(options.results_dir)  # before the run, not after it
    started = datetime.now(UTC)
    timings: dict[str, float] = {}  # wall seconds of each step of the run
    began = time.perf_counter()
    with (
        ExitStack() as stack,
        _targets(settings, options, profiles, progress, stack) as (
            oracle_lake,
            targets,
            definitions,
            note,
            written,
        ),
    ):
        keys = key_space(oracle_lake)
        if not keys.keys:
            raise TerminalError(f"the lake at {oracle_lake.url} holds no events to look up")
        rng = np.random.default_rng(options.workload_seed)
        terms = pick_terms(oracle_lake, rng=rng)
        total = options.samples * options.repeat
        searches = options.search_samples * options.repeat
        workloads = build_workloads(options.workloads, keys, keys.latest, terms, total, rng, searches)
        if not workloads:
            raise ConfigError("none of the workloads asked for can run on this lake (it holds no text to search)")
        # The first answer and the warm-up are drawn apart from the timed queries: no timed lookup is
        # a cache hit because the warm-up asked it. Other workloads repeat one query (a search's term):
        # their warm-up is that query, so what is timed is hot.
        first = Query("lookup", keys.uniform(1, rng)[0])
        warmup = [Query("lookup", k) for k in keys.uniform(options.warmup, rng)]
        warmup += [w.queries[0] for w in workloads if w.queries[0].kind != "lookup"]
        if any(spec.engine == "lake-indexed" for spec in chosen):
            _check_indexes(oracle_lake)
        timings["dataset and workload"] = time.perf_counter() - began
        began = time.perf_counter()
        progress.start("oracle: every distinct query's right answer", None)
        oracle, oracle_source = _oracle(oracle_lake, [first, *(q for w in workloads for q in w.queries)], keys.events)
        progress.done()
        timings["oracle"] = time.perf_counter() - began
        task: dict[str, Any] = {
            "transport": options.transport,
            "first": first.to_list(),
            "warmup": [q.to_list() for q in warmup],
            "repeat": options.repeat,
            "workloads": [
                {
                    "name": w.name,
                    "queries": [[q.to_list() for q in w.repetition(r, options.repeat)] for r in range(options.repeat)],
                }
                for w in workloads
            ],
        }
        looped = next((w for w in workloads if w.name == "lookup-zipf"), workloads[0])
        if options.loop_levels:
            task["loops"] = {
                "levels": list(options.loop_levels),
                "rate": options.open_rate,
                "queries": [q.to_list() for q in looped.queries],
            }
        modes = 2 if options.open_rate else 1
        per_option = len(warmup) + sum(len(w.queries) for w in workloads)
        per_option += len(looped.queries) * len(options.loop_levels) * modes
        cache_root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lakebench-caches-")))
        benchmarks: list[Benchmark] = []
        results: list[OptionResult] = []
        decisions: dict[str, Decision] = {}
        inputs = _cost_inputs(oracle_lake, options, written[1])
        # ClickHouse's users size its hot window to what they ask: here, the whole dataset.
        hot_days = os.environ.get("LAKEBENCH_CLICKHOUSE_HOT_DAYS") or f"{keys.span_days + 1:.3f}"
        clickhouse_hot_days(hot_days)  # a bad value fails now, not after every option was measured
        for target in targets:
            for spec in chosen:
                progress.start(f"{target.profile} · {spec.name}", per_option)
                env = {"LAKEBENCH_CLICKHOUSE_HOT_DAYS": hot_days}
                began = time.perf_counter()
                if target.endpoint is not None:
                    target.endpoint.reseed()  # every option meets the same sequence of latency draws
                if target.folder is not None:
                    target.cold = drop_page_cache(target.folder)  # each option's process starts cold
                measured = measure_option(target, spec, task, cache_root / target.profile / spec.name, progress, env)
                progress.done()
                wall_s = timings[f"{target.profile} {spec.name}"] = time.perf_counter() - began
                marks = _benchmarks(target, spec, workloads, measured, oracle, options)
                benchmarks += marks
                results.append(
                    _option_result(
                        target, spec, first, measured, marks, options, prices, inputs, oracle, wall_s, float(hot_days)
                    )
                )
                if measured.output is not None:
                    loops = measured.output.get("loops", [])
                    results[-1].loops = [_checked_loop(x, looped.queries, measured, oracle) for x in loops]
            decisions[target.profile] = decide_profile(
                target.profile, [r for r in results if r.profile == target.profile]
            )
        primary = "r2" if "r2" in decisions else profiles[0]
        dataset = describe_dataset(oracle_lake, options.dataset or options.spec, keys, *written)
        lake_url, lake_catalog = oracle_lake.url, redact_url(oracle_lake.settings.catalog_url)
    result = RunResult(
        schema=SCHEMA,
        run_id=options.run_id or str(ULID()),
        started_at=started,
        finished_at=datetime.now(UTC),
        lake={"url": lake_url, "catalog": lake_catalog, "configured": settings.lake_url, "note": note},
        environment=environment(),
        dataset=dataset,
        method=_method(options, workloads, prices, inputs)
        | {"clickhouse_hot_window_days": float(hot_days), "step_seconds": timings, "oracle": oracle_source},
        benchmarks=benchmarks,
        decision=decisions[primary],
        profiles=definitions,
        options=results,
        decisions=decisions,
    )
    return result, write_result(result, options.results_dir)


def _check_indexes(lake: Lake) -> None:
    """lake-indexed is measured on the indexes the writer wrote with the data; on a lake written
    without them it would only measure its fallback (lake-sql), so the run refuses to start."""
    from lakebench.index import fulltext, keys
    from lakebench.index.publish import summary_of

    summary = summary_of(lake.table(create=False))
    lacking = [
        name for name, key in (("key", keys.SUMMARY_KEY), ("full-text", fulltext.SUMMARY_KEY)) if key not in summary
    ]
    if lacking and int(summary.get("total-data-files", "0")):
        raise ConfigError(
            f"the lake {lake.url} has no {' or '.join(lacking)} index for its current snapshot (written before "
            "lakebench's writers wrote them, or by another tool), so lake-indexed would only measure its fallback: "
            "run `lakebench index build` on it first"
        )


ORACLE_MAX_EVENTS: Final = 300_000  # above this, the plain-Python oracle would hold too much in memory


def _oracle(lake: Lake, queries: list[Query], events: int) -> tuple[dict[str, Any], str]:
    """Every distinct query's right answer in canonical form, and what gave it."""
    distinct = {json.dumps(q.to_list()): q for q in queries}
    if events > ORACLE_MAX_EVENTS:  # too large for the plain-Python reference: lake-sql, every match
        engine = open_engine("lake-sql", lake)
        try:
            answers = {k: answer(q.full, call(engine, q.full)) for k, q in distinct.items()}
        finally:
            engine.close()
        return answers, f"lake-sql answering in full (the table holds over {ORACLE_MAX_EVENTS:,} events)"
    reference = Oracle.of_lake(lake)
    return {k: _reference_answer(reference, q) for k, q in distinct.items()}, (
        "the engine contract computed in plain Python over every event of the snapshot (benchmark/oracle.py), "
        "the same reference the conformance tests hold every engine to; search: every match"
    )


def _reference_answer(reference: Oracle, query: Query) -> Any:
    a = query.args
    match query.kind:
        case "lookup":
            found = reference.lookup(a[0], a[1])
            return None if found is None else found.event_id
        case "history":
            return [e.event_id for e in reference.history(a[0], a[1])]
        case "list":
            return [[r.entity_ns, r.entity_id] for r in reference.listing(a[0])[: a[1]]]
        case "recent":
            return [[r.entity_ns, r.entity_id] for r in reference.recent(a[0])]
        case "count":
            since = datetime.fromisoformat(a[1]) if a[1] else None
            return sorted([str(v), int(n)] for v, n in reference.count_by(a[0], since))
        case "search":
            return sorted(list(hit) for hit in reference.search(a[0]))
    raise ValueError(f"unknown query kind {query.kind!r}")


def _benchmarks(
    target: Target,
    spec: OptionSpec,
    workloads: list[Workload],
    measured: Measurement,
    oracle: dict[str, Any],
    options: RunOptions,
) -> list[Benchmark]:
    if measured.output is None:
        return []
    out = []
    for w in workloads:
        got = measured.output["workloads"][w.name]
        samples: list[float] = got["samples_ms"]
        wrong = [
            f"{q.to_list()}: got {a!r}"
            for q, a in zip(w.queries, got["answers"], strict=True)
            if not check(q, a, oracle[json.dumps(q.to_list())])
        ]
        n = len(w.queries) // options.repeat
        reps = [samples[r * n : (r + 1) * n] for r in range(options.repeat)]
        rep_p50 = [statistics_of(r)["p50"] for r in reps]
        rep_p95 = [statistics_of(r)["p95"] for r in reps]
        hits = got["cache_hits"] if any(h is not None for h in got["cache_hits"]) else None
        traffic = [measured.traffic.get(f"{w.name} {r}") for r in range(options.repeat)]
        requests: dict[str, float] | None = None
        per_query_bytes: float | None = None
        if all(t is not None for t in traffic):
            kinds = {k for t in traffic if t for k in t["requests"]}
            requests = {k: sum(t["requests"].get(k, 0) for t in traffic if t) / len(samples) for k in sorted(kinds)}
            per_query_bytes = sum(t["bytes_out"] for t in traffic if t) / len(samples)
        threshold = {"lookup": options.lookup_threshold_ms, "search": options.search_threshold_ms}.get(
            w.threshold or ""
        )
        out.append(
            summarise(
                w.name,
                spec.name,
                w.description,
                samples,
                errors=len(wrong),
                threshold_ms=threshold,
                judged_by=options.judge,
                profile=target.profile,
                queries=[q.to_list() for q in w.queries],
                repetitions=options.repeat,
                rep_p50_ms=rep_p50,
                rep_p95_ms=rep_p95,
                noisy=_spread(rep_p50) > NOISY or _spread(rep_p95) > NOISY,
                error_examples=wrong[:5],
                cache_hits=hits,
                cache_hit_ratio=(sum(bool(h) for h in hits) / len(hits)) if hits else None,
                requests_per_query=requests,
                bytes_per_query=per_query_bytes,
            )
        )
    return out


def _spread(values: list[float]) -> float:
    middle = statistics.median(values)
    return max(abs(v - middle) for v in values) / middle if middle > 0 else 0.0


def _cost_inputs(lake: Lake, options: RunOptions, raw_bytes: int | None) -> CostInputs:
    """The platform's volume as given (events and lookups a day), the sizes of this dataset's events."""
    snapshot = lake.table().current_snapshot()
    summary = snapshot.summary if snapshot is not None and snapshot.summary is not None else None
    events = int(summary.get("total-records") or 0) if summary else 0
    parquet = int(summary.get("total-files-size") or 0) if summary else 0
    raw = raw_bytes / events if raw_bytes and events else options.spec.avg_size_kb * 1000
    per_event = parquet / events if events else raw / 3
    return CostInputs(
        events_per_day=options.events_per_day,
        raw_bytes_per_event=raw,
        parquet_bytes_per_event=per_event,
        lookups_per_day=options.lookups_per_day,
    )


def _measured(marks: list[Benchmark], hot_window_days: float) -> tuple[Measured, bool]:
    """The cost model's inputs from an option's lookups: requests and bytes per lookup that reached the
    lake (a cache's misses; every lookup without a cache), and the hit ratio on Zipf lookups. False
    when the requests were not counted (a lake read directly): then the model's defaults stand in."""
    lookups = [b for b in marks if b.name.startswith("lookup")]
    counted = [b for b in lookups if b.requests_per_query is not None]
    zipf = next((b for b in lookups if b.name == "lookup-zipf" and b.cache_hit_ratio is not None), None)
    hit_ratio = zipf.cache_hit_ratio if zipf is not None and zipf.cache_hit_ratio is not None else 0.0
    if not counted:
        return Measured(cache_hit_ratio=hit_ratio, hot_window_days=hot_window_days), False
    requests = sum(sum((b.requests_per_query or {}).values()) * len(b.samples_ms) for b in counted)
    moved = sum((b.bytes_per_query or 0.0) * len(b.samples_ms) for b in counted)
    misses = sum(len(b.samples_ms) if b.cache_hits is None else b.cache_hits.count(False) for b in counted)
    per_lookup, per_bytes = (requests / misses, moved / misses) if misses else (0.0, 0.0)
    measured = Measured(
        requests_per_lookup=per_lookup,
        bytes_scanned_per_lookup=per_bytes,
        cache_hit_ratio=hit_ratio,
        hot_window_days=hot_window_days,
    )
    return measured, True


def _option_result(
    target: Target,
    spec: OptionSpec,
    first: Query,
    measured: Measurement,
    marks: list[Benchmark],
    options: RunOptions,
    prices: PriceTable,
    inputs: CostInputs,
    oracle: dict[str, Any],
    wall_s: float,
    hot_window_days: float,
) -> OptionResult:
    figures = measured.output or {}
    cost = None
    monthly = None
    priced_from = "not priced: the option failed"
    if marks:
        m, counted = _measured(marks, hot_window_days)
        cost = cost_table(prices, inputs, m, options=(spec.cost_option,))
        monthly = monthly_cost(spec.cost_option, prices, inputs, m).total
        priced_from = (
            "measured requests and bytes per lookup that reached the lake, and the measured hit ratio"
            if counted
            else "the cost model's defaults for requests and bytes (not counted: the lake was read directly)"
        )
    first_right = False
    if measured.failure is not None:
        passed, verdict = False, measured.failure
    else:
        first_right = check(first, figures.get("first_answer"), oracle[json.dumps(first.to_list())])
        passed, verdict = _verdict(marks, options.judge, first_right)
    return OptionResult(
        profile=target.profile,
        option=spec.name,
        description=spec.description,
        cost_option=spec.cost_option,
        first_answer_s=figures.get("first_answer_s"),
        open_s=figures.get("open_s"),
        open_to_first_s=figures.get("open_to_first_s"),
        first_query=first.to_list(),
        cold=target.cold,
        passed=passed,
        verdict=verdict,
        first_answer_right=first_right,
        failure=measured.failure,
        worst_ratio=worst_ratio(marks, options.judge),
        monthly_usd=monthly,
        priced_from=priced_from,
        cost=cost,
        first_answer_traffic=measured.traffic.get("first 0"),
        phases_s={k: float(figures[k]) for k in ("first_answer_s", "warmup_s", "timed_s") if k in figures}
        | {"process_s": wall_s},
    )


def _checked_loop(
    loop: dict[str, Any], queries: list[Query], measured: Measurement, oracle: dict[str, Any]
) -> dict[str, Any]:
    """A loop's summary, raw samples and traffic, its answers checked against the oracle."""
    label = f"loop-{loop['mode']}-{loop['concurrency']} 0"
    answers = loop.pop("answers")
    wrong = sum(1 for q, a in zip(queries, answers, strict=True) if not check(q, a, oracle[json.dumps(q.to_list())]))
    return loop | {"wrong_answers": wrong, "traffic": measured.traffic.get(label)}


def worst_ratio(marks: list[Benchmark], judge: str) -> float | None:
    """The judged statistic over its threshold, of the workload furthest from (or over) it."""
    ratios = [float(getattr(b, f"{judge}_ms")) / b.threshold_ms for b in marks if b.threshold_ms]
    return max(ratios) if ratios else None


def _verdict(marks: list[Benchmark], judge: str, first_right: bool) -> tuple[bool, str]:
    """Whether every judged workload is under its threshold with no wrong answer, in words with margins."""
    parts, passed = [], first_right
    if not first_right:
        parts.append("the first answer was wrong")
    for b in marks:
        if b.errors:
            passed = False
            parts.append(f"{b.name}: {b.errors} wrong answers")
        if b.threshold_ms is None:
            continue
        value = float(getattr(b, f"{judge}_ms"))
        margin = b.threshold_ms - value
        ok = margin > 0
        passed = passed and ok
        parts.append(
            f"{b.name} {judge} {value:,.1f} ms {'<' if ok else '>='} {b.threshold_ms:,.0f} ms "
            f"({'margin' if ok else 'over by'} {abs(margin):,.1f} ms)"
        )
    return passed, "; ".join(parts)


def decide_profile(profile: str, results: list[OptionResult]) -> Decision:
    """The cheapest option that meets every threshold; when none does, the one closest to them."""
    passing = sorted(
        (r for r in results if r.passed and r.monthly_usd is not None), key=lambda r: (r.monthly_usd, r.option)
    )
    if passing:
        best = passing[0]
        others = ", ".join(f"{r.option} ${r.monthly_usd:,.2f}" for r in passing[1:])
        failing = [r.option for r in results if not r.passed]
        reason = (
            f"on {profile}, {best.option} meets every threshold ({best.verdict}) and is the cheapest that does, "
            f"at ${best.monthly_usd:,.2f} a month"
            + (f"; also meeting them: {others}" if others else "")
            + (f"; not meeting them: {', '.join(failing)}" if failing else "")
        )
        return Decision(
            option=best.cost_option,
            name=best.option,
            reason=reason,
            judged={"profile": profile, "monthly_usd": best.monthly_usd, "passing": [r.option for r in passing]},
        )
    if not results:
        raise TerminalError(f"no option was measured under {profile}")
    closest = min(
        results,
        key=lambda r: (r.failure is not None, r.worst_ratio if r.worst_ratio is not None else float("inf"), r.option),
    )
    reason = f"on {profile}, no option meets every threshold; " + "; ".join(f"{r.option}: {r.verdict}" for r in results)
    return Decision(option=0, name="none", reason=reason, judged={"profile": profile, "closest": closest.option})


def _method(options: RunOptions, workloads: list[Workload], prices: PriceTable, inputs: CostInputs) -> dict[str, Any]:
    return {
        "timer": "time.perf_counter_ns around one call, in a worker process per option and profile",
        "transport": options.transport
        + (
            ": each option is the db service (lakebench serve) with its engine and cache, over HTTP"
            if options.transport == "http"
            else ": each option's engine (and cache) in the worker process"
        ),
        "samples_per_repetition": options.samples,
        "search_samples_per_repetition": options.search_samples,
        "repetitions": options.repeat,
        "warmup_queries": options.warmup,
        "workloads": {w.name: w.description for w in workloads},
        "workload_seed": options.workload_seed,
        "key_distributions": {"zipf": 0.99},
        "percentiles": "numpy.percentile, default (linear) method, over samples_ms (every repetition)",
        "noisy": f"a repetition's p50 or p95 more than {NOISY:.0%} from the median of them",
        "search_check": "top-k hits must be min(k, matches) distinct hits, all among the oracle's matches",
        "judged_by": options.judge,
        "thresholds_ms": {"lookup": options.lookup_threshold_ms, "search": options.search_threshold_ms},
        "decision": "per profile, the cheapest option meeting every threshold with no wrong answer",
        "time_to_first_answer": "process start (/proc) to the first answer of a fresh worker process",
        "indexes": "lake-indexed's key and full-text indexes are written by the writer with the data, in the same "
        "commit; no option builds or writes any",
        "cost_inputs": asdict(inputs),
        "prices_as_of": prices.as_of,
        "options": {name: asdict(spec) for name, spec in OPTIONS.items() if name in options.options},
    }


def rejudge(
    result: RunResult,
    *,
    judge: str | None = None,
    lookup_threshold_ms: float | None = None,
    search_threshold_ms: float | None = None,
) -> RunResult:
    """The same measurements judged again — another statistic or other thresholds — from the stored
    samples alone: nothing is measured again, and the original thresholds are kept in the method."""
    judge = judge or str(result.method.get("judged_by", "p95"))
    if judge not in JUDGES:
        raise ConfigError(f"--judge must be one of {', '.join(JUDGES)}, got {judge!r}")
    before = dict(result.method.get("thresholds_ms", {}))
    limits = {
        "lookup": lookup_threshold_ms if lookup_threshold_ms is not None else before.get("lookup", LOOKUP_THRESHOLD_MS),
        "search": search_threshold_ms if search_threshold_ms is not None else before.get("search", SEARCH_THRESHOLD_MS),
    }
    benchmarks = []
    for b in result.benchmarks:
        kind = "lookup" if b.name.startswith("lookup") else "search" if b.name.startswith("search") else None
        threshold = limits[kind] if kind is not None and b.threshold_ms is not None else None
        figures = statistics_of(b.samples_ms)
        passed = None if threshold is None else b.errors == 0 and figures[judge] < threshold
        benchmarks.append(b.model_copy(update={"threshold_ms": threshold, "judged_by": judge, "passed": passed}))
    options = []
    for o in result.options:
        if o.failure is not None:
            options.append(o)
            continue
        marks = [b for b in benchmarks if b.profile == o.profile and b.engine == o.option]
        passed, verdict = _verdict(marks, judge, o.first_answer_right)
        ratio = worst_ratio(marks, judge)
        options.append(o.model_copy(update={"passed": passed, "verdict": verdict, "worst_ratio": ratio}))
    decisions = {p: decide_profile(p, [o for o in options if o.profile == p]) for p in result.decisions}
    primary = str(result.decision.judged.get("profile", next(iter(decisions))))
    method = result.method | {
        "judged_by": judge,
        "thresholds_ms": limits,
        "rejudged": {"from_thresholds_ms": before, "from_judged_by": result.method.get("judged_by")},
    }
    return result.model_copy(
        update={
            "benchmarks": benchmarks,
            "options": options,
            "decisions": decisions,
            "decision": decisions.get(primary, result.decision),
            "method": method,
        }
    )
