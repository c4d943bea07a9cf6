"""Running the db service: one process, or several uvicorn workers behind one port.

Workers are separate processes, so each builds the app itself (``app_from_env``) from the
configuration the parent hands over in an environment variable; Prometheus metrics of all of
them are added up through a shared folder (``PROMETHEUS_MULTIPROC_DIR``).
"""

from __future__ import annotations

import base64
import errno
import logging
import os
import pickle
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, cast

from lakebench.api.ingest import IngestSettings
from lakebench.api.service import ServiceConfig, build_app, check_config
from lakebench.core import logs
from lakebench.core.config import Settings
from lakebench.core.errors import ConfigError
from lakebench.pipeline.core import PipelineConfig

CONFIG_ENV = "LAKEBENCH_SERVICE_CONFIG"
LOG_ENV = "LAKEBENCH_SERVICE_LOG"  # "<level>" or "<level>:json", for the workers
log = logging.getLogger(__name__)


def app_from_env() -> Any:
    """The app of one worker process (uvicorn's factory)."""
    _configure_logs()
    config: ServiceConfig = pickle.loads(base64.b64decode(os.environ[CONFIG_ENV]))
    return build_app(config)


@dataclass(frozen=True, slots=True)
class PipelineServer:
    """``lakebench serve pipeline``: what each worker process builds its app from."""

    settings: Settings
    pipeline: PipelineConfig
    ingest: IngestSettings
    dlq_max_bytes: int
    workers: int = 1


def pipeline_app(config: PipelineServer) -> Any:
    """One worker's ingest app: its own slot of the state folder, its own log."""
    from lakebench.api.app import create_app
    from lakebench.api.siblings import SiblingFlush, claim_pipeline
    from lakebench.lake.catalog import Lake
    from lakebench.pipeline.dlq import DeadLetters

    lake = Lake(config.settings)
    pipeline = claim_pipeline(lake, config.pipeline, config.workers)
    dlq = DeadLetters(lake.store, max_total_bytes=config.dlq_max_bytes)
    siblings = SiblingFlush(pipeline, config.workers) if config.workers > 1 else None
    log.info(
        "pipeline %s -> %s (layout %s, state %s)",
        pipeline.writer_id,
        lake.url,
        config.pipeline.layout,
        pipeline.state_dir,
    )
    return create_app(lake, pipeline, config.ingest, dlq, siblings)


def pipeline_app_from_env() -> Any:
    """The app of one ``serve pipeline`` worker process (uvicorn's factory)."""
    _configure_logs()
    config: PipelineServer = pickle.loads(base64.b64decode(os.environ[CONFIG_ENV]))
    return pipeline_app(config)


def run_pipeline_server(config: PipelineServer, host: str, port: int, log_level: str = "info") -> None:
    """One process, or ``config.workers`` processes behind one port, each with its own log."""
    check_port(host, port)
    from lakebench.api.siblings import check_slots
    from lakebench.lake.catalog import Lake

    with Lake(config.settings) as lake:
        check_slots(lake, config.pipeline, config.workers)
        if config.workers > 1:
            lake.table()  # created here, once, rather than by workers racing each other
    if config.workers == 1:
        run_uvicorn(pipeline_app(config), host, port, log_level)
        return
    _hand_over(config, log_level)
    run_workers("lakebench.api.serve:pipeline_app_from_env", host, port, log_level, config.workers)


def _hand_over(config: object, log_level: str) -> None:
    """The configuration and log format, for worker processes (they build their app themselves)."""
    os.environ[CONFIG_ENV] = base64.b64encode(pickle.dumps(config)).decode()
    json_root = any(isinstance(h.formatter, logs.JsonFormatter) for h in logging.getLogger().handlers)
    access = not logging.getLogger("lakebench.access").disabled
    os.environ[LOG_ENV] = ":".join([log_level, *(["json"] if json_root else []), *([] if access else ["noaccess"])])


def _configure_logs() -> None:
    """A worker's logs, as its parent's (``_hand_over``)."""
    level, *flags = os.environ.get(LOG_ENV, "info").split(":")
    logs.configure(level, as_json="json" in flags, access="noaccess" not in flags)


def check_port(host: str, port: int) -> None:
    """Refuse, before anything starts, a port another process listens on (uvicorn would exit 3
    after the server announced itself)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = "is in use by another process" if exc.errno == errno.EADDRINUSE else f"cannot be bound: {exc}"
            raise ConfigError(f"{host}:{port} {reason}; pick another --port or stop the other server") from None


def run_uvicorn(app: Any, host: str, port: int, log_level: str, **options: Any) -> None:
    import uvicorn

    check_port(host, port)
    uvicorn.run(app, host=host, port=port, log_config=None, log_level=log_level, access_log=False, **options)


def run_workers(factory: str, host: str, port: int, log_level: str, workers: int) -> None:
    """``workers`` uvicorn worker processes behind one port, each building its app from ``factory``.

    On Linux each worker listens on a socket of its own, bound with SO_REUSEPORT, and the kernel
    spreads new connections over them by a hash of their addresses. uvicorn's own way, one socket
    all workers accept from, gives a burst of connections to whichever worker wakes first: under
    keep-alive load one worker was seen holding four connections in five while the other idled
    (bench/pipeline.py). The price: a connection goes to its worker even when that one is busy,
    and connections queued on a worker that dies or is replaced (SIGHUP) before it accepted them
    are reset — a client retries them (ingest is idempotent by ``event_id``).

    The parent binds the port first (``--port 0``: the port it got is the workers' too) and keeps
    it bound, not listening, with SO_REUSEPORT alone, so that no other program can take it while
    workers start or restart. Elsewhere, uvicorn's shared socket."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    if not (sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")):
        run_uvicorn(factory, host, port, log_level, factory=True, workers=workers)  # (checks the port)
        return
    check_port(host, port)
    try:
        reserved = _reuseport_socket(host, port, reuse_address=False)
    except OSError as exc:
        raise ConfigError(f"{host}:{port} cannot be bound: {exc}; pick another --port") from None
    port = int(reserved.getsockname()[1])
    config = uvicorn.Config(
        factory,
        host=host,
        port=port,
        factory=True,
        workers=workers,
        log_config=None,
        log_level=log_level,
        access_log=False,  # lakebench's own (core/logs.py), as in run_uvicorn
    )
    log.info("%d workers on http://%s:%d, a listening socket each (SO_REUSEPORT)", workers, host, port)
    try:
        Multiprocess(config, sockets=[cast(socket.socket, ReusePortListener(host, port))]).run()
    except KeyboardInterrupt:  # pragma: no cover - the supervisor handles SIGINT itself
        pass
    finally:
        reserved.close()


def _reuseport_socket(host: str, port: int, *, reuse_address: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if reuse_address:  # a listener: restarts over connections in TIME_WAIT
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def worker_socket(host: str, port: int) -> socket.socket:
    """A worker's own listening socket. A port another program took meanwhile fails the same way at
    every restart: the worker exits with uvicorn's startup-failure code, and its supervisor stops."""
    from uvicorn.config import STARTUP_FAILURE

    try:
        return _reuseport_socket(host, port, reuse_address=True)
    except OSError as exc:
        log.error("worker %d cannot listen on %s:%d: %s", os.getpid(), host, port, exc)
        sys.exit(STARTUP_FAILURE)


@dataclass(frozen=True, slots=True)
class ReusePortListener:
    """What uvicorn's supervisor hands each worker it spawns as its listening socket: unpickled in
    the worker, it becomes a socket that worker binds for itself (``worker_socket``)."""

    host: str
    port: int

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        return worker_socket, (self.host, self.port)


def run_service(config: ServiceConfig, host: str, port: int, console: Any, log_level: str = "info") -> None:
    where = f"http://{host}:{port}"
    if config.workers == 1:
        check_port(host, port)
        app = build_app(config)
        console.print(f"lakebench serve: {config.engine} over {config.settings.lake_url} on {where}", markup=False)
        run_uvicorn(app, host, port, log_level)
        return
    check_config(config)  # fail here, once, rather than in every worker
    check_port(host, port)
    metrics = tempfile.mkdtemp(prefix="lakebench-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics
    _hand_over(config, log_level)
    console.print(
        f"lakebench serve: {config.workers} workers, {config.engine} over {config.settings.lake_url} on {where}",
        markup=False,
    )
    try:
        run_workers("lakebench.api.serve:app_from_env", host, port, log_level, config.workers)
    finally:
        shutil.rmtree(metrics, ignore_errors=True)
