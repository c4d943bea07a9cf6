"""Running the db service: one process, or several uvicorn workers behind one port.

Workers are separate processes, so each builds the app itself (``app_from_env``) from the
configuration the parent hands over in an environment variable; Prometheus metrics of all of
them are added up through a shared folder (``PROMETHEUS_MULTIPROC_DIR``).
"""

from __future__ import annotations

import base64
import os
import pickle
import shutil
import tempfile
from typing import Any

from lakebench.api.service import ServiceConfig, build_app, check_config

CONFIG_ENV = "LAKEBENCH_SERVICE_CONFIG"


def app_from_env() -> Any:
    """The app of one worker process (uvicorn's factory)."""
    config: ServiceConfig = pickle.loads(base64.b64decode(os.environ[CONFIG_ENV]))
    return build_app(config)


def run_service(config: ServiceConfig, host: str, port: int, console: Any) -> None:
    import uvicorn

    where = f"http://{host}:{port}"
    if config.workers == 1:
        app = build_app(config)
        console.print(f"lakebench serve: {config.engine} over {config.settings.lake_url} on {where}", markup=False)
        uvicorn.run(app, host=host, port=port, log_level="warning")
        return
    check_config(config)  # fail here, once, rather than in every worker
    metrics = tempfile.mkdtemp(prefix="lakebench-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics
    os.environ[CONFIG_ENV] = base64.b64encode(pickle.dumps(config)).decode()
    console.print(
        f"lakebench serve: {config.workers} workers, {config.engine} over {config.settings.lake_url} on {where}",
        markup=False,
    )
    try:
        uvicorn.run(
            "lakebench.api.serve:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=config.workers,
            log_level="warning",
        )
    finally:
        shutil.rmtree(metrics, ignore_errors=True)
