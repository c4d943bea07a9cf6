"""A ``lakebench serve pipeline`` whose pipelines SIGKILL their own process at one step of a flush.

``start_server(..., crash_at=STEP)`` (servers.py) puts a ``sitecustomize.py`` calling
``attach_kill(STEP)`` on the server's ``PYTHONPATH``: the interpreter runs it in the server process
and in every worker process it spawns. The hook is attached from test code, through the
pipeline's observer hooks: production modules hold no fault switch.
"""

from __future__ import annotations

import os
import signal
from typing import Any


def attach_kill(step: str) -> None:
    """Every pipeline made in this process kills the process at ``step`` (files_written | committed)."""
    from lakebench.pipeline import core

    original = core.Pipeline.__init__

    def init(self: core.Pipeline, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        getattr(self.hooks, step).append(lambda _rows: os.kill(os.getpid(), signal.SIGKILL))

    core.Pipeline.__init__ = init  # type: ignore[method-assign]
