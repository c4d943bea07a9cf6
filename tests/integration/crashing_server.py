"""``lakebench`` as a user runs it, but the pipeline SIGKILLs its own process at one step of a flush.

    python -m tests.integration.crashing_server <files_written|committed> serve pipeline ...

The hook is attached from here, test code, through the pipeline's observer hooks: production
modules hold no fault switch.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from lakebench.cli import main
from lakebench.pipeline import core


def _attach_kill(step: str) -> None:
    original = core.Pipeline.__init__

    def init(self: core.Pipeline, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        getattr(self.hooks, step).append(lambda _events: os.kill(os.getpid(), signal.SIGKILL))

    core.Pipeline.__init__ = init  # type: ignore[method-assign]


if __name__ == "__main__":
    _attach_kill(sys.argv[1])
    sys.argv = ["lakebench", *sys.argv[2:]]
    main()
