"""Settings: where the lake is, where its catalog is, and how to reach object storage.

Every setting has an embedded default that needs no outside service: a lake in ``./lake`` with a
SQLite Iceberg catalog beside it. Environment variables override the defaults; CLI options
override the environment.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from lakebench.core.errors import ConfigError

DEFAULT_LAKE = "./lake"


@dataclass(frozen=True, slots=True)
class S3Settings:
    """Endpoint and credentials for an S3-protocol store (AWS S3, Cloudflare R2, MinIO, moto)."""

    endpoint: str | None = None  # e.g. https://<account>.r2.cloudflarestorage.com or http://127.0.0.1:9000
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None

    @classmethod
    def from_env(cls) -> S3Settings:
        return cls(
            endpoint=os.environ.get("LAKEBENCH_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL") or None,
            region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or None,
            secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
        )


@dataclass(frozen=True, slots=True)
class Settings:
    lake: str = DEFAULT_LAKE
    catalog: str | None = None  # SQL catalog URL (sqlite/postgresql) or REST catalog URL (https://…); None = default
    catalog_name: str = "lakebench"  # several catalogs can share one SQL database under different names
    catalog_warehouse: str | None = None  # REST catalogs: the warehouse (R2 Data Catalog: <account>_<bucket>)
    catalog_token: str | None = None  # REST catalogs: bearer token
    s3: S3Settings = field(default_factory=S3Settings)
    read_only: bool = False  # every write to the lake's store is refused (LAKEBENCH_READ_ONLY=1)

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        base = cls(
            lake=os.environ.get("LAKEBENCH_LAKE") or DEFAULT_LAKE,
            catalog=os.environ.get("LAKEBENCH_CATALOG") or None,
            catalog_name=os.environ.get("LAKEBENCH_CATALOG_NAME") or "lakebench",
            catalog_warehouse=os.environ.get("LAKEBENCH_CATALOG_WAREHOUSE") or None,
            catalog_token=os.environ.get("LAKEBENCH_CATALOG_TOKEN") or None,
            s3=S3Settings.from_env(),
            read_only=os.environ.get("LAKEBENCH_READ_ONLY", "").lower() in ("1", "true", "yes"),
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(base, **given)  # type: ignore[arg-type]

    @property
    def lake_url(self) -> str:
        """The lake as a URL: ``file:///abs/path`` or ``s3://bucket/prefix`` (no trailing slash)."""
        return normalise_lake_url(self.lake)

    @property
    def catalog_url(self) -> str:
        if self.catalog:
            return self.catalog
        return default_catalog_url(self.lake_url)


def normalise_lake_url(lake: str) -> str:
    if not lake:
        raise ConfigError("the lake location is empty; pass --lake PATH or s3://bucket/prefix")
    parts = urlsplit(lake)
    if parts.scheme in ("", "file"):
        path = parts.path if parts.scheme == "file" else lake
        return "file://" + str(Path(path).expanduser().resolve())
    if parts.scheme in ("s3", "s3a", "r2"):
        if not parts.netloc:
            raise ConfigError(f"lake URL {lake!r} names no bucket; expected s3://bucket/prefix")
        prefix = parts.path.strip("/")
        return f"s3://{parts.netloc}" + (f"/{prefix}" if prefix else "")
    raise ConfigError(
        f"lake URL scheme {parts.scheme!r} is not supported; use a folder path, file://, or s3://bucket/prefix"
    )


def default_catalog_url(lake_url: str) -> str:
    """SQLite beside a local lake; for a remote lake, a SQLite file in the user's state folder.

    A catalog shared by several machines belongs in PostgreSQL: pass --catalog postgresql+psycopg://...
    """
    if lake_url.startswith("file://"):
        return f"sqlite:///{lake_url.removeprefix('file://')}/catalog.db"
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "lakebench"
    digest = hashlib.sha256(lake_url.encode()).hexdigest()[:12]
    bucket = urlsplit(lake_url).netloc
    state.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{state}/catalog-{bucket}-{digest}.db"
