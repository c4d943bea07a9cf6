"""Users' SQL on DuckDB, in a process of its own whose memory the operating system bounds.

DuckDB's ``memory_limit`` covers what its buffer manager tracks, not every string it builds: one
``replace(body, ' ', body)`` over a large page asks for gigabytes that no setting refuses. So user
queries run in a worker process whose data segment is capped (``RLIMIT_DATA``): an allocation past
the cap fails inside DuckDB, which answers with an out-of-memory error and keeps serving. The
worker also stops a query at the time limit (``interrupt``); if it does not answer shortly after,
the parent kills it and starts a fresh one for the next query.

The worker is a ``python -m lakebench.engines.sqlworker`` process (not a multiprocessing child,
which would re-import the parent's ``__main__``), started on the first query and living as long as
its engine; requests and answers are pickled over two pipes.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from lakebench.core.config import Settings
from lakebench.engines.base import QueryError, SqlLimits, SqlResult, python_value

# Python, DuckDB and its extensions need this much on top of the query's own memory.
BASE_BYTES = 768 << 20
GRACE_S = 5.0  # past the time limit, a worker that has not answered is killed
STARTUP_S = 60.0


@dataclass(frozen=True, slots=True)
class _Request:
    location: str  # the table's metadata file, from the catalog
    text: str  # checked and rendered by the sandbox
    params: list[Any]


def _serve(conn: Any, settings: Settings, limits: SqlLimits, allowed: str | None) -> None:  # runs in the worker
    import resource

    import duckdb

    from lakebench.engines.duck import connect, sql_literal

    cap = limits.memory_bytes + BASE_BYTES
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    con = connect(settings, allowed=allowed, threads=limits.threads, memory_bytes=limits.memory_bytes)
    conn.send(("ready", None))  # start-up is not counted against the first query's time limit
    location: str | None = None
    while True:
        try:
            request: _Request | None = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        try:
            if request.location != location:
                # The metadata location comes from the catalog, never from a user.
                view = f"CREATE OR REPLACE VIEW events AS SELECT * FROM iceberg_scan({sql_literal(request.location)})"  # noqa: S608
                con.execute(view)
                location = request.location
            timer = threading.Timer(limits.timeout_s, con.interrupt)
            timer.start()
            try:
                cursor = con.execute(request.text, request.params)
                rows = cursor.fetchmany(limits.max_rows + 1)
                columns = [d[0] for d in cursor.description or []]
            finally:
                timer.cancel()
            table = [tuple(python_value(v) for v in row) for row in rows[: limits.max_rows]]
            conn.send(("ok", SqlResult(columns, table, truncated=len(rows) > limits.max_rows)))
        except duckdb.InterruptException:
            conn.send(("error", f"query ran past the {limits.timeout_s:g} s limit and was stopped"))
        except (duckdb.OutOfMemoryException, MemoryError):
            conn.send(("error", f"query needed more than its {limits.memory_bytes / 2**20:,.0f} MiB memory limit"))
        except duckdb.Error as exc:
            conn.send(("error", f"query failed: {str(exc)[:500]}"))
        except Exception as exc:  # a value that does not pickle, a bug: answer, and keep serving
            conn.send(("error", f"query failed: {type(exc).__name__}: {str(exc)[:300]}"))


class SqlWorker:
    """A worker process per engine; one query at a time."""

    def __init__(self, settings: Settings, limits: SqlLimits, allowed: str | None = None) -> None:
        self._settings = settings
        self.limits = limits
        self._allowed = allowed
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._send: Connection | None = None
        self._recv: Connection | None = None

    def _start(self) -> tuple[Connection, Connection]:
        if self._process is not None and self._process.poll() is None and self._send and self._recv:
            return self._send, self._recv
        self._stop()
        to_worker_r, to_worker_w = os.pipe()
        from_worker_r, from_worker_w = os.pipe()
        setup = pickle.dumps((self._settings, self.limits, self._allowed))
        command = [sys.executable, "-m", "lakebench.engines.sqlworker", str(to_worker_r), str(from_worker_w)]
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, pass_fds=(to_worker_r, from_worker_w), close_fds=True
            )
            assert self._process.stdin is not None
            self._process.stdin.write(setup)
            self._process.stdin.close()
        finally:
            os.close(to_worker_r)
            os.close(from_worker_w)
        self._send = Connection(to_worker_w, readable=False)
        self._recv = Connection(from_worker_r, writable=False)
        if not self._recv.poll(STARTUP_S) or self._recv.recv()[0] != "ready":
            self._stop()
            raise QueryError(f"the SQL worker did not start within {STARTUP_S:g} s")
        return self._send, self._recv

    def run(self, location: str, text: str, params: list[Any]) -> SqlResult:
        with self._lock:
            send, recv = self._start()
            try:
                send.send(_Request(location, text, params))
                if not recv.poll(self.limits.timeout_s + GRACE_S):
                    self._stop()
                    raise QueryError(f"query ran past the {self.limits.timeout_s:g} s limit and was stopped")
                status, value = recv.recv()
            except (EOFError, OSError):
                code = self._exit_code()
                self._stop()
                if code == -signal.SIGKILL:  # the kernel's out-of-memory killer, or an operator
                    raise QueryError(
                        "query was stopped: the worker running it was killed (SIGKILL), most likely for memory past "
                        f"its {self.limits.memory_bytes / 2**20:,.0f} MiB limit"
                    ) from None
                raise QueryError(f"the SQL worker ended unexpectedly (exit status {code}); try again") from None
        if status != "ok":
            raise QueryError(str(value))
        result: SqlResult = value
        return result

    def _exit_code(self) -> int | None:
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return None

    def _stop(self) -> None:
        for conn in (self._send, self._recv):
            if conn is not None:
                conn.close()
        self._send = self._recv = None
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=10)
            self._process = None

    def close(self) -> None:
        with self._lock:
            if self._send is not None and self._process is not None and self._process.poll() is None:
                try:
                    self._send.send(None)
                    self._process.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            self._stop()


def main() -> None:  # the worker process
    settings, limits, allowed = pickle.loads(sys.stdin.buffer.read())
    recv = Connection(int(sys.argv[1]), writable=False)
    send = Connection(int(sys.argv[2]), readable=False)
    _serve(_Duplex(recv, send), settings, limits, allowed)


class _Duplex:
    """Two one-way pipes as one connection, for ``_serve``."""

    def __init__(self, recv: Connection, send: Connection) -> None:
        self._recv, self._send = recv, send

    def recv(self) -> Any:
        return self._recv.recv()

    def send(self, value: Any) -> None:
        self._send.send(value)


if __name__ == "__main__":
    main()
