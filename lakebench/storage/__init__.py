"""Object stores by URL: a local folder (``file://`` or a path) or an S3-protocol bucket (``s3://``)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from lakebench.core.config import S3Settings, normalise_lake_url
from lakebench.core.errors import ConfigError
from lakebench.storage.base import ObjectInfo, ObjectStore, RequestStats
from lakebench.storage.local import LocalStore

__all__ = ["ObjectInfo", "ObjectStore", "RequestStats", "open_store"]


def open_store(url: str, s3: S3Settings | None = None) -> ObjectStore:
    """The store for a URL; the scheme picks the implementation."""
    normalised = normalise_lake_url(url)
    parts = urlsplit(normalised)
    if parts.scheme == "file":
        return LocalStore(Path(parts.path))
    if parts.scheme == "s3":
        from lakebench.storage.s3 import S3Store

        return S3Store(parts.netloc, parts.path, s3 or S3Settings.from_env())
    raise ConfigError(f"no object store for {url!r}")
