"""Run real ``lakebench serve pipeline`` processes for tests that kill, restart or multiply them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakebench.core.process import stop_process
from lakebench.storage.embedded import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def post(
        self, path: str, body: bytes = b"", content_type: str = "application/x-ndjson", timeout: float = 60
    ) -> Any:
        request = urllib.request.Request(
            self.url + path, data=body, method="POST", headers={"Content-Type": content_type}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def post_events(self, events: list[dict[str, Any]]) -> Any:
        return self.post("/v1/events", "\n".join(json.dumps(e) for e in events).encode())

    def stop(self) -> None:
        stop_process(self.proc)

    def crash(self) -> None:
        """SIGKILL every process of the server at once (its workers too): a machine going down."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def start_server(
    lake: Path,
    state: Path,
    *,
    env: dict[str, str] | None = None,
    extra: list[str] | None = None,
    crash_at: str | None = None,
    workers: int = 1,
) -> Server:
    """A real ``lakebench serve pipeline`` process (``workers`` > 1: that many worker processes
    behind its port, in a process group of their own); ``crash_at`` (files_written | committed)
    makes each worker SIGKILL itself at that step of its first flush (crashing_server.py, loaded
    into every process of the server, its workers too, as the interpreter's ``sitecustomize``)."""
    port = free_port()
    log = state.parent / f"{state.name}-{port}.log"
    state.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "lakebench.cli", "serve", "pipeline", "--no-auth", "--port", str(port)]
    command += ["--lake", str(lake), "--state-dir", str(state), "--roll-interval", "3600", "--idle", "3600"]
    if workers > 1:
        command += ["--workers", str(workers)]
    command += extra or []
    environment = {**os.environ, **(env or {})}
    if crash_at:
        hook = state.parent / f"{state.name}-crash-{crash_at}"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text(
            f"from tests.integration.crashing_server import attach_kill\n\nattach_kill({crash_at!r})\n"
        )
        environment["PYTHONPATH"] = os.pathsep.join([str(hook), str(REPO), environment.get("PYTHONPATH", "")])
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=environment, cwd=REPO, start_new_session=True
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 60
    writers: set[str] = set()  # with several workers: until each has answered (each its own writer)
    while True:
        try:
            with urllib.request.urlopen(server.url + "/v1/pipeline/stats", timeout=1) as answer:
                writers.add(json.loads(answer.read())["writer_id"])
            if len(writers) >= workers:
                return server
            time.sleep(0.02)
        except (urllib.error.URLError, ConnectionError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"pipeline server did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.1)
