"""A folder as an object store: atomic writes through a temporary file and rename."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from lakebench.core.errors import ObjectNotFound, StorageError
from lakebench.storage.base import ObjectInfo, RequestStats

_TMP_PREFIX = ".tmp-"
_STAGING = ".staging"


def _umask() -> int:
    """The process's umask, read without changing it where Linux reports it in /proc; elsewhere by
    the set-and-restore dance (called once per store, before its writer threads exist)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


class LocalStore:
    def __init__(self, root: Path) -> None:
        self._root = root.resolve()
        self._file_mode = 0o666 & ~_umask()  # what open() gives a new file; mkstemp gives 0600 whatever the umask
        self._stats = RequestStats()

    @property
    def root_url(self) -> str:
        return f"file://{self._root}"

    @property
    def root(self) -> Path:
        return self._root

    @property
    def stats(self) -> RequestStats:
        return self._stats

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise StorageError(f"invalid object key {key!r}: keys are relative paths without '..'")
        return self._root / key

    def url_for(self, key: str) -> str:
        return f"file://{self._path(key)}"

    def _publish(self, key: str, write: Callable[[BinaryIO], object]) -> int:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                os.fchmod(out.fileno(), self._file_mode)
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target.stat().st_size

    def put_bytes(self, key: str, data: bytes) -> None:
        self._publish(key, lambda out: out.write(data))
        self._stats.record("PUT", written=len(data))

    def staging_path(self, suffix: str = "") -> Path:
        staging = self._root / _STAGING
        staging.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=suffix, dir=staging)
        os.close(fd)
        return Path(name)

    def publish_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with path.open("rb") as f:
            os.fchmod(f.fileno(), self._file_mode)
            os.fsync(f.fileno())
        size = path.stat().st_size
        try:
            os.replace(path, target)  # atomic on one filesystem
        except OSError:  # another filesystem: copy beside the target, then rename

            def copy(out: BinaryIO) -> None:
                with path.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)

            self._publish(key, copy)
            path.unlink()
        self._stats.record("PUT", written=size)

    def get(self, key: str) -> bytes:
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r} in {self.root_url}") from None
        self._stats.record("GET", read=len(data))
        return data

    def get_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with self._path(key).open("rb") as f:
                f.seek(start)
                data = f.read(length)
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r} in {self.root_url}") from None
        self._stats.record("GET", read=len(data))
        return data

    def size(self, key: str) -> int:
        self._stats.record("HEAD")
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r} in {self.root_url}") from None

    def exists(self, key: str) -> bool:
        self._stats.record("HEAD")
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._stats.record("LIST")
        if not self._root.exists():
            return
        for dirpath, dirs, files in os.walk(self._root):
            dirs[:] = sorted(d for d in dirs if d != _STAGING)
            for name in sorted(files):
                if name.startswith(_TMP_PREFIX):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self._root).as_posix()
                if key.startswith(prefix):
                    st = full.stat()
                    yield ObjectInfo(key, st.st_size, st.st_mtime)

    def delete(self, key: str) -> None:
        self._stats.record("DELETE")
        self._path(key).unlink(missing_ok=True)
