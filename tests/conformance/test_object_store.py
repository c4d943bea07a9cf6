"""One behaviour suite over every object store: a folder and the S3-protocol server."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakebench.core.config import Settings
from lakebench.core.errors import ObjectNotFound
from lakebench.storage import ObjectStore, open_store


@pytest.fixture
def store(any_settings: Settings) -> ObjectStore:
    return open_store(any_settings.lake, any_settings.s3)


def test_put_get_range_size(store: ObjectStore) -> None:
    store.put_bytes("events/data/a.bin", b"0123456789")
    assert store.get("events/data/a.bin") == b"0123456789"
    assert store.get_range("events/data/a.bin", 3, 4) == b"3456"
    assert store.get_range("events/data/a.bin", 8, 100) == b"89"
    assert store.size("events/data/a.bin") == 10
    assert store.exists("events/data/a.bin") and not store.exists("events/data/b.bin")


def test_missing_objects_raise_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.get("nope")
    with pytest.raises(ObjectNotFound):
        store.get_range("nope", 0, 1)
    with pytest.raises(ObjectNotFound):
        store.size("nope")


def test_list_is_recursive_and_prefixed(store: ObjectStore) -> None:
    for key in ("events/data/1.parquet", "events/data/2.parquet", "events/metadata/v1.json", "other/x"):
        store.put_bytes(key, key.encode())
    listed = {(o.key, o.size) for o in store.list("events/")}
    assert listed == {
        ("events/data/1.parquet", 21),
        ("events/data/2.parquet", 21),
        ("events/metadata/v1.json", 23),
    }


def test_publish_file_consumes_the_staged_file(store: ObjectStore) -> None:
    staged = store.staging_path(".parquet")
    staged.write_bytes(b"x" * 1000)
    store.publish_file("events/data/f.parquet", staged)
    assert not Path(staged).exists()
    assert store.get("events/data/f.parquet") == b"x" * 1000
    assert [o.key for o in store.list("events/")] == ["events/data/f.parquet"]  # no staging leftovers


def test_delete_and_overwrite(store: ObjectStore) -> None:
    store.put_bytes("k", b"one")
    store.put_bytes("k", b"two")
    assert store.get("k") == b"two"
    store.delete("k")
    assert not store.exists("k")
    store.delete("k")  # deleting what is gone is not an error


def test_requests_and_bytes_are_counted(store: ObjectStore) -> None:
    store.stats.reset()
    store.put_bytes("k", b"abcdef")
    store.get("k")
    store.get_range("k", 0, 2)
    counted = store.stats.snapshot()
    assert counted["PUT"] == 1 and counted["GET"] == 2
    assert counted["bytes_written"] == 6 and counted["bytes_read"] == 8


def test_url_for_names_the_object_for_other_readers(store: ObjectStore, any_settings: Settings) -> None:
    assert store.url_for("events/data/x.parquet") == f"{any_settings.lake_url}/events/data/x.parquet"


def test_keys_cannot_escape_the_root(store: ObjectStore) -> None:
    from lakebench.core.errors import StorageError

    with pytest.raises(StorageError):
        store.put_bytes("/etc/passwd", b"")
