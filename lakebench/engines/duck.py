"""DuckDB connections that can read Iceberg on a folder or an S3-protocol bucket, offline and sandboxed.

The extensions come from the ``duckdb-extension-*`` wheels and are loaded by file path (DuckDB
cannot download them here); ``avro`` must be loaded before ``iceberg``. Once set up, a connection
may read only the lake: external access is limited to the lake's folder or bucket prefix and the
configuration is locked, so a user's SELECT cannot read other files or switch the limits off.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from urllib.parse import urlsplit

import duckdb

from lakebench.core.config import Settings
from lakebench.core.errors import ConfigError

EXTENSIONS = ("httpfs", "avro", "iceberg")


def extension_path(name: str) -> Path:
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"DuckDB extension {name!r} is not installed; pip install 'duckdb-extension-{name}=={duckdb.__version__}'"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(root.glob(f"extensions/*/{name}.duckdb_extension"))
    if not found:
        raise ConfigError(f"no {name}.duckdb_extension file under {root}")
    return found[-1]


def sql_literal(value: str) -> str:
    """Quote a trusted setting (a path, an endpoint) as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def lake_root(settings: Settings) -> str:
    url = settings.lake_url
    return (url.removeprefix("file://") if url.startswith("file://") else url).rstrip("/") + "/"


def local_path(url: str) -> str:
    """A folder or bucket URL as DuckDB names it, with a trailing slash."""
    return (url.removeprefix("file://") if url.startswith("file://") else url).rstrip("/") + "/"


def connect(
    settings: Settings,
    *,
    sandbox: bool = True,
    allowed: str | None = None,
    threads: int | None = None,
    memory_bytes: int | None = None,
) -> duckdb.DuckDBPyConnection:
    """A new DuckDB instance (its own memory pool) that reads the lake; sandboxed unless told not to:
    then it reads nothing but ``allowed`` (a URL; default the lake's root), its configuration locked."""
    con = duckdb.connect(config={"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"})
    for name in EXTENSIONS:
        con.execute(f"LOAD {sql_literal(str(extension_path(name)))}")
    con.execute("SET TimeZone = 'UTC'")  # timestamps come back in UTC, whatever the machine's zone
    if threads is not None:
        con.execute(f"SET threads = {int(threads)}")
    if memory_bytes is not None:
        con.execute(f"SET memory_limit = '{int(memory_bytes)}B'")
        con.execute("SET max_temp_directory_size = '0B'")  # no spilling past the limit onto disk
    if settings.lake_url.startswith("s3://"):
        s3 = settings.s3
        options = ["TYPE s3", f"REGION {sql_literal(s3.region)}"]
        if s3.access_key_id and s3.secret_access_key:
            options += [f"KEY_ID {sql_literal(s3.access_key_id)}", f"SECRET {sql_literal(s3.secret_access_key)}"]
        if s3.endpoint:
            parts = urlsplit(s3.endpoint if "://" in s3.endpoint else f"https://{s3.endpoint}")
            options += [
                f"ENDPOINT {sql_literal(parts.netloc)}",
                "URL_STYLE 'path'",
                f"USE_SSL {'true' if parts.scheme == 'https' else 'false'}",
            ]
        con.execute(f"CREATE OR REPLACE SECRET lakebench_s3 ({', '.join(options)})")
    if sandbox:
        folder = local_path(allowed) if allowed else lake_root(settings)
        con.execute(f"SET allowed_directories = [{sql_literal(folder)}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    return con
