"""Network profiles: an object store's latency and bandwidth, applied where every engine's reads go.

The question lakebench answers is about R2 or S3, where every read is a network request; a lake on
a local disk answers another one. A profile gives each request a time to first byte drawn from a
log-normal distribution (fitted to the published p50 and p99) and paces the body at a per-connection
bandwidth. It is applied by ``ProfiledEndpoint``: an S3-protocol endpoint on loopback that forwards
every request to a real S3-protocol server on loopback (moto in tests and benchmarks; the client's
Host header goes through unchanged, so an upstream that checks it in signatures — AWS, R2 — cannot
sit behind it: a real bucket is measured directly instead) and delays the answer. DuckDB's httpfs,
chDB's s3() and boto3 all read through it, so every engine pays the same network, and its
request and byte counters are the one place every engine's reads pass.

This is network *emulation*: what a benchmark prints through it is measured (real engines making
real requests), under a network whose figures come from ``NetworkProfile.source``. Results name
the profile. With credentials for a real bucket, the same run goes to the bucket instead.
"""

from __future__ import annotations

import http.client
import math
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import urlsplit

import numpy as np

from lakebench.core.errors import ConfigError

Z99: Final = 2.3263478740408408  # the standard normal's 99th percentile
HOP_BY_HOP: Final = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers"}
    | {"transfer-encoding", "upgrade", "expect", "content-length"}
)
CHUNK: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class NetworkProfile:
    """Per-request time to first byte (log-normal through p50 and p99) and per-connection bandwidth."""

    name: str
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    bandwidth_mb_s: float | None  # per connection, MB = 10^6 bytes; None: not limited
    source: str

    def __post_init__(self) -> None:
        if self.ttfb_p50_ms < 0 or self.ttfb_p99_ms < self.ttfb_p50_ms:
            raise ConfigError(f"profile {self.name}: need 0 <= ttfb p50 <= p99")
        if self.ttfb_p50_ms == 0 and self.ttfb_p99_ms != 0:
            raise ConfigError(f"profile {self.name}: a zero p50 needs a zero p99 (a log-normal has no zero median)")
        if self.bandwidth_mb_s is not None and self.bandwidth_mb_s <= 0:
            raise ConfigError(f"profile {self.name}: bandwidth must be positive")

    def ttfb_s(self, rng: np.random.Generator) -> float:
        """One request's time to first byte, in seconds."""
        if self.ttfb_p50_ms == 0:
            return 0.0
        sigma = math.log(self.ttfb_p99_ms / self.ttfb_p50_ms) / Z99
        return float(rng.lognormal(math.log(self.ttfb_p50_ms), sigma)) / 1000

    def transfer_s(self, size: int) -> float:
        """The time ``size`` bytes take at the profile's bandwidth."""
        return 0.0 if self.bandwidth_mb_s is None else size / (self.bandwidth_mb_s * 1e6)


PROFILES: Final = {
    "local": NetworkProfile("local", 0.0, 0.0, None, "no added latency: the loopback server as it is"),
    # Where each figure comes from: README.md, "Network profiles".
    "r2": NetworkProfile("r2", 150.0, 500.0, 70.0, "third-party measurements, provisional (README)"),
    "s3-standard": NetworkProfile(
        "s3-standard", 27.0, 110.0, 90.0, "AWS performance guidelines and measurements (README)"
    ),
    "s3-express": NetworkProfile("s3-express", 4.0, 10.0, 90.0, "AWS S3 Express One Zone documentation (README)"),
}


def get_profile(name: str) -> NetworkProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown network profile {name!r}; choose one of: {', '.join(PROFILES)}") from None


@dataclass(slots=True)
class EndpointStats:
    """What passed through the endpoint: requests by kind, bytes each way, delay added."""

    requests: dict[str, int] = field(default_factory=dict)
    bytes_out: int = 0  # answer bodies sent to clients
    bytes_in: int = 0  # request bodies received
    delay_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, kind: str, bytes_in: int, bytes_out: int, delay_s: float) -> None:
        with self._lock:
            self.requests[kind] = self.requests.get(kind, 0) + 1
            self.bytes_in += bytes_in
            self.bytes_out += bytes_out
            self.delay_s += delay_s

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"requests": dict(self.requests), "bytes_out": self.bytes_out, "bytes_in": self.bytes_in}

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.bytes_out = self.bytes_in = 0
            self.delay_s = 0.0


def request_kind(method: str, path: str) -> str:
    """GET, HEAD, PUT, DELETE, POST — and LIST for a GET of a bucket (a path without an object key)."""
    target = urlsplit(path)
    parts = target.path.lstrip("/").split("/", 1)
    if method == "GET" and (len(parts) < 2 or not parts[1]):
        return "LIST"
    return method


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as object-store clients expect
    disable_nagle_algorithm = True  # headers and body leave at once: no 40 ms delayed-ACK stall between them
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request on stderr would drown a benchmark's output

    def _body(self) -> bytes:
        """The request body, whether framed by Content-Length or chunked (forwarded with a length)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _forward(self) -> None:
        endpoint = self.server.endpoint
        body = self._body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        started = time.perf_counter()
        try:
            status, reason, answer_headers, answer = endpoint.upstream_call(self.command, self.path, body, headers)
        except (http.client.HTTPException, OSError) as exc:
            self.send_error(502, "upstream unreachable", f"{type(exc).__name__}: {exc}")
            return
        ttfb = endpoint.next_ttfb()
        wait = ttfb - (time.perf_counter() - started)  # the upstream's own time counts towards it
        if wait > 0:
            time.sleep(wait)  # the emulated network's time to first byte
        endpoint.stats.add(request_kind(self.command, self.path), len(body), len(answer), max(0.0, wait))
        self.send_response_only(status, reason)  # the upstream's own Server and Date go through
        for key, value in answer_headers:
            if key.lower() not in HOP_BY_HOP or (self.command == "HEAD" and key.lower() == "content-length"):
                self.send_header(key, value)  # a HEAD answer's length is the object's
        bodiless = self.command == "HEAD" or status in (204, 304) or status < 200
        if not bodiless:
            self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        if not bodiless:
            self._paced(answer, endpoint.profile)

    def _paced(self, data: bytes, profile: NetworkProfile) -> None:
        """Each chunk leaves when the bandwidth allows it, so the answer itself takes the time."""
        started = time.perf_counter()
        for offset in range(0, len(data), CHUNK):
            chunk = data[offset : offset + CHUNK]
            ahead = profile.transfer_s(offset + len(chunk)) - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)  # the emulated bandwidth
            self.wfile.write(chunk)
        self.wfile.flush()

    def finish(self) -> None:
        super().finish()
        self.server.endpoint.release()  # this client connection is over: so is its upstream one

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    endpoint: ProfiledEndpoint

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a process ending, a connection dropped from a pool) is no error."""
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
            super().handle_error(request, client_address)


class ProfiledEndpoint:
    """An S3-protocol endpoint on loopback that forwards to ``upstream`` under ``profile``."""

    def __init__(self, upstream: str, profile: NetworkProfile, seed: int = 0) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"upstream {upstream!r} must be an http(s):// S3 endpoint")
        self.upstream = parts
        self.profile = profile
        self.stats = EndpointStats()
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()
        self._seed = seed
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []  # every thread's, closed with the endpoint
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.endpoint = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"netem-{profile.name}", daemon=True)

    def reseed(self, seed: int | None = None) -> None:
        """Start the latency draws again (from ``seed``, or the endpoint's own): every option measured
        in turn through one endpoint then meets the same sequence of draws."""
        with self._rng_lock:
            self._rng = np.random.default_rng(self._seed if seed is None else seed)

    def next_ttfb(self) -> float:
        with self._rng_lock:
            return self.profile.ttfb_s(self._rng)

    def release(self) -> None:
        """Close the calling thread's upstream connection (its client connection ended)."""
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
            with self._rng_lock:
                if connection in self._connections:
                    self._connections.remove(connection)

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            kind = http.client.HTTPSConnection if self.upstream.scheme == "https" else http.client.HTTPConnection
            connection = kind(self.upstream.hostname or "", self.upstream.port, timeout=120)
            self._local.connection = connection
            with self._rng_lock:
                self._connections.append(connection)
        return connection

    def upstream_call(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        for attempt in (1, 2):  # a kept-alive connection the upstream closed is opened again, once
            connection = self._connection()
            try:
                connection.request(method, path, body=body or None, headers=headers)
                response = connection.getresponse()
                data = response.read()
                return response.status, response.reason, response.getheaders(), data
            except (http.client.HTTPException, OSError):
                connection.close()
                self._local.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def start(self) -> ProfiledEndpoint:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        with self._rng_lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()

    def __enter__(self) -> ProfiledEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def profiled(upstream: str, profile: NetworkProfile | str, seed: int = 0) -> Iterator[ProfiledEndpoint]:
    """``with profiled("http://127.0.0.1:5000", "r2") as endpoint:`` — point S3 clients at ``endpoint.url``."""
    chosen = get_profile(profile) if isinstance(profile, str) else profile
    with ProfiledEndpoint(upstream, chosen, seed) as endpoint:
        yield endpoint
