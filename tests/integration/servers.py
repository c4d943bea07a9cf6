"""Run real ``lakebench serve pipeline`` processes for tests that kill, restart or multiply them."""

from __future__ import annotations

import json
import os
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


def start_server(
    lake: Path,
    state: Path,
    *,
    env: dict[str, str] | None = None,
    extra: list[str] | None = None,
    crash_at: str | None = None,
) -> Server:
    """A real ``lakebench serve pipeline`` process; ``crash_at`` (files_written | committed) makes it
    SIGKILL itself at that step of its first flush (tests/integration/crashing_server.py)."""
    port = free_port()
    log = state.parent / f"{state.name}-{port}.log"
    state.mkdir(parents=True, exist_ok=True)
    program = ["-m", "tests.integration.crashing_server", crash_at] if crash_at else ["-m", "lakebench.cli"]
    command = [sys.executable, *program, "serve", "pipeline", "--no-auth", "--port", str(port)]
    command += ["--lake", str(lake), "--state-dir", str(state), "--roll-interval", "3600", "--idle", "3600"]
    command += extra or []
    with log.open("ab") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=REPO
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(server.url + "/healthz", timeout=1).close()
            return server
        except (urllib.error.URLError, ConnectionError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"pipeline server did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.1)
