"""A pipeline's state folder — write-ahead log, writer id, dedupe window — and what binds it to one lake.

The log holds acknowledged events that are not committed yet: replayed into another lake, or by
two servers at once, they would land in the wrong table or twice. So the folder

- lives, by default, under ``$XDG_STATE_HOME/lakebench/pipelines/<lake>-<hash>``, the hash of the
  lake's URL and its table's UUID (not relative to wherever the server was started);
- is locked (an OS file lock, released when the process ends, however it ends): a second server
  on it is refused with the PID of the one running;
- records the lake it belongs to (``lake.json``: URL, table UUID, catalog): a log holding events
  is never replayed into another lake. An empty one may be re-bound (its dedupe window is reset).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Final

import orjson

from lakebench.core.errors import ConfigError
from lakebench.core.process import LockHeld, release_pid_lock, take_pid_lock
from lakebench.lake.catalog import Lake, redact_url

log = logging.getLogger(__name__)
IDENTITY: Final = "lake.json"
LOCK: Final = "lock"


class StateInUse(ConfigError):
    """Another process holds the state folder."""


class StateOfAnotherLake(ConfigError):
    """The state folder's log holds events of another lake."""


@dataclass(frozen=True, slots=True)
class LakeIdentity:
    lake: str
    table_uuid: str
    catalog: str
    catalog_name: str

    @classmethod
    def of(cls, lake: Lake) -> LakeIdentity:
        table = lake.table()
        return cls(
            lake=lake.url,
            table_uuid=str(table.metadata.table_uuid),
            catalog=redact_url(lake.settings.catalog_url),
            catalog_name=lake.settings.catalog_name,
        )

    def same_table(self, other: LakeIdentity) -> bool:
        return (self.lake, self.table_uuid) == (other.lake, other.table_uuid)


def default_state_dir(lake: Lake) -> Path:
    identity = LakeIdentity.of(lake)
    root = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "lakebench" / "pipelines"
    digest = hashlib.sha256(f"{identity.lake}\n{identity.table_uuid}".encode()).hexdigest()[:12]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in identity.lake.rstrip("/").rsplit("/", 1)[-1])
    return root / f"{name or 'lake'}-{digest}"


def log_holds_events(folder: Path) -> bool:
    return any(p.stat().st_size > 0 for p in (folder / "wal").glob("wal-*.log"))


class StateFolder:
    """The folder, locked and checked against ``lake`` for as long as this object is open."""

    def __init__(self, folder: Path, lake: Lake, writer_property: str | None = None) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._lock: IO[str] | None = self._take_lock(folder)
        try:
            self._bind(lake, writer_property)
        except BaseException:
            self.release()
            raise

    @staticmethod
    def _take_lock(folder: Path) -> IO[str]:
        try:
            return take_pid_lock(folder / LOCK)
        except LockHeld as held:
            raise StateInUse(
                f"another pipeline (PID {held.holder}) is using the state folder {folder}; stop it first, or give "
                "this server its own --state-dir"
            ) from None

    def _bind(self, lake: Lake, writer_property: str | None) -> None:
        current = LakeIdentity.of(lake)
        path = self.folder / IDENTITY
        if path.exists():
            recorded = LakeIdentity(**orjson.loads(path.read_bytes()))
            if recorded.same_table(current):
                return
            if log_holds_events(self.folder):
                raise StateOfAnotherLake(
                    f"the state folder {self.folder} holds acknowledged events of {recorded.lake} (table "
                    f"{recorded.table_uuid}), not of {current.lake}: start the server with --lake {recorded.lake} "
                    "to commit them, or give this lake its own --state-dir"
                )
            log.warning(
                "state folder %s re-bound from %s to %s (its log was empty)", self.folder, recorded.lake, lake.url
            )
            shutil.rmtree(self.folder / "dedupe", ignore_errors=True)  # the ids of another table
        elif log_holds_events(self.folder):
            # A folder from before identities were recorded: adopt it only for a table it has committed to.
            known = writer_property is not None and writer_property in lake.table().properties
            if not known:
                raise StateOfAnotherLake(
                    f"the state folder {self.folder} holds acknowledged events but does not say which lake they "
                    f"belong to, and {current.lake} has no commit from its writer: start the server on the lake it "
                    "was used with"
                )
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(asdict(current), option=orjson.OPT_INDENT_2))
        os.replace(tmp, path)

    def release(self) -> None:
        if self._lock is not None:
            release_pid_lock(self._lock)
            self._lock = None
