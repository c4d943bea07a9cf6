"""The Iceberg catalog that points at the events table's current metadata.

Default: pyiceberg's SQL catalog in SQLite beside the lake (one writer at a time). Pass a
PostgreSQL URL (``postgresql+psycopg://...``) as the catalog to share one table between writers.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from functools import cached_property
from typing import TYPE_CHECKING, TypeVar

from tenacity import Retrying, retry_if_not_exception_type, stop_after_attempt, wait_random

from lakebench.core.config import Settings
from lakebench.core.errors import ConfigError, StorageError, TerminalError, TransientError
from lakebench.storage import ObjectStore, open_store

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

DATA_PREFIX = "events/data"  # of the default catalog's table (see Lake.data_prefix)
DEFAULT_CATALOG_NAME = "lakebench"
COMMIT_ATTEMPTS = 8
T = TypeVar("T")
TABLE_PROPERTIES = {
    "format-version": "2",
    "write.parquet.compression-codec": "zstd",
    # Bodies and titles are large and useless for pruning: no min/max statistics for them.
    "write.metadata.metrics.column.title": "none",
    "write.metadata.metrics.column.body": "none",
    "write.metadata.metrics.column.attributes": "none",
    "write.metadata.metrics.column.entity_id": "full",
    # Keep the metadata folder from growing without bound: old metadata.json files are deleted.
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "50",
    # lakebench's writers retry a lost commit race themselves, on fresh metadata, re-checking their
    # preconditions and rebuilding the snapshot's indexes; pyiceberg's own retry would re-apply the
    # same snapshot on another parent, with preconditions and indexes made for the old one.
    "commit.retry.num-retries": "0",
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
        if self.url.startswith("file://"):
            from pathlib import Path

            folder = Path(self.url.removeprefix("file://"))
            if folder.exists() and not folder.is_dir():
                raise ConfigError(
                    f"the lake {folder} is a file, not a folder; pass --lake a folder or s3://bucket/prefix"
                )
        self.store: ObjectStore = open_store(self.url, settings.s3)
        if settings.read_only:
            from lakebench.storage.readonly import ReadOnlyStore

            self.store = ReadOnlyStore(self.store)

    @property
    def _sqlite_file(self) -> str | None:
        url = self.settings.catalog_url
        return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None

    @contextmanager
    def _creating(self) -> Iterator[None]:
        """Held while the catalog's tables or the events table are created: with a SQLite catalog,
        an ``flock`` on the folder that holds it (no file is made), so processes of this machine
        create them one at a time — racing, the losers of pyiceberg's unique constraints leave
        metadata files of tables that never were."""
        sqlite = self._sqlite_file
        if sqlite is None:
            yield
            return
        folder = os.open(os.path.dirname(os.path.abspath(sqlite)), os.O_RDONLY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            yield
        finally:
            os.close(folder)  # (lets go of the lock)

    def no_table(self, why: str) -> ConfigError:
        """The error of a read on a lake that holds no table — once the store has shown it can be
        reached (a missing bucket or an endpoint out of reach says so, not 'write some events')."""
        next(iter(self.store.list("events/metadata/")), None)
        return ConfigError(
            f"no events table in {self.url} ({why}); write some events first: lakebench generate / lakebench ingest"
        )

    @property
    def catalog_label(self) -> str:
        """The catalog's URL, its password hidden."""
        return redact_url(self.settings.catalog_url)

    @property
    def is_rest(self) -> bool:
        return self.settings.catalog_url.startswith(("http://", "https://"))

    @cached_property
    def catalog(self) -> Catalog:
        """The catalog named by the settings: SQL (SQLite, PostgreSQL) or Iceberg REST (R2 Data Catalog)."""
        url = self.settings.catalog_url
        props = fileio_properties(self.settings)
        name = self.settings.catalog_name
        if self.is_rest:
            from pyiceberg.catalog.rest import RestCatalog

            rest = {"uri": url, "warehouse": self.settings.catalog_warehouse or self.url}
            if self.settings.catalog_token:
                rest["token"] = self.settings.catalog_token
            try:
                return RestCatalog(name, **rest, **props)
            except Exception as exc:
                raise ConfigError(f"cannot open the Iceberg REST catalog at {url}: {exc}") from exc
        if not url.startswith(("sqlite", "postgresql")):
            raise ConfigError(
                f"catalog URL {url!r} is not supported; use sqlite:///PATH, postgresql+psycopg://… or https://… (REST)"
            )
        from pyiceberg.catalog.sql import SqlCatalog

        if url.startswith("sqlite:///"):
            from pathlib import Path

            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        if url.startswith("postgresql"):
            try:
                import psycopg  # noqa: F401
            except ImportError:
                raise ConfigError("a PostgreSQL catalog needs psycopg: pip install 'lakebench[postgres]'") from None
        try:  # processes opening a new catalog together race to create its tables: a retry finds them
            new_file = self._sqlite_file is not None and not os.path.exists(self._sqlite_file)
            with self._creating() if new_file else nullcontext():
                for attempt in Retrying(stop=stop_after_attempt(3), wait=wait_random(0, 0.1), reraise=True):
                    with attempt:
                        return SqlCatalog(name, uri=url, warehouse=self.url, **props)
            raise AssertionError("unreachable: the last attempt returns or raises")
        except Exception as exc:  # an unreachable database, a bad URL
            raise ConfigError(f"cannot open the catalog at {redact_url(url)}: {exc}") from exc

    def table(self, *, create: bool = True) -> Table:
        """The events table, created on first use."""
        from pyiceberg.exceptions import NoSuchTableError

        from lakebench.lake.schema import IDENTIFIER, NAMESPACE, SCHEMA, SORT_ORDER

        create = create and not self.settings.read_only
        sqlite = self._sqlite_file
        if not create and sqlite is not None and not os.path.exists(sqlite):  # a reader creates no catalog
            raise self.no_table(f"no catalog at {sqlite}")
        try:
            return self.catalog.load_table(IDENTIFIER)
        except NoSuchTableError:
            if not create:
                raise self.no_table(f"catalog {redact_url(self.settings.catalog_url)}") from None
        # Processes starting together (a server's workers, writers) may all find no table: on one
        # machine a SQLite catalog's creators take turns; elsewhere the loser of the catalog's
        # unique constraint finds the winner's table on a retry.
        retrying = Retrying(
            retry=retry_if_not_exception_type(TerminalError),  # not a foreign table
            stop=stop_after_attempt(3),
            wait=wait_random(0, 0.1),
            reraise=True,
        )
        with self._creating():
            for attempt in retrying:
                with attempt:
                    try:
                        return self.catalog.load_table(IDENTIFIER)
                    except NoSuchTableError:
                        pass
                    location = None if self.is_rest else self.table_location  # a REST catalog places its tables
                    if location is not None:
                        self._refuse_foreign_table(location)
                    self.catalog.create_namespace_if_not_exists(NAMESPACE)
                    return self.catalog.create_table_if_not_exists(
                        IDENTIFIER, schema=SCHEMA, location=location, sort_order=SORT_ORDER, properties=TABLE_PROPERTIES
                    )
        raise AssertionError("unreachable: the last attempt returns or raises")

    @property
    def table_location(self) -> str:
        """Where a SQL catalog keeps the table: ``<lake>/events`` for the default catalog name,
        ``<lake>/<name>/events`` for another, so catalogs sharing a lake folder never share files."""
        name = self.settings.catalog_name
        if name == DEFAULT_CATALOG_NAME:
            return f"{self.url}/events"
        return f"{self.url}/{_folder_name(name)}/events"

    @property
    def read_location(self) -> str:
        """The folder under which every file of the table lives: all a reader may read."""
        return self.table().location().rstrip("/") if self.is_rest else self.table_location

    @cached_property
    def data_prefix(self) -> str:
        """The object-store prefix (no trailing slash) of the table's data files."""
        return self.data_prefix_at(self.table().location())

    def data_prefix_at(self, table_location: str) -> str:
        """The data prefix of the table at ``table_location``."""
        key = self.key_of(table_location.rstrip("/") + "/data")
        return key if not key.startswith(("s3://", "file://", "gs://", "abfs")) else DATA_PREFIX

    def _refuse_foreign_table(self, location: str) -> None:
        """A new table must not be created where another catalog's table already lives: both would
        write one folder, and each one's compaction would delete the other's files."""
        prefix = self.key_of(location) + "/metadata/"
        found = [o.key for o in self.store.list(prefix) if o.key.endswith(".metadata.json")]
        if found:
            raise ConfigError(
                f"{location} already holds an Iceberg table that the catalog {redact_url(self.settings.catalog_url)} "
                f"(name {self.settings.catalog_name!r}) does not know: another catalog's. Point --catalog at the "
                "catalog that owns it, or set LAKEBENCH_CATALOG_NAME to a new name (its table goes to its own folder)"
            )

    def foreign_tables(self, table: Table) -> list[str]:
        """Metadata files under this table's location that belong to another table (another catalog
        pointed at the same folder): their data files must never be taken for orphans."""
        import orjson

        own = str(table.metadata.table_uuid)
        prefix = self.key_of(table.location().rstrip("/")) + "/metadata/"
        foreign = []
        for info in self.store.list(prefix):
            if info.key.endswith(".metadata.json"):
                try:
                    metadata = orjson.loads(self.store.get(info.key))
                    uuid = str(metadata.get("table-uuid"))
                except (orjson.JSONDecodeError, AttributeError):
                    continue
                # A table with no snapshot names no data file (the loser of a creation race on a
                # catalog shared by machines leaves one): nothing of it can be taken for an orphan.
                if uuid != own and metadata.get("snapshots"):
                    foreign.append(info.key)
        return foreign

    def commit_with_retry(self, attempt: Callable[[Table], T], what: str, attempts: int = COMMIT_ATTEMPTS) -> T:
        """Run ``attempt`` on freshly loaded table metadata until its commit wins.

        pyiceberg does not retry a commit that loses a race with another writer (it raises
        ``CommitFailedException``): reload and try again, backing off a little each time.
        """
        from pyiceberg.exceptions import CommitFailedException

        if self.settings.read_only:  # pyiceberg writes metadata through its own FileIO: refuse here
            raise StorageError(f"refused the {what}: the lake was opened read-only (LAKEBENCH_READ_ONLY)")
        for n in range(1, attempts + 1):
            try:
                table = self.table()
                # A table created before lakebench set this property gets it with this commit.
                table.metadata.properties["commit.retry.num-retries"] = "0"
                return attempt(table)
            except CommitFailedException as exc:
                if n == attempts:
                    raise TransientError(f"{what} lost {n} commit races with other writers: {exc}") from exc
                time.sleep(0.02 * n)  # back-off between commit attempts, not a measured figure
        raise AssertionError("unreachable")

    def snapshot_files(self) -> tuple[int | None, dict[str, int]]:
        """The current snapshot's id and its live data files (URL -> size in bytes)."""
        table = self.table()
        snapshot = table.current_snapshot()
        if snapshot is None:
            return None, {}
        files = {str(t.file.file_path): int(t.file.file_size_in_bytes) for t in table.scan().plan_files()}
        return int(snapshot.snapshot_id), files

    def key_of(self, url: str) -> str:
        """The object-store key of a file URL inside the lake."""
        root = self.store.root_url + "/"
        return url[len(root) :] if url.startswith(root) else url

    def close(self) -> None:
        """Release the catalog's database connections."""
        if "catalog" in self.__dict__:
            engine = getattr(self.catalog, "engine", None)
            if engine is not None:
                engine.dispose()

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _folder_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "catalog"


def redact_url(url: str) -> str:
    """Hide a password in a database URL (postgresql://user:secret@host/db)."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url
