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
import tempfile
from typing import Any

from lakebench.api.service import ServiceConfig, build_app, check_config
from lakebench.core import logs
from lakebench.core.errors import ConfigError

CONFIG_ENV = "LAKEBENCH_SERVICE_CONFIG"
LOG_ENV = "LAKEBENCH_SERVICE_LOG"  # "<level>" or "<level>:json", for the workers


def app_from_env() -> Any:
    """The app of one worker process (uvicorn's factory)."""
    level, _, form = os.environ.get(LOG_ENV, "info").partition(":")
    logs.configure(level, as_json=form == "json")
    config: ServiceConfig = pickle.loads(base64.b64decode(os.environ[CONFIG_ENV]))
    return build_app(config)


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
    os.environ[CONFIG_ENV] = base64.b64encode(pickle.dumps(config)).decode()
    json_root = any(isinstance(h.formatter, logs.JsonFormatter) for h in logging.getLogger().handlers)
    os.environ[LOG_ENV] = log_level + (":json" if json_root else "")
    console.print(
        f"lakebench serve: {config.workers} workers, {config.engine} over {config.settings.lake_url} on {where}",
        markup=False,
    )
    try:
        run_uvicorn("lakebench.api.serve:app_from_env", host, port, log_level, factory=True, workers=config.workers)
    finally:
        shutil.rmtree(metrics, ignore_errors=True)
