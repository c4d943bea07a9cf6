"""Worker processes of one server: each has a pipeline of its own, and a flush on one flushes all.

With ``--workers N`` uvicorn runs N processes behind one port. Each claims a slot of the state
folder (``<state>/worker-<k>``: its own write-ahead log, writer id and dedupe window, locked while
it lives) and commits to the one table. ``POST /v1/flush`` lands on one of them; it flushes its
own pipeline and asks every other slot's process, over a Unix socket beside that slot, to flush
too — on one machine, without Redis. A slot whose process is down (restarting after a crash) is
skipped: what its log holds is replayed and committed when it is back.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import socket
import threading
from dataclasses import replace
from pathlib import Path
from typing import Final

import orjson

from lakebench.core.errors import ConfigError, TransientError
from lakebench.lake.catalog import Lake
from lakebench.pipeline.core import Pipeline, PipelineConfig, PipelineStopped
from lakebench.pipeline.state import StateInUse, default_state_dir, log_holds_events

log = logging.getLogger(__name__)
SOCKET: Final = "flush.sock"
FLUSH_TIMEOUT_S: Final = 300.0


def claim_pipeline(lake: Lake, config: PipelineConfig, workers: int) -> Pipeline:
    """This process's pipeline: with several workers, the first free slot of the state folder."""
    if workers == 1:
        return Pipeline(lake, config)
    base = config.state_dir or default_state_dir(lake)
    for slot in range(workers):
        try:
            slot_config = replace(
                config, state_dir=base / f"worker-{slot}", writer_id=None, commit_lock=base / "commit.lock"
            )
            return Pipeline(lake, slot_config)
        except StateInUse:
            continue
    raise ConfigError(f"all {workers} pipeline slots under {base} are in use by other processes")


def check_slots(lake: Lake, config: PipelineConfig, workers: int) -> None:
    """Refuse a worker count that would leave a log holding acknowledged events unread: the base
    folder's (one worker) or a slot's (several) that this many workers would not claim."""
    base = config.state_dir or default_state_dir(lake)
    slots = [base / f"worker-{k}" for k in range(workers)] if workers > 1 else [base]
    others = [base, *sorted(base.glob("worker-*"))]
    stray = [folder for folder in others if folder not in slots and log_holds_events(folder)]
    if stray:
        raise ConfigError(
            f"the write-ahead log in {stray[0]} holds acknowledged events that are not committed: start with the "
            f"number of workers that wrote it ({'1' if stray[0] == base else 'more than ' + str(workers)}) "
            "until they are committed, then change --workers"
        )


def _address(slot_dir: Path) -> str:
    """The slot's socket: a file beside its log, or (a path too long for a socket) a Linux abstract
    name derived from it."""
    path = str(slot_dir.resolve() / SOCKET)
    if len(path.encode()) < 100:
        return path
    return "\0lakebench-" + hashlib.sha1(path.encode()).hexdigest()[:24]


class SiblingFlush:
    """Answers the other workers' flush requests, and asks them to flush (``flush_all``)."""

    def __init__(self, pipeline: Pipeline, workers: int) -> None:
        self._pipeline = pipeline
        base = pipeline.state_dir.parent
        self._me = _address(pipeline.state_dir)
        self._others = [a for a in (_address(base / f"worker-{k}") for k in range(workers)) if a != self._me]
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self._me.startswith("\0"):
            Path(self._me).unlink(missing_ok=True)  # a crashed process's: the slot's lock is ours
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(self._me)
        server.listen(16)
        self._server = server
        self._thread = threading.Thread(target=self._serve, name="lakebench-sibling-flush", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        assert self._server is not None
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(10)
                if conn.makefile("rb").readline().strip() != b"flush":
                    return
                reply: dict[str, object] = {"committed": self._pipeline.flush()}
            except PipelineStopped as exc:
                reply = {"stopped": str(exc)}
            except Exception as exc:
                log.exception("a sibling's flush request failed")
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            conn.sendall(orjson.dumps(reply) + b"\n")

    def flush_all(self) -> int:
        """Flush this worker's pipeline, then every other worker's that is up; events committed."""
        committed = self._pipeline.flush()
        for address in self._others:
            try:
                committed += self._ask(address)
            except OSError as exc:  # a worker going away, or too slow: a retry may find it back
                raise TransientError(f"a worker did not answer the flush: {exc}") from exc
        return committed

    def _ask(self, address: str) -> int:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(FLUSH_TIMEOUT_S)
            try:
                conn.connect(address)
            except (FileNotFoundError, ConnectionRefusedError):
                return 0  # that worker is not up: its log is replayed when it is
            conn.sendall(b"flush\n")
            line = conn.makefile("rb").readline()
        if not line:
            raise TransientError("a worker went away during the flush; retry")
        reply = orjson.loads(line)
        if "stopped" in reply:
            raise PipelineStopped(f"another worker's pipeline stopped: {reply['stopped']}")
        if "error" in reply:
            raise TransientError(f"another worker's flush failed: {reply['error']}")
        return int(reply["committed"])

    def close(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept()
            self._server.close()
            if not self._me.startswith("\0"):
                Path(self._me).unlink(missing_ok=True)
        if self._thread is not None:
            self._thread.join(timeout=5)
