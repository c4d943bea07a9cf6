"""Ordinary mistakes, made through the real command line as a user makes them: each one is one line
on stderr — what went wrong and what to do — no traceback, and the README's exit code
(1 nothing found, 2 bad input or settings, 75 worth a retry)."""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from lakebench.core.config import Settings
from lakebench.generate.synthetic import GeneratorSpec, generate
from lakebench.lake.catalog import Lake
from lakebench.lake.writer import LakeWriter

REPO = Path(__file__).resolve().parents[2]


def lakebench(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "lakebench.cli", *args],
        input=stdin,
        capture_output=True,
        timeout=180,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def one_line_error(proc: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def small_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("failures") / "lake"
    with Lake(Settings(lake=str(path))) as lake:
        LakeWriter(lake).write(generate(GeneratorSpec(count=40, avg_size_kb=1, seed=3)))
    return path


def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "plain-file"
    path.write_text("not a folder\n")
    return path


CASES: dict[str, tuple[Callable[[Path], list[str]], int, tuple[str, ...]]] = {
    "results dir under a file": (
        lambda t: ["run", "--count", "5", "--lake", str(t / "l"), "--results-dir", str(a_file(t) / "results")],
        2,
        ("--results-dir", "cannot hold results"),
    ),
    "lake is a file": (
        lambda t: ["generate", "--count", "5", "--avg-size-kb", "1", "--lake", str(a_file(t))],
        2,
        ("is a file, not a folder",),
    ),
    "unwritable --out": (
        lambda t: ["generate", "--count", "5", "--out", str(a_file(t) / "events.ndjson")],
        2,
        ("cannot write", "events.ndjson"),
    ),
    "read on a folder that is not a lake": (
        lambda t: ["lookup", "en.wikipedia.org", "X", "--lake", str(t)],
        2,
        ("no events table", "write some events first"),
    ),
    "read on a path that does not exist": (
        lambda t: ["history", "en.wikipedia.org", "X", "--lake", str(t / "nothing-here")],
        2,
        ("no events table",),
    ),
    "bad typed parameter": (
        lambda t: ["sql", "SELECT 1 FROM events WHERE version = ?", "-p", "int:seven", "--lake", str(t)],
        2,
        ("-p number 1", "not a valid int"),
    ),
    "bad judge": (
        lambda t: ["run", "--count", "5", "--judge", "p42", "--lake", str(t / "l"), "--results-dir", str(t / "r")],
        2,
        ("--judge must be one of",),
    ),
    "empty token": (
        lambda t: ["serve", "pipeline", "--token", "", "--lake", str(t / "l")],
        2,
        ("--token is empty",),
    ),
    "bad log level": (
        lambda t: ["serve", "--no-auth", "--log-level", "loud", "--lake", str(t / "l")],
        2,
        ("--log-level must be one of",),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_mistake_is_one_line_with_its_exit_code(case: str, tmp_path: Path) -> None:
    args, code, fragments = CASES[case]
    one_line_error(lakebench(*args(tmp_path)), code, *fragments)


def test_a_read_creates_nothing_where_there_is_no_lake(tmp_path: Path) -> None:
    one_line_error(lakebench("lookup", "a", "b", "--lake", str(tmp_path / "empty")), 2, "no events table")
    one_line_error(lakebench("search", "word", "--lake", str(tmp_path)), 2, "no events table")
    assert not (tmp_path / "empty").exists()
    assert list(tmp_path.iterdir()) == []


def test_a_write_that_writes_nothing_creates_nothing(tmp_path: Path) -> None:
    proc = lakebench("ingest", "-", "--lake", str(tmp_path / "lake"), stdin=b"")
    assert proc.returncode == 0 and proc.stdout.startswith("0 events written"), proc.stderr
    assert not (tmp_path / "lake" / "catalog.db").exists() and not (tmp_path / "lake" / "events").exists()


def test_a_reader_that_stops_early_ends_the_command_quietly(small_lake: Path) -> None:
    query = "SELECT a.entity_id, a.body FROM events a, events b"  # 1,600 rows: more than a pipe holds
    proc = subprocess.Popen(
        [sys.executable, "-m", "lakebench.cli", "sql", query, "--lake", str(small_lake)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"entity_id\tbody")  # then the reader goes away, as head does
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert "Traceback" not in stderr and "Error" not in stderr, stderr


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for command in (["serve", "pipeline"], ["serve"]):
            proc = lakebench(*command, "--no-auth", "--port", port, "--lake", str(tmp_path / "l"))
            one_line_error(proc, 2, f"127.0.0.1:{port} is in use", "--port")
    assert not (tmp_path / "l").exists()


def test_nothing_found_exits_1(small_lake: Path) -> None:
    proc = lakebench("search", "zzqqxxunfindable", "--lake", str(small_lake))
    assert proc.returncode == 1 and "0 hits" in proc.stderr and proc.stdout == ""
    proc = lakebench("lookup", "en.wikipedia.org", "No such page", "--lake", str(small_lake))
    assert proc.returncode == 1 and "not found" in proc.stderr


def test_a_read_says_what_it_opens_and_its_time_to_first_answer(small_lake: Path) -> None:
    proc = lakebench("lookup", "en.wikipedia.org", "TypeScript", "--lake", str(small_lake))
    assert proc.returncode == 0, proc.stderr
    opening, answer = proc.stderr.splitlines()  # piped: a line while opening, then the answer's line
    assert opening.startswith("opening lake-sql on file://")
    assert "ms on lake-sql; first answer" in answer and "after the process started (opening" in answer


def test_an_unreachable_store_is_worth_a_retry_and_a_missing_bucket_is_not(tmp_path: Path, s3_endpoint: str) -> None:
    credentials = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_MAX_ATTEMPTS": "1"}
    env = {**credentials, "XDG_STATE_HOME": str(tmp_path / "state")}
    # Nothing listens on port 9: the store cannot be reached (a retry later may work).
    unreachable = lakebench(
        "lookup", "a", "b", "--lake", "s3://bucket/lake", env={**env, "LAKEBENCH_S3_ENDPOINT": "http://127.0.0.1:9"}
    )
    one_line_error(unreachable, 75, "transient")
    for command in (["lookup", "a", "b"], ["generate", "--count", "3", "--avg-size-kb", "1"]):
        missing = lakebench(
            *command, "--lake", "s3://no-such-bucket-here/lake", env={**env, "LAKEBENCH_S3_ENDPOINT": s3_endpoint}
        )
        line = one_line_error(missing, 2, "no-such-bucket-here")
        assert "write some events first" not in line


def test_a_bucket_without_credentials_is_a_setting_to_fix_not_a_retry(tmp_path: Path, s3_endpoint: str) -> None:
    nowhere = str(tmp_path / "none")
    env = {"AWS_SHARED_CREDENTIALS_FILE": nowhere, "AWS_CONFIG_FILE": nowhere, "AWS_EC2_METADATA_DISABLED": "true"}
    env |= {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "LAKEBENCH_S3_ENDPOINT": s3_endpoint}
    env |= {"XDG_STATE_HOME": str(tmp_path / "state")}
    proc = lakebench("lookup", "a", "b", "--lake", "s3://some-bucket/lake", env=env)
    one_line_error(proc, 2, "s3://some-bucket/lake", "AWS_ACCESS_KEY_ID")


def test_gzip_and_bzip2_on_stdin_are_detected(tmp_path: Path) -> None:
    lines = b"".join(
        b'{"entity_ns": "a.example", "entity_id": "%d", "ts": "2025-10-04T12:00:00Z", "body": "x"}\n' % i
        for i in range(5)
    )
    import bz2

    for n, packed in enumerate((gzip.compress(lines), bz2.compress(lines), lines)):
        proc = lakebench("ingest", "-", "--lake", str(tmp_path / f"l{n}"), stdin=packed)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("5 events written"), proc.stdout


def test_piped_help_is_not_cut_and_flags_show_no_type(tmp_path: Path) -> None:
    proc = lakebench("serve", "pipeline", "--help")
    assert proc.returncode == 0
    assert "--max-decompressed-mb " in proc.stdout  # whole, not cut to '--max-decompressed…'
    assert "<bool>" not in proc.stdout
    assert "--no-auth" in proc.stdout
