"""Users' SQL on DuckDB, in a process of its own whose memory the operating system bounds.

DuckDB's ``memory_limit`` covers what its buffer manager tracks, not every string it builds: one
``replace(body, ' ', body)`` over a large page asks for gigabytes that no setting refuses. So user
queries run in a worker process whose data segment is capped (``RLIMIT_DATA``): an allocation past
the cap fails inside DuckDB, which answers with an out-of-memory error and keeps serving. The
worker also stops a query at the time limit (``interrupt``); if it does not answer shortly after,
the parent kills it and starts a fresh one for the next query.

The worker is started on the first query and lives as long as its engine.
"""

from __future__ import annotations

import multiprocessing
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from lakebench.core.config import Settings
from lakebench.engines.base import QueryError, SqlResult
from lakebench.engines.sandbox import SqlLimits, python_value

# Python, DuckDB and its extensions need this much on top of the query's own memory.
BASE_BYTES = 768 << 20
GRACE_S = 5.0  # past the time limit, a worker that has not answered is killed


@dataclass(frozen=True, slots=True)
class _Request:
    location: str  # the table's metadata file, from the catalog
    text: str  # checked and rendered by the sandbox
    params: list[Any]


def _serve(conn: Connection, settings: Settings, limits: SqlLimits) -> None:  # pragma: no cover - runs in the worker
    import resource

    import duckdb

    from lakebench.engines.duck import connect, sql_literal

    cap = limits.memory_bytes + BASE_BYTES
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    con = connect(settings, threads=limits.threads, memory_bytes=limits.memory_bytes)
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


class SqlWorker:
    """A worker process per engine; one query at a time."""

    def __init__(self, settings: Settings, limits: SqlLimits) -> None:
        self._settings = settings
        self.limits = limits
        self._lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def _start(self) -> Connection:
        if self._conn is None or self._process is None or not self._process.is_alive():
            self._stop()
            context = multiprocessing.get_context("spawn")
            parent, child = context.Pipe()
            process = context.Process(
                target=_serve, args=(child, self._settings, self.limits), name="lakebench-sql", daemon=True
            )
            process.start()
            child.close()
            self._process, self._conn = process, parent
        return self._conn

    def run(self, location: str, text: str, params: list[Any]) -> SqlResult:
        with self._lock:
            conn = self._start()
            try:
                conn.send(_Request(location, text, params))
                if not conn.poll(self.limits.timeout_s + GRACE_S):
                    self._stop()
                    raise QueryError(f"query ran past the {self.limits.timeout_s:g} s limit and was stopped")
                status, value = conn.recv()
            except (EOFError, OSError):
                self._stop()
                raise QueryError(
                    f"query was stopped: it needed more than its {self.limits.memory_bytes / 2**20:,.0f} MiB "
                    "memory limit (the worker running it ended)"
                ) from None
        if status != "ok":
            raise QueryError(str(value))
        result: SqlResult = value
        return result

    def _stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(timeout=10)
            self._process = None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._process is not None and self._process.is_alive():
                try:
                    self._conn.send(None)
                    self._process.join(timeout=5)
                except OSError:
                    pass
            self._stop()
