"""What a running server tells its operator: one line per request, one per commit, errors with the
request id they answered — as text by default, as one JSON object per line with ``--log-json``."""

from __future__ import annotations

import io
import json
import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from lakebench.core import logs
from tests.integration.servers import start_server

EVENT = {"entity_ns": "a.example", "entity_id": "x", "ts": "2025-10-04T12:00:00Z", "body": "hello"}


def json_lines(path: Path) -> list[dict[str, Any]]:
    found = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


@pytest.mark.slow
def test_the_server_logs_requests_commits_and_errors_as_json(tmp_path: Path) -> None:
    server = start_server(tmp_path / "lake", tmp_path / "state", extra=["--log-json"])
    try:
        answer = server.post_events([EVENT, {**EVENT, "entity_id": "y"}])
        assert [e["status"] for e in answer["events"]] == ["accepted", "accepted"]
        server.post("/v1/flush")
        with pytest.raises(urllib.error.HTTPError) as bad:
            server.post("/v1/events", b"[{", content_type="application/json")
        assert bad.value.code == 400
        rid = bad.value.headers["X-Request-ID"]
        bad.value.close()  # the error answer holds its connection
    finally:
        server.stop()
    lines = json_lines(server.log)
    assert lines, server.log.read_text()
    requests = [line for line in lines if line["logger"] == "lakebench.access"]
    statuses = [(r["message"].split()[1], r["status"]) for r in requests]
    assert ("/v1/events", 200) in statuses and ("/v1/flush", 200) in statuses and ("/v1/events", 400) in statuses
    for line in requests:
        assert {"ts", "level", "status", "bytes", "ms", "request_id"} <= line.keys()
        assert line["bytes"] > 0 and line["ms"] >= 0
    assert any(r["request_id"] == rid and r["status"] == 400 for r in requests)
    commits = [line for line in lines if line["logger"] == "lakebench.pipeline.core" and line["message"] == "commit"]
    assert len(commits) == 1
    assert commits[0]["events"] == 2 and commits[0]["files"] >= 1 and commits[0]["bytes"] > 0
    assert isinstance(commits[0]["snapshot_id"], int) and commits[0]["ms"] > 0


@pytest.mark.slow
def test_log_level_warning_keeps_request_lines_out(tmp_path: Path) -> None:
    server = start_server(tmp_path / "lake", tmp_path / "state", extra=["--log-level", "warning"])
    try:
        server.post_events([EVENT])
        server.post("/v1/flush")
    finally:
        server.stop()
    text = server.log.read_text()
    assert "lakebench.access" not in text and " commit " not in text


def test_text_lines_carry_their_fields_and_errors_their_traceback() -> None:
    stream = io.StringIO()
    logs.configure("info", stream=stream)
    try:
        log = logging.getLogger("lakebench.test")
        log.info("commit", extra=logs.fields(events=3, path="a b", request_id="01ABC"))
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed", extra=logs.fields(request_id="01XYZ"))
        logging.getLogger("lakebench.test").debug("hidden")
    finally:  # leave this test process's logging as pytest set it up
        logging.getLogger().handlers.clear()
        logging.getLogger("lakebench").setLevel(logging.NOTSET)
        logging.getLogger("uvicorn.access").disabled = False
    first, second, *rest = stream.getvalue().splitlines()
    assert first.endswith('INFO lakebench.test commit events=3 path="a b" request_id=01ABC')
    assert "ERROR lakebench.test failed request_id=01XYZ" in second
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ValueError: boom"
    assert "hidden" not in stream.getvalue()
