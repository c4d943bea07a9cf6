"""``serve pipeline --workers N``: how the port is shared, and what starting several workers at once does."""

from __future__ import annotations

import http.client
import json
import multiprocessing
import subprocess
import sys
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from lakebench.core.config import Settings
from lakebench.lake.catalog import Lake
from tests.integration.servers import REPO, start_server

pytestmark = pytest.mark.slow


def test_keep_alive_connections_are_spread_over_the_workers(tmp_path: Path) -> None:
    """Connections opened together (a client's pool) land on every worker, and stay there. With one
    listening socket shared by all workers, the first worker to wake took most of such a burst."""
    server = start_server(tmp_path / "lake", tmp_path / "state", workers=2)
    try:
        where = urlsplit(server.url)
        connections = [http.client.HTTPConnection(where.hostname or "", where.port, timeout=30) for _ in range(48)]
        for connection in connections:
            connection.connect()  # all open before any asks: a burst, as a client pool at start
        writers: list[str] = []
        for connection in connections:
            for _ in range(2):  # keep-alive: the same worker answers every request of a connection
                connection.request("GET", "/v1/pipeline/stats")
                writers.append(json.loads(connection.getresponse().read())["writer_id"])
            assert writers[-1] == writers[-2]
            connection.close()
        per_worker = Counter(writers[::2])
        assert len(per_worker) == 2, per_worker
        assert min(per_worker.values()) >= 10, per_worker  # the kernel's hash: 24 +- 3.5 each
        assert "Traceback" not in server.log.read_text()  # no worker failed on the way (a fresh lake)
    finally:
        server.stop()


def test_a_second_server_on_the_port_of_a_running_one_is_refused(tmp_path: Path) -> None:
    """Workers listen with SO_REUSEPORT; a second server must not join them on the same port."""
    server = start_server(tmp_path / "lake", tmp_path / "state", workers=2)
    try:
        port = str(urlsplit(server.url).port)
        command = [sys.executable, "-m", "lakebench.cli", "serve", "pipeline", "--no-auth", "--port", port]
        command += ["--lake", str(tmp_path / "other-lake"), "--workers", "2"]
        second = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert second.returncode != 0
        assert f"127.0.0.1:{port} is in use by another process" in second.stdout + second.stderr
    finally:
        server.stop()


def _open_table(lake: str, ready: multiprocessing.synchronize.Barrier) -> None:
    with Lake(Settings(lake=lake)) as opened:
        ready.wait(30)  # every process at the same point: the catalog and the table made at once
        opened.table()


def test_processes_creating_the_table_at_once_all_open_it(tmp_path: Path) -> None:
    """A server's workers, or several writers, starting together on a new lake: each finds or makes
    the catalog and the table; none fails on another's half-made catalog."""
    spawn = multiprocessing.get_context("spawn")
    for attempt in range(2):
        lake = str(tmp_path / f"lake-{attempt}")
        ready = spawn.Barrier(4)
        processes = [spawn.Process(target=_open_table, args=(lake, ready)) for _ in range(4)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(120)
        assert [p.exitcode for p in processes] == [0] * 4
        with Lake(Settings(lake=lake)) as opened:
            table = opened.table(create=False)
            assert table.scan().to_arrow().num_rows == 0
            made = [path for path in (tmp_path / f"lake-{attempt}" / "events" / "metadata").glob("*.metadata.json")]
            assert len(made) == 1  # one table made, not one per process (the losers' files left behind)
            assert opened.foreign_tables(table) == []
