# ruff: noqa: S608 - the stand-in executes the SQL its client sends, on a sandboxed DuckDB connection.
"""A local stand-in for Cloudflare's R2 SQL HTTP API: the documented request and response shapes,
answered by DuckDB over a lakebench lake. It lets the r2sql client be tested without an account;
it is not R2 SQL (whose dialect is smaller), so it proves the client, not Cloudflare."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import orjson
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from ulid import ULID

from lakebench.engines.lake_sql import LakeSqlEngine
from lakebench.lake.catalog import Lake

TOKEN = "r2-sql-test-token"
REFRESH_S = 0.5  # the stand-in sees new commits within this long


def standin_app(lake: Lake, account: str, bucket: str, timeout_s: float = 30.0) -> FastAPI:
    app = FastAPI()
    engine = LakeSqlEngine(lake)
    refreshed = [time.monotonic()]

    def failure(status: int, message: str) -> JSONResponse:
        return JSONResponse(
            {
                "success": False,
                "errors": [{"code": 40000 + status, "message": message}],
                "messages": [],
                "result": None,
            },
            status_code=status,
        )

    @app.post("/api/v1/accounts/{acct}/r2-sql/query/{bkt}")
    async def query(acct: str, bkt: str, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return failure(401, "Authentication error")
        if (acct, bkt) != (account, bucket):
            return failure(404, "bucket not found")
        body: dict[str, Any] = await request.json()
        sql = str(body.get("query", "")).replace("lakebench.events", "events")
        if time.monotonic() - refreshed[0] > REFRESH_S:  # a catalog read per request would dominate the tests
            engine.refresh()
            refreshed[0] = time.monotonic()
        try:
            with engine._lock:
                probe = engine._con.execute(f"SELECT * FROM ({sql}) LIMIT 0")
                columns = [d[0] for d in probe.description or []]
                types = [str(d[1]) for d in probe.description or []]
                # Timestamps go out as ISO-8601 text, as R2 SQL's JSON does.
                projection = ", ".join(
                    f'strftime(make_timestamp(epoch_us("{c}")), \'%Y-%m-%dT%H:%M:%S.%fZ\') AS "{c}"'
                    if t.startswith("TIMESTAMP")
                    else f'"{c}"'
                    for c, t in zip(columns, types, strict=True)
                )
                # R2 SQL stops long queries on its side; the stand-in does too.
                timer = threading.Timer(timeout_s, engine._con.interrupt)
                timer.start()
                try:
                    rows = engine._con.execute(f"SELECT {projection} FROM ({sql})").fetchall()
                finally:
                    timer.cancel()
        except duckdb.Error as exc:
            return failure(400, str(exc))
        out = []
        for row in rows:
            out.append(dict(zip(columns, row, strict=True)))
        return Response(
            orjson.dumps(
                {
                    "success": True,
                    "errors": [],
                    "messages": [],
                    "result": {
                        "request_id": str(ULID()),
                        "schema": [{"name": c, "type": t} for c, t in zip(columns, types, strict=True)],
                        "rows": out,
                        "metrics": {"r2_requests_count": 1, "files_scanned": 1, "bytes_scanned": 0},
                    },
                }
            ),
            media_type="application/json",
        )

    return app


@contextmanager
def running_standin(lake: Lake, account: str = "acct", bucket: str = "bkt", timeout_s: float = 30.0) -> Iterator[str]:
    """Serve the stand-in on loopback in a thread; yields its endpoint URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(standin_app(lake, account, bucket, timeout_s), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("R2 SQL stand-in did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
