"""The command line, end to end, in process (typer's runner) and once as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from lakebench.benchmark.results import load_result
from lakebench.cli import app

runner = CliRunner()
GOOD = '{"entity_ns": "en.wikipedia.org", "entity_id": "%s", "ts": "2025-10-04T12:00:00Z", "body": "text"}'


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_ingest_reports_each_bad_line_keeps_the_good_ones_and_fails(tmp_path: Path) -> None:
    source = write_lines(
        tmp_path / "mixed.ndjson",
        [
            GOOD % "First",
            '{"entity_ns": "en.wikipedia.org", "entity_id": ',  # malformed JSON
            '{"entity_ns": "en.wikipedia.org", "ts": "2025-10-04T12:00:00Z"}',  # missing entity_id
            '{"entity_ns": "en.wikipedia.org", "entity_id": "X", "ts": "2025-10-04T12:00:00Z", "version": "2"}',
            '{"entity_ns": "en.wikipedia.org", "entity_id": "Big", "ts": "2025-10-04T12:00:00Z", "body": "%s"}'
            % ("x" * 2000),
            "",
            GOOD % "Second",
        ],
    )
    lake = str(tmp_path / "lake")
    result = runner.invoke(app, ["ingest", str(source), "--lake", lake, "--max-body-bytes", "1000"])
    assert result.exit_code == 1
    errors = result.stderr.splitlines()
    assert f"{source}: line 2: (json): malformed JSON" in errors[0]
    assert f"{source}: line 3: entity_id: required field is missing" == errors[1]
    assert f"{source}: line 4: version: must be an integer, got string" == errors[2]
    assert errors[3].startswith(f"{source}: line 5: body: is 2,000 bytes, over the limit of 1,000 bytes")
    assert len(errors) == 4
    assert "2 events written" in result.stdout

    for entity_id in ("First", "Second"):
        found = runner.invoke(app, ["lookup", "en.wikipedia.org", entity_id, "--lake", lake, "--json"])
        assert found.exit_code == 0, found.output
        assert json.loads(found.stdout)["event"]["entity_id"] == entity_id
    missing = runner.invoke(app, ["lookup", "en.wikipedia.org", "Big", "--lake", lake, "--json"])
    assert missing.exit_code == 1 and json.loads(missing.stdout)["found"] is False


def test_ingest_json_report_lists_rejections(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "x.ndjson", [GOOD % "A", "[1, 2]"])
    result = runner.invoke(app, ["ingest", str(source), "--lake", str(tmp_path / "lake"), "--json"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["accepted"] == 1
    assert document["rejected"] == [
        {"unit": "line", "position": 2, "problems": [{"field": "(record)", "message": "must be a JSON object"}]}
    ]


def test_clean_ingest_exits_zero(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "ok.ndjson", [GOOD % "A"])
    assert runner.invoke(app, ["ingest", str(source), "--lake", str(tmp_path / "lake")]).exit_code == 0


def test_convert_writes_sorted_parquet_and_reports_bad_lines(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.ndjson", [GOOD % "Zeta", "not json", GOOD % "Alpha"])
    target = tmp_path / "out" / "events.parquet"
    target.parent.mkdir()
    result = runner.invoke(app, ["convert", str(source), str(target)])
    assert result.exit_code == 1
    assert "line 2: (json): malformed JSON" in result.stderr
    table = pq.read_table(target)
    assert table["entity_id"].to_pylist() == ["Alpha", "Zeta"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["events.parquet"]


def test_generate_to_ndjson_then_ingest(tmp_path: Path) -> None:
    out = tmp_path / "gen.ndjson"
    result = runner.invoke(app, ["generate", "--count", "25", "--avg-size-kb", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 25
    ingest = runner.invoke(app, ["ingest", str(out), "--lake", str(tmp_path / "lake"), "--json"])
    assert ingest.exit_code == 0 and json.loads(ingest.stdout)["accepted"] == 25


def test_run_on_the_lake_as_it_is_reuses_its_dataset_and_stores_what_it_printed(tmp_path: Path) -> None:
    args = ["run", "--count", "60", "--avg-size-kb", "2", "--samples", "10", "--repeat", "3", "--warmup", "3"]
    args += ["--profiles", "direct", "--options", "lake-sql,lake-indexed"]
    args += ["--workloads", "lookup-zipf,lookup-uniform,lookup-latest,lookup-missing"]
    args += ["--lake", str(tmp_path / "lake"), "--results-dir", str(tmp_path / "results"), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert {"environment", "dataset", "benchmarks", "decision", "decisions", "options"} <= document.keys()
    names = ["lookup-zipf", "lookup-uniform", "lookup-latest", "lookup-missing"]
    assert [b["name"] for b in document["benchmarks"]] == names * 2
    for bench in document["benchmarks"]:
        samples = bench["samples_ms"]
        assert len(samples) == 30 and bench["profile"] == "direct"
        p50, p95, p99 = np.percentile(samples, [50, 95, 99])
        assert (bench["p50_ms"], bench["p95_ms"], bench["p99_ms"]) == (p50, p95, p99)
        assert bench["max_ms"] == max(samples)
        assert bench["errors"] == 0 and bench["threshold_ms"] == 500
        assert bench["passed"] == (bench[f"{bench['judged_by']}_ms"] < 500)
        assert bench["requests_per_query"] is None  # a local folder: no endpoint counts its reads
    for option in document["options"]:
        assert "page cache" in option["cold"] and option["first_answer_s"] > option["open_s"] > 0
    assert document["decisions"]["direct"]["name"] in ("lake-sql", "lake-indexed")
    assert document["dataset"]["events"] == 60 and document["dataset"]["reused"] is False

    files = list((tmp_path / "results").glob("*/*.json"))
    assert len(files) == 1 and load_result(files[0]).model_dump(by_alias=True, mode="json") == document
    assert files[0].with_suffix(".html").is_file() and files[0].with_suffix(".md").is_file()

    again = runner.invoke(app, args)  # the second run reuses the dataset and writes a second file
    assert again.exit_code == 0 and json.loads(again.stdout)["dataset"]["reused"] is True
    assert len(list((tmp_path / "results").glob("*/*.json"))) == 2


def test_lookup_on_a_lake_without_table_says_what_to_do(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lakebench.cli", "lookup", "en.wikipedia.org", "X", "--lake", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "no events table" in proc.stderr and "lakebench ingest" in proc.stderr


@pytest.mark.parametrize("args", [["ingest", "/no/such/file"], ["convert", "/no/such/file", "out.parquet"]])
def test_missing_input_is_a_clear_error(tmp_path: Path, args: list[str]) -> None:
    result = runner.invoke(app, [*args] + (["--lake", str(tmp_path / "l")] if args[0] == "ingest" else []))
    assert result.exit_code != 0
    assert "does not exist" in str(result.exception)


def test_serve_refuses_to_run_without_a_token(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "lakebench.cli", "serve", "pipeline", "--lake", str(tmp_path / "lake")]
    env = {k: v for k, v in __import__("os").environ.items() if k != "LAKEBENCH_TOKEN"}
    proc = subprocess.run(base, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2 and "needs a token" in proc.stderr
    proc = subprocess.run(
        [*base, "--no-auth", "--host", "0.0.0.0"], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 2 and "--no-auth is for local use" in proc.stderr


def test_rest_catalog_is_selected_by_url(tmp_path: Path) -> None:
    from lakebench.core.config import Settings
    from lakebench.core.errors import ConfigError
    from lakebench.lake.catalog import Lake

    # Nothing listens there: the error names the REST catalog it tried, proving the selection.
    lake = Lake(Settings(lake=str(tmp_path / "lake"), catalog="http://127.0.0.1:9/catalog", catalog_warehouse="wh"))
    with pytest.raises(ConfigError, match=r"Iceberg REST catalog at http://127\.0\.0\.1:9/catalog"):
        lake.table()


def test_history_search_and_sql_commands(tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    source = write_lines(
        tmp_path / "e.ndjson",
        [
            GOOD % "Quokka",
            '{"entity_ns": "en.wikipedia.org", "entity_id": "Quokka", "ts": "2025-10-05T12:00:00Z", '
            '"body": "marsupial quokka facts", "version": 2}',
        ],
    )
    assert runner.invoke(app, ["ingest", str(source), "--lake", lake]).exit_code == 0
    history = runner.invoke(app, ["history", "en.wikipedia.org", "Quokka", "--lake", lake, "--json"])
    assert [e["version"] for e in json.loads(history.stdout)["events"]] == [1, 2]
    for engine in ("lake-indexed", "lake-sql", "clickhouse"):
        found = runner.invoke(app, ["search", "Marsupial", "--lake", lake, "--engine", engine, "--json"])
        assert found.exit_code == 0, found.output
        assert [h["entity_id"] for h in json.loads(found.stdout)["hits"]] == ["Quokka"]
    rows = runner.invoke(
        app,
        [
            "sql",
            "SELECT version FROM events WHERE entity_id = ? ORDER BY version",
            "-p",
            "Quokka",
            "--lake",
            lake,
            "--json",
        ],
    )
    assert json.loads(rows.stdout)["rows"] == [[1], [2]]
    refused = runner.invoke(app, ["sql", "DELETE FROM events", "--lake", lake])
    assert refused.exit_code != 0 and "only SELECT" in str(refused.exception)


@pytest.mark.parametrize("engine", ["lake-sql", "lake-indexed", "clickhouse"])
def test_sql_returns_timestamps_and_leaves_no_temporary_folder(tmp_path: Path, engine: str) -> None:
    lake = str(tmp_path / "lake")
    source = write_lines(tmp_path / "e.ndjson", [GOOD % "C:\\\\temp", GOOD % "C:\\ttemp"])
    assert runner.invoke(app, ["ingest", str(source), "--lake", lake]).exit_code == 0
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    query = "SELECT ts, entity_id FROM events WHERE entity_id = ?"
    command = [sys.executable, "-m", "lakebench.cli", "sql", query, "-p", "C:\\temp", "--engine", engine]
    proc = subprocess.run(
        [*command, "--lake", lake, "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**__import__("os").environ, "TMPDIR": str(scratch)},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rows"] == [["2025-10-04T12:00:00Z", "C:\\temp"]]  # the backslash is kept
    assert list(scratch.iterdir()) == []  # the engine removed what it made


@pytest.mark.parametrize("engine", ["lake-sql", "clickhouse"])
def test_sql_parameters_are_text_unless_typed_and_piped_rows_are_tab_separated(tmp_path: Path, engine: str) -> None:
    lake = str(tmp_path / "lake")
    source = write_lines(
        tmp_path / "e.ndjson",
        [GOOD % "2024", GOOD % "Tab\\there", GOOD.replace('"text"', '"text", "version": 7') % "Seven"],
    )
    assert runner.invoke(app, ["ingest", str(source), "--lake", lake]).exit_code == 0

    def sql(query: str, *params: str) -> Any:
        args = ["sql", query, "--engine", engine, "--lake", lake, *[a for p in params for a in ("-p", p)]]
        return runner.invoke(app, args)

    # '2024' is an entity id (text), not the integer the query would compare with every id.
    found = sql("SELECT entity_id FROM events WHERE entity_id = ?", "2024")
    assert found.exit_code == 0, found.output
    assert found.stdout.splitlines() == ["entity_id", "2024"]
    typed = sql("SELECT entity_id FROM events WHERE version = ? AND entity_id <> ?", "int:7", '"2024"')
    assert typed.stdout.splitlines() == ["entity_id", "Seven"]
    tab = sql("SELECT entity_id, version FROM events WHERE entity_id LIKE ?", "Tab%")
    assert tab.stdout.splitlines() == ["entity_id\tversion", "Tab\\there\t1"]  # one row per line, tabs escaped


def test_parquet_files_follow_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0o002)
    try:
        source = write_lines(tmp_path / "e.ndjson", [GOOD % "A", GOOD % "B"])
        assert runner.invoke(app, ["ingest", str(source), "--lake", str(tmp_path / "lake")]).exit_code == 0
    finally:
        os.umask(old)
    files = list((tmp_path / "lake" / "events" / "data").rglob("*.parquet"))
    assert files and all(f.stat().st_mode & 0o777 == 0o664 for f in files)
