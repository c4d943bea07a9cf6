"""Two worker processes behind one port, sharing Redis: a key updated through either worker's
pipeline and flushed reads new from both."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from ulid import ULID

from lakebench.core.config import Settings
from lakebench.core.validate import parse_event
from lakebench.lake.catalog import Lake
from lakebench.lake.writer import LakeWriter
from tests.integration.servers import REPO, free_port

pytestmark = pytest.mark.slow
TOKEN = "workers-test-token"
NS = "en.wikipedia.org"


def call(url: str, body: Any = None, token: bool = False) -> tuple[int, dict[str, str], Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    request.add_header("Connection", "close")  # a new connection each time: the kernel picks a worker
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {TOKEN}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return (
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                json.loads(response.read() or b"null"),
            )
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, json.loads(exc.read() or b"null")


def test_two_workers_sharing_redis_read_new_versions_after_a_flush(tmp_path: Path, redis_url: str) -> None:
    lake_dir = tmp_path / "lake"
    first = parse_event({"entity_ns": NS, "entity_id": "Shared Page", "ts": "2025-10-04T12:00:00Z", "body": "v1"})
    assert not isinstance(first, list)
    with Lake(Settings(lake=str(lake_dir))) as lake:
        LakeWriter(lake).write([first])
    port = free_port()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "lakebench.cli", "serve", "--workers", "2", "--cache", redis_url]
    command += ["--port", str(port), "--lake", str(lake_dir), "--token", TOKEN, "--engine", "lake-sql"]
    command += ["--state-dir", str(tmp_path / "state"), "--roll-interval", "3600", "--idle", "3600"]
    command += ["--results-dir", str(tmp_path / "results")]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/v1/entities/{NS}/{quote('Shared Page')}"
    try:
        deadline = time.monotonic() + 90
        up: set[str] = set()
        while len(up) < 2:  # both workers started (they come up one after the other)
            try:
                status, headers, _ = call(f"{base}/health")
                if status == 200:
                    up.add(headers["x-served-by"])
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        for version in (2, 3, 4):
            for _ in range(10):  # cache the current version in the workers that answer
                status, _, _ = call(url)
                assert status == 200
            body = {"entity_ns": NS, "entity_id": "Shared Page", "ts": f"2025-10-0{version + 3}T12:00:00Z"}
            body |= {"body": f"v{version}", "version": version, "event_id": str(ULID())}
            status, _, answer = call(f"{base}/v1/events", [body], token=True)
            assert status == 200 and answer["accepted"] == 1
            status, _, flushed = call(f"{base}/v1/flush", {}, token=True)
            assert status == 200 and flushed["committed"] == 1, flushed  # whichever worker holds the event
            answered: set[str] = set()
            for _ in range(300):  # until both workers have answered, and at least ten times
                status, headers, event = call(url)
                answered.add(headers["x-served-by"])
                assert (status, event["version"], event["body"]) == (200, version, f"v{version}")
                if len(answered) == 2 and _ >= 10:
                    break
            assert len(answered) == 2, answered  # both processes read the new version
    finally:
        proc.terminate()
        proc.wait(timeout=60)
