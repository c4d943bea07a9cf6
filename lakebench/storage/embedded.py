"""An S3-protocol server on loopback (moto), started by lakebench itself.

The run's network profiles need the lake behind an S3 endpoint whose requests they can shape and
count; on a machine with no bucket, lakebench starts moto's server (a real S3-protocol server,
keeping objects in memory) as a child process, on a free loopback port.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Final

from lakebench.core.config import S3Settings
from lakebench.core.errors import TerminalError
from lakebench.core.process import stop_process

CREDENTIALS: Final = {"access_key_id": "lakebench", "secret_access_key": "lakebench"}  # moto checks none


def die_with_parent() -> None:
    """In the child, before exec: SIGTERM it when the process that started it dies (Linux prctl), so
    a run killed outright leaves no server behind."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedS3:
    """``with EmbeddedS3() as server:`` — ``server.url``, ``server.s3(endpoint)``, ``server.bucket()``."""

    startup_timeout_s: float = 30.0
    url: str = ""
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __enter__(self) -> EmbeddedS3:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
        deadline = time.monotonic() + self.startup_timeout_s
        try:
            while True:
                try:
                    urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1).close()
                    return self
                except OSError:
                    if self._proc.poll() is not None or time.monotonic() > deadline:
                        raise TerminalError(f"the S3-protocol server (moto) did not start on {self.url}") from None
                    time.sleep(0.1)
        except BaseException:  # failed, or interrupted while starting: the server goes too
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)

    def s3(self, endpoint: str | None = None) -> S3Settings:
        """Settings that reach this server, directly or through ``endpoint`` (a profiled one)."""
        return S3Settings(endpoint=endpoint or self.url, region="us-east-1", **CREDENTIALS)

    def bucket(self, prefix: str = "lakebench") -> str:
        """A new, empty bucket."""
        import boto3

        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        s3 = self.s3()
        boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=s3.region,
            aws_access_key_id=s3.access_key_id,
            aws_secret_access_key=s3.secret_access_key,
        ).create_bucket(Bucket=name)
        return name
