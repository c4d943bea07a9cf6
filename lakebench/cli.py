"""The ``lakebench`` command line.

Conventions: every command takes ``--lake`` (env LAKEBENCH_LAKE, default ./lake) and ``--catalog``
(env LAKEBENCH_CATALOG); ``--json`` prints one machine-readable JSON document on stdout while
progress and messages go to stderr. Exit codes: 0 ok, 1 some input rejected or nothing found,
2 unusable input or settings, 75 a transient failure worth retrying.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichBar
from rich.table import Table

from lakebench.core.config import DEFAULT_LAKE, Settings
from lakebench.core.errors import ConfigError, LakebenchError, TransientError
from lakebench.core.models import Event, Limits
from lakebench.core.process import process_age_s


def _help_fits_pipes() -> None:
    """Help that reads well anywhere: a flag shows no ``<bool>`` placeholder (typer >= 0.29 prints
    one), and piped help is laid out wide rather than at 80 columns, so no option name is cut."""
    from typer import rich_utils
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)  # typer < 0.29 shows no placeholder
    if shown is not None:

        def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
            return None if self.is_flag else shown(self, ctx)

        TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
    if rich_utils.MAX_WIDTH is None and not sys.stdout.isatty():
        rich_utils.MAX_WIDTH = 160


_help_fits_pipes()
app = typer.Typer(
    help="Store events and documents on object storage as Parquet + Iceberg, query them, and benchmark it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)  # piped messages stay one line each, URLs whole

LakeOpt = Annotated[str, typer.Option("--lake", envvar="LAKEBENCH_LAKE", help="Lake folder or s3://bucket/prefix.")]
CatalogOpt = Annotated[
    str | None,
    typer.Option(
        "--catalog",
        envvar="LAKEBENCH_CATALOG",
        help="Iceberg SQL catalog URL (default: SQLite beside the lake).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
MaxBodyOpt = Annotated[int, typer.Option("--max-body-bytes", min=0, help="Largest accepted body, in bytes.")]
EngineOpt = Annotated[str, typer.Option("--engine", help="lake-sql | lake-indexed | clickhouse")]


class RichProgress:
    """The benchmark/job progress protocol on a Rich progress bar (stderr)."""

    def __init__(self, enabled: bool = True) -> None:
        self._bar = RichBar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            disable=not (enabled and err.is_terminal),  # no bar frames in logs and pipes
        )
        self._task: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def start(self, description: str, total: int | None) -> None:
        self._task = self._bar.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._bar.advance(self._task, n)

    def done(self) -> None:
        self._task = None


def _settings(lake: str, catalog: str | None) -> Settings:
    return Settings.from_env(lake=lake, catalog=catalog)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def _emit_json(document: Any) -> None:
    with _answer():
        sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=2, default=_json_value) + "\n")


def _mb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e6:,.1f} MB"


@app.command()
def generate(
    count: Annotated[int, typer.Option("--count", min=0, help="Number of events.")] = 2_000,
    avg_size_kb: Annotated[float, typer.Option("--avg-size-kb", min=0.0, help="Average body size (KB).")] = 225.0,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same events.")] = 42,
    output: Annotated[Path | None, typer.Option("--out", help="Write NDJSON here instead of the lake.")] = None,
    lake: LakeOpt = DEFAULT_LAKE,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate deterministic synthetic events (the seed's /generate {count, avgSizeKB}) into the lake."""
    from lakebench.generate.synthetic import GeneratorSpec
    from lakebench.generate.synthetic import generate as synthesise

    spec = GeneratorSpec(count=count, avg_size_kb=avg_size_kb, seed=seed)
    with RichProgress(enabled=not as_json) as progress:
        progress.start(f"generating {count:,} events", count)
        if output is not None:
            written = 0
            with _open_for_writing(output) as f:
                for event in synthesise(spec):
                    f.write(event.to_json() + "\n")
                    written += 1
                    progress.advance()
            document: dict[str, Any] = {"dataset": spec.dataset_id, "events": written, "out": str(output)}
        else:
            from lakebench.lake.catalog import Lake
            from lakebench.lake.writer import LakeWriter

            target = Lake(_settings(lake, catalog))
            result = LakeWriter(target).write(
                synthesise(spec), summary={"lakebench.dataset": spec.dataset_id}, progress=progress.advance
            )
            document = {
                "dataset": spec.dataset_id,
                "lake": target.url,
                "events": result.events,
                "skipped": result.skipped,
                "raw_bytes": result.raw_bytes,
                "parquet_bytes": result.parquet_bytes,
                "files": [f.key for f in result.files],
                "snapshot_id": result.snapshot_id,
                "seconds": round(result.seconds, 3),
            }
    if as_json:
        _emit_json(document)
    elif output is not None:
        out.print(f"wrote {document['events']:,} events to {output}")
    else:
        skipped = f"; {document['skipped']:,} already in the lake, skipped" if document["skipped"] else ""
        snapshot = f"snapshot {document['snapshot_id']}" if document["snapshot_id"] else "nothing to commit"
        out.print(
            f"wrote {document['events']:,} events ({_mb(document['raw_bytes'])} raw, "
            f"{_mb(document['parquet_bytes'])} Parquet in {len(document['files'])} files) "
            f"to {document['lake']} in {document['seconds']:.1f} s; {snapshot}{skipped}"
        )


@contextlib.contextmanager
def _answer() -> Iterator[None]:
    """Where a command writes its answer on stdout: a reader that stops early (``| head``) ends the
    command quietly with the exit code it would have had, not with typer's exit 1."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more can reach the reader


def _open_for_writing(path: Path) -> Any:
    try:
        return path.open("w", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


def _report_rejections(source: str, rejected: list[Any], max_errors: int) -> None:
    # Plain lines, never wrapped: one rejection per line, 'FILE: line N: field: problem', grep-able.
    for rejection in rejected[:max_errors]:
        sys.stderr.write(f"{source}: {rejection}\n")
    if len(rejected) > max_errors:
        more = len(rejected) - max_errors
        sys.stderr.write(f"{source}: … and {more:,} more rejected records (raise --max-errors)\n")


def _ingest_document(report: Any) -> dict[str, Any]:
    return {
        "source": report.source,
        "format": report.format,
        "accepted": report.accepted,
        "rejected": [
            {"unit": r.unit, "position": r.position, "problems": [asdict(p) for p in r.problems]}
            for r in report.rejected
        ],
        "input_error": report.input_error,
    }


@app.command()
def ingest(
    path: Annotated[str, typer.Argument(help="Input file (.gz/.bz2 read as such); '-' for stdin.")],
    fmt: Annotated[
        str, typer.Option("--format", help="ndjson | wikiticker | gharchive | tantivy-wiki | mediawiki-xml")
    ] = "ndjson",
    max_body_bytes: MaxBodyOpt = Limits().max_body_bytes,
    max_errors: Annotated[int, typer.Option("--max-errors", min=0, help="Rejections to print.")] = 1000,
    lake: LakeOpt = DEFAULT_LAKE,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate a file's records and write the good ones into the lake; report every bad one."""
    from lakebench.lake.catalog import Lake
    from lakebench.pipeline.batch import ingest_file

    target = Lake(_settings(lake, catalog))
    with RichProgress(enabled=not as_json) as progress:
        progress.start(f"ingesting {path}", None)
        report = ingest_file(target, path, fmt, limits=Limits(max_body_bytes=max_body_bytes), progress=progress.advance)
    write = report.write
    if as_json:
        document = _ingest_document(report)
        if write is not None:
            document |= {
                "lake": target.url,
                "written": write.events,
                "skipped": write.skipped,
                "files": [f.key for f in write.files],
                "snapshot_id": write.snapshot_id,
            }
        _emit_json(document)
    else:
        _report_rejections(path, report.rejected, max_errors)
        if report.input_error:
            err.print(f"{path}: input stopped being readable: {report.input_error}", markup=False)
        files = len(write.files) if write else 0
        written = write.events if write else 0
        skipped = write.skipped if write else 0
        out.print(
            f"{written:,} events written to {target.url} in {files} file(s); "
            f"{skipped:,} already in the lake (skipped); {len(report.rejected):,} rejected"
        )
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def convert(
    source: Annotated[str, typer.Argument(help="NDJSON events ('-' for stdin).")],
    target: Annotated[str, typer.Argument(help="Output .parquet path or s3://bucket/key.parquet.")],
    fmt: Annotated[str, typer.Option("--format", help="Input format, as for ingest.")] = "ndjson",
    max_body_bytes: MaxBodyOpt = Limits().max_body_bytes,
    max_errors: Annotated[int, typer.Option("--max-errors", min=0)] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """Convert NDJSON events to one key-sorted, zstd Parquet file (no catalog commit)."""
    from lakebench.pipeline.batch import convert_file

    report = convert_file(source, target, fmt, limits=Limits(max_body_bytes=max_body_bytes))
    if as_json:
        document = _ingest_document(report)
        if report.parquet:
            document |= {"out": target, **asdict(report.parquet)}
        _emit_json(document)
    else:
        _report_rejections(source, report.rejected, max_errors)
        if report.parquet:
            out.print(
                f"{report.parquet.rows:,} events -> {target} ({_mb(report.parquet.bytes)}, "
                f"{report.parquet.row_groups} row groups); {len(report.rejected):,} rejected"
            )
    if not report.ok:
        raise typer.Exit(1)


def _event_document(event: Event, full: bool) -> dict[str, Any]:
    doc = event.to_json_dict()
    if not full and doc["body"] and len(doc["body"]) > 400:
        doc["body"] = doc["body"][:400] + f"… ({len(event.body or ''):,} chars; --full for all)"
    return doc


def _open_engine(name: str, lake: str, catalog: str | None) -> Any:
    """Open an engine on the lake, saying so while it takes: a spinner on a terminal, one line when piped.
    The opening time is kept (``_OPENED``) for the time to first answer."""
    from lakebench.engines import ENGINES, open_engine
    from lakebench.lake.catalog import Lake

    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r}; choose one of: {', '.join(sorted(ENGINES))}")
    started = time.perf_counter()
    target = Lake(_settings(lake, catalog))
    message = f"opening {name} on {target.url} (catalog, metadata{', indexes' if name == 'lake-indexed' else ''})"
    from lakebench.lake.metadata import metadata_location

    if metadata_location(target) is None:  # a lake with nothing to read fails here, in one line
        target.table(create=False)  # (a REST catalog is asked through pyiceberg)
    if err.is_terminal:
        with err.status(message + " …"):
            engine = open_engine(name, target)
    else:
        err.print(message, markup=False)
        engine = open_engine(name, target)
    _OPENED["seconds"] = time.perf_counter() - started
    for notice in getattr(engine, "notices", ()):
        err.print(f"note: {notice}", markup=False)
    return engine


_OPENED: dict[str, float] = {"seconds": 0.0}


def _first_answer() -> dict[str, float]:
    """The time from the process's start to the answer, and how much of it was opening the engine."""
    return {"first_answer_s": process_age_s(), "open_s": _OPENED["seconds"]}


def _timing_note(query_ms: float, engine: str) -> str:
    t = _first_answer()
    first, opening = t["first_answer_s"], t["open_s"]
    return (
        f"{query_ms:.1f} ms on {engine}; first answer {first:.2f} s after the process started (opening {opening:.2f} s)"
    )


@app.command()
def lookup(
    ns: Annotated[str, typer.Argument(help="Namespace, e.g. en.wikipedia.org")],
    entity_id: Annotated[str, typer.Argument(help="Entity id, e.g. TypeScript")],
    engine: EngineOpt = "lake-sql",
    full: Annotated[bool, typer.Option("--full", help="Print the whole body.")] = False,
    lake: LakeOpt = DEFAULT_LAKE,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The latest version of one entity (the seed's most critical query)."""
    query_engine = _open_engine(engine, lake, catalog)
    try:
        started = time.perf_counter_ns()
        event = query_engine.lookup(ns, entity_id)
        elapsed_ms = (time.perf_counter_ns() - started) / 1e6
    finally:
        query_engine.close()
    if as_json:
        _emit_json(
            {
                "engine": engine,
                "elapsed_ms": elapsed_ms,
                **_first_answer(),
                "found": event is not None,
                "event": None if event is None else _event_document(event, True),
            }
        )
    elif event is None:
        err.print(f"not found: {ns} / {entity_id} ({_timing_note(elapsed_ms, engine)})", markup=False)
    else:
        state = " (deleted)" if event.type == "delete" else ""
        err.print(
            f"{ns} / {entity_id}{state}: version {event.version}, {_timing_note(elapsed_ms, engine)}", markup=False
        )
        with _answer():
            out.print_json(data=_event_document(event, full))
    if event is None:
        raise typer.Exit(1)


@app.command()
def history(
    ns: Annotated[str, typer.Argument(help="Namespace")],
    entity_id: Annotated[str, typer.Argument(help="Entity id")],
    engine: EngineOpt = "lake-sql",
    lake: LakeOpt = DEFAULT_LAKE,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every version of one entity, oldest first (--json for the full events)."""
    query_engine = _open_engine(engine, lake, catalog)
    try:
        events = query_engine.history(ns, entity_id)
    finally:
        query_engine.close()
    if as_json:
        _emit_json({"engine": engine, "events": [_event_document(e, True) for e in events]})
    else:
        with _answer():
            for event in events:
                line = f"{event.ts.isoformat()}  v{event.version}  {event.type:<6}  {event.event_id}"
                sys.stdout.write(f"{line}  {event.title or ''}\n")
        err.print(f"{len(events)} versions of {ns} / {entity_id} on {engine}", markup=False)
    if not events:
        raise typer.Exit(1)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Words that must all appear (title or body).")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 10,
    ns: Annotated[str | None, typer.Option("--ns", help="Only this namespace.")] = None,
    engine: EngineOpt = "lake-indexed",
    lake: LakeOpt = DEFAULT_LAKE,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Full-text search over the latest version of every live entity, ranked."""
    query_engine = _open_engine(engine, lake, catalog)
    try:
        started = time.perf_counter_ns()
        hits = query_engine.search(query, limit, ns)
        elapsed_ms = (time.perf_counter_ns() - started) / 1e6
    finally:
        query_engine.close()
    if as_json:
        _emit_json({"engine": engine, "elapsed_ms": elapsed_ms, **_first_answer(), "hits": [asdict(h) for h in hits]})
    else:
        with _answer():
            for hit in hits:
                sys.stdout.write(f"{hit.score:10.3f}  {hit.entity_ns}  {hit.entity_id}\n")
        err.print(f"{len(hits)} hits, {_timing_note(elapsed_ms, engine)}", markup=False)
    if not hits:
        raise typer.Exit(1)


def parameter(text: str, position: int) -> Any:
    """A ``-p`` value: text unless typed (``int:``, ``float:``, ``bool:``, ``null``); a JSON string
    literal (``'"2025-10-01"'``) is decoded."""
    kind, sep, rest = text.partition(":")
    try:
        if sep and kind == "int":
            return int(rest)
        if sep and kind == "float":
            return float(rest)
        if sep and kind == "bool":
            if rest.lower() not in ("true", "false"):
                raise ValueError(rest)
            return rest.lower() == "true"
    except ValueError:
        raise ConfigError(f"-p number {position} ({text!r}) is not a valid {kind}") from None
    if text == "null":
        return None
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            decoded = json.loads(text)
        except json.JSONDecodeError:
            return text
        return decoded if isinstance(decoded, str) else text
    return text


def _tsv_field(value: Any) -> str:
    if value is None:
        return "NULL"
    text = value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


@app.command("sql")
def sql_command(
    query: Annotated[str, typer.Argument(help="One SELECT over the table 'events'; '?' marks a parameter.")],
    params: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="A parameter value, bound as text (the engine casts it to the column's type); "
            "int:N, float:X, bool:true, null for a typed value; a JSON string literal is decoded.",
        ),
    ] = None,
    engine: EngineOpt = "lake-sql",
    lake: LakeOpt = DEFAULT_LAKE,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Read-only SQL: writes and DDL are refused; rows and time are limited; parameters are bound."""

    values = [parameter(p, n) for n, p in enumerate(params or [], 1)]  # a bad one fails before the lake is opened
    query_engine = _open_engine(engine, lake, catalog)
    try:
        result = query_engine.sql(query, values)
    finally:
        query_engine.close()
    if as_json:
        _emit_json({"columns": result.columns, "rows": result.rows, "truncated": result.truncated})
        return
    if not out.is_terminal:  # piped: tab-separated, one row per line, nothing wrapped or cut
        with _answer():
            for row in [result.columns, *result.rows]:
                sys.stdout.write("\t".join(_tsv_field(v) for v in row) + "\n")
    else:
        table = Table(*result.columns)
        for row in result.rows:
            table.add_row(*("NULL" if v is None else str(v) for v in row))
        out.print(table)
    if result.truncated:
        err.print("(truncated: more rows than the limit)")


def _names(
    value: str, option: str, known: tuple[str, ...] | list[str], everything: str | None = None
) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    if everything is not None and names == (everything,):
        return tuple(known)
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ConfigError(
            f"{option}: unknown {unknown[0]!r}; choose from {', '.join(known)}" if unknown else f"{option} is empty"
        )
    return names


@app.command()
def run(
    count: Annotated[int, typer.Option("--count", min=1, help="Events in the generated dataset.")] = 300,
    avg_size_kb: Annotated[float, typer.Option("--avg-size-kb", min=0.0)] = 225.0,
    seed: Annotated[int, typer.Option("--seed")] = 42,
    dataset: Annotated[
        Path | None, typer.Option("--dataset", help="Benchmark this file (any importer's format) instead.")
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="--dataset's format: ndjson | wikiticker | gharchive | tantivy-wiki | …")
    ] = "ndjson",
    options: Annotated[
        str, typer.Option("--options", help="Architecture options to compare (comma-separated, or all).")
    ] = "lake-sql,lake-sql+cache,clickhouse,lake-indexed",
    profiles: Annotated[
        str | None,
        typer.Option("--profiles", help="Network profiles (default: local,r2 for a local lake; direct for a bucket)."),
    ] = None,
    workloads: Annotated[
        str, typer.Option("--workloads", help="Workloads (comma-separated, or all).")
    ] = "lookup-zipf,lookup-missing,search-selective,search-common",
    samples: Annotated[int, typer.Option("--samples", min=1, help="Timed queries per workload and repetition.")] = 15,
    search_samples: Annotated[
        int, typer.Option("--search-samples", min=1, help="Timed searches per search workload and repetition.")
    ] = 4,
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="Repetitions of every workload.")] = 3,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Warm-up lookups before the timed part.")] = 10,
    judge: Annotated[
        str, typer.Option("--judge", help="Statistic compared to thresholds: p50|p95|p99|max|mean")
    ] = "p95",
    lookup_threshold: Annotated[float, typer.Option("--lookup-threshold-ms", min=0.0)] = 500.0,
    search_threshold: Annotated[float, typer.Option("--search-threshold-ms", min=0.0)] = 5000.0,
    through: Annotated[
        str, typer.Option("--through", help="engine: call each option in process; http: through the db service.")
    ] = "engine",
    loops: Annotated[
        str | None, typer.Option("--loops", help="Concurrency levels of closed (and open) loops, e.g. 1,2,4.")
    ] = None,
    open_rate: Annotated[
        float | None, typer.Option("--open-rate", min=0.001, help="Also an open loop at this rate (calls/s).")
    ] = None,
    lookups_per_day: Annotated[float, typer.Option("--lookups-per-day", min=0.0, help="Cost input.")] = 100_000,
    events_per_day: Annotated[float, typer.Option("--events-per-day", min=0.0, help="Cost input.")] = 10_000,
    prices: Annotated[
        Path | None, typer.Option("--prices", help="Price table (TOML); default: the bundled one.")
    ] = None,
    results_dir: Annotated[Path, typer.Option("--results-dir")] = Path("results"),
    lake: LakeOpt = DEFAULT_LAKE,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The main job: every option measured like for like under each network profile, judged, priced, reported."""
    from lakebench.benchmark.job import DIRECT, FileDataset, RunOptions, run_job
    from lakebench.benchmark.options import OPTIONS
    from lakebench.benchmark.queries import ALL_WORKLOADS
    from lakebench.generate.synthetic import GeneratorSpec
    from lakebench.report.render import write_report
    from lakebench.storage.netem import PROFILES

    chosen = RunOptions(
        spec=GeneratorSpec(count=count, avg_size_kb=avg_size_kb, seed=seed),
        dataset=FileDataset(dataset, fmt) if dataset is not None else None,
        options=_names(options, "--options", list(OPTIONS), "all"),
        profiles=_names(profiles, "--profiles", [DIRECT, *PROFILES]) if profiles is not None else None,
        workloads=_names(workloads, "--workloads", ALL_WORKLOADS, "all"),
        samples=samples,
        search_samples=search_samples,
        repeat=repeat,
        warmup=warmup,
        judge=judge,
        lookup_threshold_ms=lookup_threshold,
        search_threshold_ms=search_threshold,
        results_dir=results_dir,
        prices=prices,
        lookups_per_day=lookups_per_day,
        events_per_day=events_per_day,
        transport=through,
        loop_levels=_levels(loops),
        open_rate=open_rate,
    )
    if open_rate is not None and not chosen.loop_levels:
        raise ConfigError("--open-rate needs --loops (the concurrency levels to run the loops at)")
    with RichProgress(enabled=not as_json) as progress:
        result, path = run_job(_settings(lake, catalog), chosen, progress)
    report = write_report(result, path)
    if as_json:
        sys.stdout.write(result.to_json() + "\n")
        return
    _print_run(result)
    out.print(f"results with every sample: {path}", markup=False)
    out.print(f"report: {report.html} (and {report.markdown.name})", markup=False)


def _levels(value: str | None) -> tuple[int, ...]:
    if value is None:
        return ()
    try:
        levels = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        levels = ()
    if not levels or any(not 1 <= v <= 64 for v in levels):
        raise ConfigError(f"--loops takes concurrency levels from 1 to 64, comma-separated (e.g. 1,2,4), got {value!r}")
    return levels


def _print_loops(result: Any) -> None:
    for o in result.options:
        for loop in o.loops:
            rate = f" at {loop['rate_per_s']:g}/s" if loop["rate_per_s"] else ""
            out.print(
                f"{o.profile} {o.option}: {loop['mode']} loop{rate}, {loop['concurrency']} callers: "
                f"p50 {loop['p50_ms']:,.2f} ms, p99 {loop['p99_ms']:,.2f} ms, {loop['calls_per_s']} calls/s, "
                f"{loop['errors']} errors, {loop['wrong_answers']} wrong",
                markup=False,
            )


def _print_run(result: Any) -> None:
    from lakebench.report.render import seconds

    d = result.dataset
    if result.lake.get("note"):
        err.print(f"note: {result.lake['note']}", markup=False)
    out.print(
        f"dataset {d.source}: {d.events:,} events, {d.entities:,} entities, {_mb(d.raw_bytes)} raw, "
        f"{_mb(d.parquet_bytes)} Parquet in {d.files} files{' (reused)' if d.reused else ''}"
    )
    judge = result.method["judged_by"]
    thresholds = result.method["thresholds_ms"]
    for profile in result.decisions:
        table = Table(
            title=f"profile {profile}: lookups (worst workload) and search, hot, judged at {judge} against "
            f"{thresholds['lookup']:,.0f} ms and {thresholds['search']:,.0f} ms",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
        )
        for column in ("option", "p50", "p95", "search p95", "1st answer", "GET/q", "req/q", "hits", "$/mo"):
            table.add_column(column, justify="right" if column != "option" else "left", no_wrap=True)
        table.add_column("result", no_wrap=True)
        for o in (o for o in result.options if o.profile == profile):
            marks = [b for b in result.benchmarks if b.profile == profile and b.engine == o.option]
            lookups = [b for b in marks if b.name.startswith("lookup")]
            searches = [b for b in marks if b.name.startswith("search")]

            def worst(bs: list[Any], stat: str) -> str:
                return f"{max(getattr(b, stat) for b in bs):,.1f} ms" if bs else "-"

            counted = [b.requests_per_query for b in lookups if b.requests_per_query is not None]
            gets = f"{sum(c.get('GET', 0.0) for c in counted) / len(counted):.2f}" if counted else "n/a"
            every = f"{sum(sum(c.values()) for c in counted) / len(counted):.2f}" if counted else "n/a"
            ratios = [b.cache_hit_ratio for b in lookups if b.name == "lookup-zipf" and b.cache_hit_ratio is not None]
            noisy = " ~" if any(b.noisy for b in marks) else ""
            table.add_row(
                o.option,
                worst(lookups, "p50_ms"),
                worst(lookups, "p95_ms") + noisy,
                worst(searches, "p95_ms"),
                seconds(o.first_answer_s),
                gets,
                every,
                f"{ratios[0]:.0%}" if ratios else "-",
                (f"{o.monthly_usd:,.2f}" + ("*" if o.priced_from.startswith("the cost model's") else ""))
                if o.monthly_usd is not None
                else "-",
                "[green]pass[/]" if o.passed else "[red]FAIL[/]",
            )
        _print_wide(table)
        for o in (o for o in result.options if o.profile == profile and o.failure):
            err.print(f"{o.option} failed: {o.failure}", markup=False)
        decision = result.decisions[profile]
        out.print(f"[bold]decision on {profile}: {decision.name}[/]")
        out.print(f"because {decision.reason}", markup=False)
    out.print(
        "~ noisy (a repetition's p50 or p95 more than 10 % from their median); GET/q and req/q: object-store GETs "
        "and all requests per lookup; hits: the cache's hit ratio on Zipf lookups; * priced from the cost model's "
        "defaults (requests not counted on a lake read directly)",
        markup=False,
    )
    primary = result.decision.judged.get("profile")
    as_of = result.method["prices_as_of"]
    costs = Table(title=f"monthly cost (USD) on {primary}, from its measured figures, prices as of {as_of}")
    costs.add_column("option")
    for scale in ("1x", "10x", "100x"):
        costs.add_column(scale, justify="right")
    for o in (o for o in result.options if o.profile == primary and o.cost):
        costs.add_row(o.option, *(f"{next(iter(o.cost[s].values()))['total_usd']:,.2f}" for s in ("1x", "10x", "100x")))
    _print_wide(costs)
    _print_loops(result)


def _print_wide(table: Table) -> None:
    """A table whole when piped (a pipe has no width to fit); fitted to a terminal's width."""
    if out.is_terminal:
        out.print(table)
        return
    width = out.width
    out.width = max(width, 160)  # print(width=…) cannot widen past the console's own width
    try:
        out.print(table)
    finally:
        out.width = width


serve_app = typer.Typer(help="Run lakebench's HTTP services.")
app.add_typer(serve_app, name="serve")
dlq_app = typer.Typer(help="Read and re-submit rejected events (the dead-letter store).", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
LOOPBACK = ("127.0.0.1", "::1", "localhost")

# Options the db service and the pipeline service share.
HostOpt = Annotated[str, typer.Option("--host", help="Address to listen on.")]
PortOpt = Annotated[int, typer.Option("--port", min=0, max=65535)]
TokenOpt = Annotated[
    str | None, typer.Option("--token", envvar="LAKEBENCH_TOKEN", help="Bearer token for ingest and SQL.")
]
NoAuthOpt = Annotated[bool, typer.Option("--no-auth", help="Serve without a token (loopback addresses only).")]
StateDirOpt = Annotated[
    Path | None, typer.Option("--state-dir", help="Write-ahead log, writer id, dedupe window (default: one per lake).")
]
LayoutOpt = Annotated[str, typer.Option("--layout", help="lookup | hive-time | flat")]
RollMbOpt = Annotated[float, typer.Option("--roll-mb", min=0.001, help="Roll when this much is buffered.")]
RollIntervalOpt = Annotated[float, typer.Option("--roll-interval", min=0.01, help="Roll the oldest after (s).")]
IdleOpt = Annotated[float, typer.Option("--idle", min=0.01, help="Roll after this long without events (s).")]
MaxRequestOpt = Annotated[float, typer.Option("--max-request-mb", min=0.001)]
MaxDecompressedOpt = Annotated[
    float, typer.Option("--max-decompressed-mb", min=0.001, help="Largest gzip body once decompressed.")
]
BodyTimeoutOpt = Annotated[
    float, typer.Option("--body-timeout", min=0.01, help="Answer 408 when a body stalls this long (s).")
]
BodyDeadlineOpt = Annotated[
    float, typer.Option("--body-deadline", min=0.01, help="Answer 408 when a body takes longer in all (s).")
]
DedupeWindowOpt = Annotated[
    int, typer.Option("--dedupe-window", min=1, help="Committed event ids remembered for duplicates.")
]
DedupeDaysOpt = Annotated[float, typer.Option("--dedupe-days", min=0.0, help="... and for at most this many days.")]
DlqMaxOpt = Annotated[float, typer.Option("--dlq-max-mb", min=0.0, help="Dead letters kept in the lake, in all.")]
MaxBufferOpt = Annotated[float, typer.Option("--max-buffer-mb", min=1.0, help="Past this, answer 503.")]
LogLevelOpt = Annotated[
    str, typer.Option("--log-level", envvar="LAKEBENCH_LOG_LEVEL", help="debug | info | warning | error")
]
LogJsonOpt = Annotated[
    bool, typer.Option("--log-json", envvar="LAKEBENCH_LOG_JSON", help="One JSON object per log line (stderr).")
]
AccessLogOpt = Annotated[
    bool, typer.Option("--access-log/--no-access-log", help="One log line per request (lakebench.access).")
]


def _check_auth(token: str | None, no_auth: bool, host: str) -> str | None:
    if token == "":
        raise LakebenchError("--token is empty: give a token clients can send, or --no-auth for local use")
    if token is None and not no_auth:
        raise LakebenchError("serve needs a token (--token or LAKEBENCH_TOKEN), or --no-auth for local use")
    if no_auth and host not in LOOPBACK:
        raise LakebenchError(f"--no-auth is for local use: listen on 127.0.0.1, not {host}, or set a token")
    return None if no_auth else token


def _pipeline_config(**options: Any) -> Any:
    from lakebench.lake.layouts import get_layout
    from lakebench.lake.writer import WriterOptions
    from lakebench.pipeline.core import PipelineConfig

    get_layout(options["layout"])  # fail before binding the port
    return PipelineConfig(
        state_dir=options["state_dir"],
        layout=options["layout"],
        roll_bytes=int(options["roll_mb"] * 1e6),
        roll_interval_s=options["roll_interval"],
        idle_s=options["idle"],
        max_buffer_bytes=int(options["max_buffer_mb"] * 1e6),
        limits=Limits(max_body_bytes=options["max_body_bytes"]),
        writer_id=options.get("writer_id"),
        writer=WriterOptions(index=options.get("index", True)),
        dedupe_window=options["dedupe_window"],
        dedupe_max_age_s=options["dedupe_days"] * 86400,
    )


def _ingest_settings(checked_token: str | None, **options: Any) -> Any:
    from lakebench.api.ingest import IngestSettings

    return IngestSettings(
        token=checked_token,
        max_request_bytes=int(options["max_request_mb"] * 1e6),
        max_decompressed_bytes=int(options["max_decompressed_mb"] * 1e6),
        body_timeout_s=options["body_timeout"],
        body_deadline_s=options["body_deadline"],
    )


@serve_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8080,
    engine: Annotated[str, typer.Option("--engine", help="lake-indexed | lake-sql | clickhouse")] = "lake-indexed",
    cache: Annotated[
        str, typer.Option("--cache", help="memory | memory://?max_mb=N | redis://host:port/db | none")
    ] = "memory",
    max_age: Annotated[
        float, typer.Option("--max-age", min=0.0, help="Cached answers are fresh this long (s).")
    ] = 3600,
    swr: Annotated[
        float, typer.Option("--stale-while-revalidate", min=0.0, help="Then served stale while revalidating (s).")
    ] = 86400,
    stale_if_error: Annotated[
        float, typer.Option("--stale-if-error", min=0.0, help="Served stale when the engine fails, up to (s).")
    ] = 86400,
    negative_ttl: Annotated[float, typer.Option("--negative-ttl", min=0.0, help="'Not found' is cached (s).")] = 5,
    token: TokenOpt = None,
    read_token: Annotated[
        str | None, typer.Option("--read-token", envvar="LAKEBENCH_READ_TOKEN", help="Required for reads when set.")
    ] = None,
    no_auth: NoAuthOpt = False,
    ingest: Annotated[bool, typer.Option("--ingest/--no-ingest", help="Mount the ingest API.")] = True,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Worker processes (needs Redis).")] = 1,
    poll_interval: Annotated[
        float, typer.Option("--poll-interval", min=0.05, help="Look for other processes' commits every (s).")
    ] = 2.0,
    warm_index: Annotated[
        bool,
        typer.Option(
            "--warm-index/--no-warm-index",
            help="lake-indexed: fetch every index block and footer in the background after starting.",
        ),
    ] = True,
    results_dir: Annotated[
        Path,
        typer.Option(
            "--results-dir",
            help="Where runs started over HTTP write results and reports; /status and /report read them.",
        ),
    ] = Path("results"),
    state_dir: StateDirOpt = None,
    layout: LayoutOpt = "lookup",
    roll_mb: RollMbOpt = 64.0,
    roll_interval: RollIntervalOpt = 5.0,
    idle: IdleOpt = 1.0,
    max_request_mb: MaxRequestOpt = 5.0,
    max_decompressed_mb: MaxDecompressedOpt = 20.0,
    body_timeout: BodyTimeoutOpt = 10.0,
    body_deadline: BodyDeadlineOpt = 60.0,
    dedupe_window: DedupeWindowOpt = 1_000_000,
    dedupe_days: DedupeDaysOpt = 7.0,
    dlq_max_mb: DlqMaxOpt = 1024.0,
    max_buffer_mb: MaxBufferOpt = 512.0,
    max_body_bytes: MaxBodyOpt = Limits().max_body_bytes,
    log_level: LogLevelOpt = "info",
    log_json: LogJsonOpt = False,
    access_log: AccessLogOpt = True,
    lake: LakeOpt = DEFAULT_LAKE,
    catalog: CatalogOpt = None,
) -> None:
    """The db service: cached reads (stale-while-revalidate), ingest, /health, /status, /metrics.

    Subcommand ``pipeline`` runs the ingest service alone.
    """
    if ctx.invoked_subcommand is not None:
        return
    from lakebench.api.serve import run_service
    from lakebench.api.service import ServiceConfig
    from lakebench.cache import CachePolicy
    from lakebench.core import logs

    logs.configure(log_level, as_json=log_json, access=access_log)
    options = dict(ctx.params)
    policy = CachePolicy(max_age, swr, stale_if_error, negative_ttl)
    checked_token = _check_auth(token, no_auth, host)
    config = ServiceConfig(
        settings=_settings(lake, catalog),
        engine=engine,
        cache=None if cache.lower() in ("none", "off", "") else cache,
        policy=policy,
        token=checked_token,
        read_token=read_token,
        ingest=ingest,
        pipeline=_pipeline_config(**options),
        ingest_settings=_ingest_settings(checked_token, **options),
        dlq_max_bytes=int(dlq_max_mb * 1e6),
        poll_s=poll_interval,
        warm_index=warm_index,
        workers=workers,
        results_dir=results_dir,
    )
    run_service(config, host, port, err, log_level)


@serve_app.command("pipeline")
def serve_pipeline(
    ctx: typer.Context,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8080,
    token: TokenOpt = None,
    no_auth: NoAuthOpt = False,
    state_dir: StateDirOpt = None,
    layout: LayoutOpt = "lookup",
    roll_mb: RollMbOpt = 64.0,
    roll_interval: RollIntervalOpt = 5.0,
    idle: IdleOpt = 1.0,
    max_request_mb: MaxRequestOpt = 5.0,
    max_decompressed_mb: MaxDecompressedOpt = 20.0,
    body_timeout: BodyTimeoutOpt = 10.0,
    body_deadline: BodyDeadlineOpt = 60.0,
    dedupe_window: DedupeWindowOpt = 1_000_000,
    dedupe_days: DedupeDaysOpt = 7.0,
    dlq_max_mb: DlqMaxOpt = 1024.0,
    max_buffer_mb: MaxBufferOpt = 512.0,
    max_body_bytes: MaxBodyOpt = Limits().max_body_bytes,
    writer_id: Annotated[str | None, typer.Option("--writer-id", help="Default: kept in the state dir.")] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Worker processes behind the one port, each with its own write-ahead log (a slot of the "
            "state dir), all committing to the one table.",
        ),
    ] = 1,
    index: Annotated[
        bool,
        typer.Option(
            "--index/--no-index",
            help="Write the key and full-text indexes with each commit (without them, lake-indexed answers from "
            "the Parquet files until `lakebench index build`).",
        ),
    ] = True,
    log_level: LogLevelOpt = "info",
    log_json: LogJsonOpt = False,
    access_log: AccessLogOpt = True,
    lake: LakeOpt = DEFAULT_LAKE,
    catalog: CatalogOpt = None,
) -> None:
    """The ingest pipeline alone: POST /v1/events -> write-ahead log -> rolling Parquet -> Iceberg commits."""
    from lakebench.api.serve import PipelineServer, check_port, run_pipeline_server
    from lakebench.core import logs

    logs.configure(log_level, as_json=log_json, access=access_log)
    options = dict(ctx.params)
    checked_token = _check_auth(token, no_auth, host)
    check_port(host, port)
    if workers > 1 and writer_id is not None:
        raise LakebenchError("--writer-id names one writer: with --workers each worker keeps its own id")
    config = PipelineServer(
        settings=_settings(lake, catalog),
        pipeline=_pipeline_config(**options),
        ingest=_ingest_settings(checked_token, **options),
        dlq_max_bytes=int(dlq_max_mb * 1e6),
        workers=workers,
    )
    err.print(
        f"lakebench serve pipeline: {workers} worker(s), lake {config.settings.lake_url}, on http://{host}:{port}"
    )
    run_pipeline_server(config, host, port, log_level)


@dlq_app.command("list")
def dlq_list(lake: LakeOpt = DEFAULT_LAKE, catalog: CatalogOpt = None, as_json: JsonOpt = False) -> None:
    """Every rejected record with its reasons."""
    from lakebench.pipeline.dlq import DeadLetters
    from lakebench.storage import open_store

    settings = _settings(lake, catalog)
    letters = DeadLetters(open_store(settings.lake, settings.s3))
    entries = [(key, entry) for key, entry in letters.entries()]
    if as_json:
        _emit_json([{"file": key, **json.loads(entry.to_json())} for key, entry in entries])
        return
    with _answer():
        for key, entry in entries:
            problems = "; ".join(f"{p['field']}: {p['message']}" for p in entry.problems)
            sys.stdout.write(f"{key} {entry.source} {entry.unit} {entry.position}: {problems}\n")
    err.print(f"{len(entries):,} dead letters")


@dlq_app.command("replay")
def dlq_replay(
    max_body_bytes: MaxBodyOpt = Limits().max_body_bytes,
    url: Annotated[
        str | None, typer.Option("--url", help="Re-submit to a running pipeline instead of the lake.")
    ] = None,
    token: Annotated[str | None, typer.Option("--token", envvar="LAKEBENCH_TOKEN")] = None,
    lake: LakeOpt = DEFAULT_LAKE,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate dead letters again (e.g. after raising a limit); write those that pass, keep the rest."""
    from lakebench.lake.catalog import Lake
    from lakebench.pipeline.replay import replay_dead_letters

    target = Lake(_settings(lake, catalog))
    outcome = replay_dead_letters(target, Limits(max_body_bytes=max_body_bytes), url=url, token=token)
    if as_json:
        _emit_json(outcome)
    else:
        out.print(f"replayed {outcome['replayed']:,}; still rejected {outcome['still_rejected']:,}")


index_app = typer.Typer(help="The lake-indexed key and full-text indexes.", no_args_is_help=True)
app.add_typer(index_app, name="index")


@index_app.command("build")
def index_build(lake: LakeOpt = DEFAULT_LAKE, catalog: CatalogOpt = None, as_json: JsonOpt = False) -> None:
    """Build the indexes of a lake written without them (before writers wrote them, or by another
    tool), and publish them in one commit. Writers keep them up to date from then on."""
    from lakebench.index.publish import build_indexes
    from lakebench.lake.catalog import Lake

    target = Lake(_settings(lake, catalog))
    target.table(create=False)
    with RichProgress(enabled=not as_json) as progress:

        def tick(done: int, total: int) -> None:
            if done == 1:
                progress.start("indexing data files", total)
            progress.advance()

        report = build_indexes(target, progress=tick)
    if as_json:
        _emit_json(asdict(report))
    else:
        out.print(
            f"indexed {report.files:,} data files ({report.segments_built:,} key segments built, "
            f"{report.documents:,} documents) in snapshot {report.snapshot_id}, {report.seconds:.1f} s"
        )


@app.command()
def compact(
    target_file_mb: Annotated[float, typer.Option("--target-file-mb", min=0.001)] = 128.0,
    keep_last: Annotated[int, typer.Option("--keep-last", min=1, help="Snapshots always kept.")] = 5,
    older_than_days: Annotated[
        float | None, typer.Option("--older-than-days", min=0.0, help="Expire only snapshots older than this.")
    ] = None,
    orphan_grace_minutes: Annotated[float, typer.Option("--orphan-grace-minutes", min=0.0)] = 60.0,
    lake: LakeOpt = DEFAULT_LAKE,
    catalog: CatalogOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Merge small files into key-sorted files, expire old snapshots, delete unreferenced files."""
    from datetime import timedelta

    from lakebench.lake.catalog import Lake
    from lakebench.lake.compact import CompactOptions
    from lakebench.lake.compact import compact as run_compact

    options = CompactOptions(
        target_file_bytes=int(target_file_mb * 1e6),
        keep_last=keep_last,
        older_than=None if older_than_days is None else timedelta(days=older_than_days),
        orphan_grace=timedelta(minutes=orphan_grace_minutes),
    )
    target = Lake(_settings(lake, catalog))
    target.table(create=False)
    report = run_compact(target, options)
    if as_json:
        _emit_json(asdict(report))
    else:
        out.print(
            f"merged {report.merged_files} files into {report.written_files} ({report.files_before} -> "
            f"{report.files_after} live files, {report.duplicates_removed} duplicate events dropped); "
            f"expired {report.expired_snapshots} snapshots; deleted {len(report.deleted_files)} unreferenced files "
            f"and {len(report.deleted_index_objects)} index objects "
            f"in {report.seconds:.1f} s"
        )
        if report.orphans_kept_because:
            err.print(f"note: {report.orphans_kept_because}", markup=False)


@app.command()
def cost(
    events_per_day: Annotated[float, typer.Option("--events-per-day", min=0.0)] = 10_000,
    event_kb: Annotated[float, typer.Option("--event-kb", min=0.0, help="Raw size of an event (KB).")] = 225.0,
    parquet_kb: Annotated[
        float, typer.Option("--parquet-kb", min=0.0, help="Parquet bytes per event, as a lake measures it (KB).")
    ] = 60.0,
    retention_days: Annotated[float, typer.Option("--retention-days", min=0.0)] = 365,
    lookups_per_day: Annotated[float, typer.Option("--lookups-per-day", min=0.0)] = 100_000,
    hit_ratio: Annotated[
        float, typer.Option("--hit-ratio", min=0.0, max=1.0, help="The cache's measured hit ratio (Option 2).")
    ] = 0.8,
    requests_per_lookup: Annotated[
        float, typer.Option("--requests-per-lookup", min=0.0, help="Object-store requests a lookup makes, measured.")
    ] = 1.0,
    bytes_per_lookup: Annotated[
        float, typer.Option("--bytes-per-lookup", min=0.0, help="Bytes a lake SQL lookup reads, measured.")
    ] = 200_000,
    prices: Annotated[
        Path | None, typer.Option("--prices", help="A price table (TOML) instead of the built-in one.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Each option's monthly cost at 1x, 10x and 100x the volume, line by line, from a dated price table."""
    from lakebench.decide.cost import Measured, Workload, cost_table, load_prices

    table = load_prices(prices)
    workload = Workload(
        events_per_day=events_per_day,
        raw_bytes_per_event=event_kb * 1000,
        parquet_bytes_per_event=parquet_kb * 1000,
        retention_days=retention_days,
        lookups_per_day=lookups_per_day,
    )
    measured = Measured(
        requests_per_lookup=requests_per_lookup, bytes_scanned_per_lookup=bytes_per_lookup, cache_hit_ratio=hit_ratio
    )
    costs = cost_table(table, workload, measured)
    if as_json:
        _emit_json({"prices_as_of": table.as_of, "workload": asdict(workload), "measured": asdict(measured), **costs})
        return
    summary = Table(title=f"monthly cost, USD (prices as of {table.as_of})")
    summary.add_column("volume", no_wrap=True)
    for option in (1, 2, 3):
        summary.add_column(f"option {option}", justify="right", no_wrap=True)
    for scale, options in costs.items():
        summary.add_row(scale, *(f"{options[f'option {o}']['total_usd']:,.2f}" for o in (1, 2, 3)))
    out.print(summary)
    for option, breakdown in costs["1x"].items():
        out.print(f"{option} at 1x: ${breakdown['total_usd']:,.2f}", markup=False)
        for line in breakdown["lines"]:
            out.print(f"  {line['item']:<42} {line['usd']:>10,.2f}  {line['how']}", markup=False)


@app.command()
def compare(
    before: Annotated[Path, typer.Argument(help="A result file (results/<date>/<run-id>.json).")],
    after: Annotated[Path, typer.Argument(help="A later result file.")],
    factor: Annotated[
        float, typer.Option("--factor", min=1.0, help="Call a change only beyond this ratio of medians.")
    ] = 1.10,
    alpha: Annotated[
        float, typer.Option("--alpha", min=0.0, max=1.0, help="Significance level of the Mann-Whitney U test.")
    ] = 0.05,
    as_json: JsonOpt = False,
) -> None:
    """Compare two runs benchmark by benchmark: a change is significant (Mann-Whitney U) and beyond --factor."""
    from lakebench.benchmark.compare import as_dicts, compare_results

    rows = compare_results(before, after, alpha=alpha, factor=factor)
    if as_json:
        _emit_json(
            {"before": str(before), "after": str(after), "factor": factor, "alpha": alpha, "rows": as_dicts(rows)}
        )
    else:
        table = Table(title=f"{before.name} -> {after.name} (changed: p < {alpha:g} and ratio beyond {factor:g})")
        for column in ("profile", "benchmark", "engine", "before p50 ms", "after p50 ms", "ratio", "p", "change"):
            table.add_column(
                column,
                no_wrap=True,
                justify="left" if column in ("profile", "benchmark", "engine", "change") else "right",
            )
        for r in rows:
            table.add_row(
                r.profile,
                r.benchmark,
                r.engine,
                f"{r.before_p50_ms:.2f}",
                f"{r.after_p50_ms:.2f}",
                "—" if r.ratio is None else f"{r.ratio:.2f}",
                "—" if r.p_value is None else f"{r.p_value:.3g}",
                r.change,
            )
        _print_wide(table)
    if any(r.change in ("slower", "wrong answers") for r in rows):
        raise typer.Exit(1)


@app.command()
def report(
    result_file: Annotated[Path, typer.Argument(help="A result file (results/<date>/<run-id>.json).")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for the report (default: beside the result).")
    ] = None,
    judge: Annotated[str | None, typer.Option("--judge", help="Judge again at p50|p95|p99|max|mean.")] = None,
    lookup_threshold: Annotated[
        float | None, typer.Option("--lookup-threshold-ms", min=0.0, help="Judge again against this threshold.")
    ] = None,
    search_threshold: Annotated[float | None, typer.Option("--search-threshold-ms", min=0.0)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a run's report (Markdown and one self-contained HTML page); optionally judge its stored samples again."""
    from lakebench.benchmark.job import rejudge
    from lakebench.benchmark.results import load_result
    from lakebench.report.render import write_report

    try:
        result = load_result(result_file)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"{result_file} is not a lakebench result file: {str(exc).splitlines()[0]}") from None
    if not result.options:
        raise ConfigError(f"{result_file} is a {result.schema_} result of one engine; report needs lakebench.run/2")
    again = (judge, lookup_threshold, search_threshold) != (None, None, None)
    if again:
        result = rejudge(
            result, judge=judge, lookup_threshold_ms=lookup_threshold, search_threshold_ms=search_threshold
        )
    if again and out_dir is None:
        out_dir = result_file.parent / f"{result_file.stem}-rejudged"
    files = write_report(result, result_file, out_dir)
    if as_json:
        _emit_json(
            {
                "html": str(files.html),
                "markdown": str(files.markdown),
                "decisions": {p: d.model_dump() for p, d in result.decisions.items()},
            }
        )
        return
    for profile, decision in result.decisions.items():
        out.print(f"[bold]decision on {profile}: {decision.name}[/]")
        out.print(f"because {decision.reason}", markup=False)
    out.print(f"report: {files.html} (and {files.markdown.name})", markup=False)


def _os_error_line(exc: OSError) -> str:
    """'cannot write /x/y: Permission denied' — what failed, on which path, in the OS's words."""
    where = " -> ".join(str(p) for p in (exc.filename, exc.filename2) if p)
    reason = exc.strerror or str(exc)
    return f"{where}: {reason}" if where else reason


def main() -> None:
    """The error boundary: an expected failure is one line on stderr with the README's exit code
    (2 bad input or settings, 75 worth a retry; typer turns Ctrl-C into 130); a traceback means a
    bug in lakebench."""
    from lakebench.core.errors import is_transient

    try:
        app()
    except TransientError as exc:
        err.print(f"error (transient, retry later): {exc}", markup=False)
        sys.exit(75)
    except LakebenchError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(2)
    except OSError as exc:  # a path that cannot be read or written, a store out of reach
        if is_transient(exc):
            err.print(f"error (transient, retry later): {_os_error_line(exc)}", markup=False)
            sys.exit(75)
        err.print(f"error: {_os_error_line(exc)}", markup=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
