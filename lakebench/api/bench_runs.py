"""Benchmark runs the db service starts: one at a time, each in a process of its own.

``python -m lakebench.api.bench_runs`` is that process. It reads its task (the lake settings and
the run's ``RunOptions``, pickled, base64, one line) on stdin, runs ``run_job`` and writes the
run's HTML report beside its result file (as ``lakebench run`` does). It tells the service what it
is doing as JSON lines on stdout: ``{"start": step, "total": n}``, ``{"advance": n}``,
``{"done": true}``, and last ``{"result": path, "report": path}`` or ``{"error": message}``. Its
log goes to the service's stderr.

A process rather than a thread: the run's generation and oracle do not hold the service's GIL, and
the run can be stopped whole. It leads a process group of its own (the S3-protocol server and the
option workers it starts belong to it); SIGTERM makes it clean up and leave, and when it does not
in time the group is killed. One run at a time per results folder, across the service's worker
processes too: a run holds ``<results>/.benchmark.lock`` (flock) while it goes.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Literal

import orjson
from ulid import ULID

from lakebench.core.config import Settings
from lakebench.core.errors import LakebenchError
from lakebench.core.process import LockHeld, release_pid_lock, take_pid_lock

if TYPE_CHECKING:
    from lakebench.benchmark.job import RunOptions
    from lakebench.benchmark.results import Decision

log = logging.getLogger(__name__)
LOCK: Final = ".benchmark.lock"
STOP_GRACE_S: Final = 10.0  # how long a stopped run may take to clean up before its group is killed
ADVANCE_EVERY_S: Final = 0.25  # the child reports progress at most this often

RunStatus = Literal["running", "done", "failed"]


class RunInProgress(Exception):
    """A run is going on already; ``run_id`` is None when another process of the service runs it."""

    def __init__(self, message: str, run_id: str | None) -> None:
        super().__init__(message)
        self.run_id = run_id


@dataclass(slots=True)
class BenchRun:
    run_id: str
    kind: str
    params: dict[str, Any]
    started_at: datetime
    status: RunStatus = "running"
    step: str = "starting"
    done: int = 0
    total: int | None = None
    finished_at: datetime | None = None
    result_path: Path | None = None
    report_path: Path | None = None
    decisions: dict[str, dict[str, Any]] | None = None
    error: str | None = None

    def document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "run_id": self.run_id,
            "type": self.kind,
            "status": self.status,
            "step": self.step,
            "done": self.done,
            "total": self.total,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at) if self.finished_at else None,
            "params": self.params,
        }
        if self.result_path is not None:
            document["result_path"] = str(self.result_path)
        if self.decisions is not None:
            document["decisions"] = self.decisions
        if self.report_path is not None:
            document["report_url"] = f"/report/{self.run_id}"
        if self.error is not None:
            document["error"] = self.error
        return document


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def decisions_out(decisions: Mapping[str, Decision]) -> dict[str, dict[str, Any]]:
    """Per profile, the option decided on, by cost-model line and name, and why."""
    return {p: {"option": d.option, "name": d.name, "reason": d.reason} for p, d in decisions.items()}


class RunProgress:
    """The benchmark's ``Progress`` protocol, recorded into a run: the current step, done of total."""

    def __init__(self, run: BenchRun, lock: threading.Lock) -> None:
        self._run, self._lock = run, lock

    def start(self, description: str, total: int | None) -> None:
        with self._lock:
            self._run.step, self._run.done, self._run.total = description, 0, total

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self._run.done += n

    def done(self) -> None:
        with self._lock:
            if self._run.total is not None:
                self._run.done = max(self._run.done, self._run.total)


class LineProgress:
    """The ``Progress`` protocol in the run's process: JSON lines to the service, advances batched."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._pending = 0
        self._said = time.monotonic()

    def say(self, message: dict[str, Any]) -> None:
        self._out.write(orjson.dumps(message).decode() + "\n")
        self._out.flush()

    def _flush(self) -> None:
        if self._pending:
            self.say({"advance": self._pending})
            self._pending = 0
        self._said = time.monotonic()

    def start(self, description: str, total: int | None) -> None:
        self._flush()
        self.say({"start": description, "total": total})

    def advance(self, n: int = 1) -> None:
        self._pending += n
        if time.monotonic() - self._said >= ADVANCE_EVERY_S:
            self._flush()

    def done(self) -> None:
        self._flush()
        self.say({"done": True})


@dataclass(slots=True)
class _Running:
    run: BenchRun
    proc: subprocess.Popen[str]
    lock: IO[str]
    watcher: threading.Thread | None = None
    stopping: bool = False


@dataclass
class BenchRuns:
    """The service's runs: at most one going on; the last ``keep`` remembered (in this process)."""

    settings: Settings
    results_dir: Path
    keep: int = 20
    _runs: OrderedDict[str, BenchRun] = field(default_factory=OrderedDict)
    _running: _Running | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, kind: str, options: RunOptions, params: dict[str, Any]) -> BenchRun:
        """Start a run, or raise ``RunInProgress``; ``OSError`` when the results folder cannot be used."""
        with self._lock:
            if self._running is not None:
                current = self._running.run
                raise RunInProgress(f"benchmark run {current.run_id} is running ({current.step})", current.run_id)
            self.results_dir.mkdir(parents=True, exist_ok=True)
            lock = _take_lock(self.results_dir / LOCK)
            run = BenchRun(str(ULID()), kind, params, datetime.now(UTC))
            options = dataclasses.replace(options, run_id=run.run_id)  # the result file takes the run's id
            proc: subprocess.Popen[str] | None = None
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "lakebench.api.bench_runs"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    start_new_session=True,  # its own process group: stopped whole
                )
                assert proc.stdin is not None
                proc.stdin.write(base64.b64encode(pickle.dumps((self.settings, options))).decode() + "\n")
                proc.stdin.close()
            except BaseException:
                if proc is not None:
                    proc.kill()
                    proc.wait()
                _release(lock)
                raise
            running = self._running = _Running(run, proc, lock)
            running.watcher = threading.Thread(
                target=self._watch, args=(running,), name=f"lakebench-run-{run.run_id}", daemon=True
            )
            self._runs[run.run_id] = run
            while len(self._runs) > self.keep:
                self._runs.popitem(last=False)
            running.watcher.start()
            log.info("benchmark run %s started (%s, pid %d)", run.run_id, kind, proc.pid)
            return run

    def get(self, run_id: str) -> dict[str, Any] | None:
        with self._lock:
            run = self._runs.get(run_id)
            return run.document() if run is not None else None

    def report_of(self, run_id: str) -> tuple[RunStatus, Path | None] | None:
        """A remembered run's status and report file; None when this process does not know the run."""
        with self._lock:
            run = self._runs.get(run_id)
            return (run.status, run.report_path) if run is not None else None

    def _watch(self, running: _Running) -> None:
        run = running.run
        assert running.proc.stdout is not None
        progress = RunProgress(run, self._lock)
        outcome: dict[str, Any] = {}
        try:
            for line in running.proc.stdout:
                try:
                    message = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if "start" in message:
                    progress.start(str(message["start"]), message.get("total"))
                elif "advance" in message:
                    progress.advance(int(message["advance"]))
                elif "done" in message:
                    progress.done()
                else:
                    outcome = message
            code = running.proc.wait()
            self._finish(run, outcome, code, running.stopping)
        except Exception as exc:  # the run must end in a status, whatever happened here
            log.exception("watching benchmark run %s failed", run.run_id)
            with self._lock:
                run.status, run.error = "failed", f"the service lost track of the run: {exc}"
            if running.proc.poll() is None:  # a run nobody watches must not go on beside the next one
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(running.proc.pid, signal.SIGKILL)
                running.proc.wait()
        finally:
            running.proc.stdout.close()
            with self._lock:
                run.finished_at = datetime.now(UTC)
                self._running = None
            _release(running.lock)

    def _finish(self, run: BenchRun, outcome: dict[str, Any], code: int, stopped: bool) -> None:
        if "result" in outcome:
            from lakebench.benchmark.results import load_result

            result_path, report = Path(outcome["result"]), Path(outcome["report"])
            decisions = load_result(result_path).decisions
            with self._lock:
                run.result_path, run.report_path, run.status = result_path, report, "done"
                run.step, run.done, run.total = "finished", 0, None
                run.decisions = decisions_out(decisions)
            log.info("benchmark run %s done: %s", run.run_id, result_path)
            return
        if stopped:
            error = "stopped: the service shut down during the run"
        elif "error" in outcome:
            error = str(outcome["error"])
        else:
            error = f"the benchmark process exited with code {code} before it finished; see the service's log"
        with self._lock:
            run.status, run.error = "failed", error
        log.warning("benchmark run %s failed: %s", run.run_id, error)

    def close(self, timeout_s: float = STOP_GRACE_S) -> None:
        """Stop a run that is going on (the service is shutting down) and wait for it to end."""
        with self._lock:
            running = self._running
            if running is None:
                return
            running.stopping = True
        proc = running.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # it cleans up: the S3 server, the workers, temporary folders
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("benchmark run %s did not stop in %.0f s; killing it", running.run.run_id, timeout_s)
                os.killpg(proc.pid, signal.SIGKILL)  # not reaped yet: the group id is still its own
                proc.wait()
        with contextlib.suppress(ProcessLookupError):  # anything of its group that outlived it
            os.killpg(proc.pid, signal.SIGKILL)
        if running.watcher is not None:
            running.watcher.join(timeout_s)


def _take_lock(path: Path) -> IO[str]:
    try:
        return take_pid_lock(path)
    except LockHeld as held:
        raise RunInProgress(
            f"another process of this service (PID {held.holder}) is running a benchmark into {path.parent}", None
        ) from None


_release = release_pid_lock


# -- the run's own process --------------------------------------------------------------------------


def _stop(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: every ``with`` of the run cleans up


def main() -> int:
    from lakebench.benchmark.job import run_job
    from lakebench.report.render import write_report

    signal.signal(signal.SIGTERM, _stop)
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # anything else printed goes to the log, not into the messages
    progress = LineProgress(out)
    settings, options = pickle.loads(base64.b64decode(sys.stdin.readline()))
    try:
        result, path = run_job(settings, options, progress)
        progress.start("writing the report", None)
        report = write_report(result, path)
        progress.done()
    except Exception as exc:
        log.exception("the benchmark run failed")
        message = str(exc) if isinstance(exc, LakebenchError) else f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(OSError):  # the service may be gone: nobody to tell
            progress.say({"error": message[:2000]})
        return 1
    progress.say({"result": str(path), "report": str(report.html)})
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="lakebench run: %(levelname)s %(message)s")
    raise SystemExit(main())
