"""The Iceberg catalog that points at the events table's current metadata.

Default: pyiceberg's SQL catalog in SQLite beside the lake (one writer at a time). Pass a
PostgreSQL URL (``postgresql+psycopg://...``) as the catalog to share one table between writers.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from lakebench.core.config import Settings
from lakebench.core.errors import ConfigError
from lakebench.lake.schema import IDENTIFIER, NAMESPACE, SCHEMA, SORT_ORDER
from lakebench.storage import ObjectStore, open_store

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

DATA_PREFIX = "events/data"
TABLE_PROPERTIES = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    # Bodies and titles are large and useless for pruning: no min/max statistics for them.
    "write.metadata.metrics.column.title": "none",
    "write.metadata.metrics.column.body": "none",
    "write.metadata.metrics.column.attributes": "none",
    "write.metadata.metrics.column.entity_id": "full",
}


def fileio_properties(settings: Settings) -> dict[str, str]:
    """pyiceberg FileIO settings for the lake's object store."""
    if not settings.lake_url.startswith("s3://"):
        return {}
    s3 = settings.s3
    props = {"s3.region": s3.region}
    if s3.endpoint:
        props["s3.endpoint"] = s3.endpoint
    if s3.access_key_id:
        props["s3.access-key-id"] = s3.access_key_id
    if s3.secret_access_key:
        props["s3.secret-access-key"] = s3.secret_access_key
    return props


class Lake:
    """One lake: its object store, its catalog, and its events table."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.lake_url
        self.store: ObjectStore = open_store(self.url, settings.s3)

    @cached_property
    def catalog(self) -> Catalog:
        from pyiceberg.catalog.sql import SqlCatalog

        url = self.settings.catalog_url
        if not url.startswith(("sqlite", "postgresql")):
            raise ConfigError(f"catalog URL {url!r} is not supported; use sqlite:///PATH or postgresql+psycopg://…")
        if url.startswith("sqlite:///"):
            from pathlib import Path

            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return SqlCatalog("lakebench", uri=url, warehouse=self.url, **fileio_properties(self.settings))

    def table(self, *, create: bool = True) -> Table:
        """The events table, created on first use."""
        from pyiceberg.exceptions import NoSuchTableError

        try:
            return self.catalog.load_table(IDENTIFIER)
        except NoSuchTableError:
            if not create:
                raise ConfigError(
                    f"no events table in {self.url} (catalog {self.settings.catalog_url}); "
                    "write some events first: lakebench generate / lakebench ingest"
                ) from None
        self.catalog.create_namespace_if_not_exists(NAMESPACE)
        return self.catalog.create_table_if_not_exists(
            IDENTIFIER,
            schema=SCHEMA,
            location=f"{self.url}/events",
            sort_order=SORT_ORDER,
            properties=TABLE_PROPERTIES,
        )

    def exists(self) -> bool:
        return bool(self.catalog.table_exists(IDENTIFIER))
