"""Shared fixtures: sample events, temporary lakes on a folder and on a real S3-protocol server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lakebench.core.config import S3Settings, Settings
from lakebench.core.models import Event

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def private_cache_and_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Index caches and default catalogs of the tests stay out of the user's home folder."""
    saved = {k: os.environ.get(k) for k in ("XDG_CACHE_HOME", "XDG_STATE_HOME")}
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("state"))
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real third-party files in ../shared/data (override with LAKEBENCH_SHARED_DATA)."""
    path = Path(os.environ.get("LAKEBENCH_SHARED_DATA") or REPO.parent / "shared" / "data")
    if not path.is_dir():
        pytest.skip(f"real data folder {path} is absent; set LAKEBENCH_SHARED_DATA to run these tests")
    return path


def require_service(name: str, url: str, exc: Exception) -> None:
    """A test that needs a server this machine lacks: skipped on a laptop, a failure under CI=true
    (where the server is part of the machine, and a skipped test would prove nothing)."""
    message = f"{name} is not reachable at {url} ({exc})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI=true requires it")
    pytest.skip(f"{message}; start one, or point the test at one")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server for catalog tests (LAKEBENCH_TEST_POSTGRES, default 127.0.0.1:5432/test)."""
    url = os.environ.get("LAKEBENCH_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    try:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        require_service("PostgreSQL", url, exc)
    return url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis server for cache tests (LAKEBENCH_TEST_REDIS, default redis://127.0.0.1:6379/0)."""
    url = os.environ.get("LAKEBENCH_TEST_REDIS", "redis://127.0.0.1:6379/0")
    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:
        require_service("Redis", url, exc)
    return url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-protocol server (moto) on loopback, started for this test session."""
    from lakebench.storage.embedded import EmbeddedS3

    with EmbeddedS3() as server:
        yield server.url


@pytest.fixture
def s3_settings(s3_endpoint: str, tmp_path: Path) -> Settings:
    """A fresh bucket on the S3 server and a lake inside it; the catalog is SQLite in tmp_path."""
    import boto3

    s3 = S3Settings(endpoint=s3_endpoint, region="us-east-1", access_key_id="test", secret_access_key="test")
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).create_bucket(Bucket=bucket)
    return Settings(lake=f"s3://{bucket}/lake", catalog=f"sqlite:///{tmp_path}/catalog.db", s3=s3)


@pytest.fixture
def local_settings(tmp_path: Path) -> Settings:
    return Settings(lake=str(tmp_path / "lake"))


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def any_settings(request: pytest.FixtureRequest) -> Settings:
    """The same behaviour test, on a folder and on the S3-protocol server."""
    name = "local_settings" if request.param == "local" else "s3_settings"
    settings: Settings = request.getfixturevalue(name)
    return settings


T0 = datetime(2025, 10, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
def make_event() -> Callable[..., Event]:
    counter = iter(range(1_000_000))

    def make(ns: str = "en.wikipedia.org", entity_id: str = "TypeScript", **fields: object) -> Event:
        from lakebench.core.ids import new_event_id

        n = next(counter)
        ts = fields.pop("ts", T0 + timedelta(seconds=n))
        assert isinstance(ts, datetime)
        values: dict[str, object] = {
            "event_id": new_event_id(ts),
            "entity_ns": ns,
            "entity_id": entity_id,
            "ts": ts,
            "type": "update",
            "title": entity_id,
            "body": f"body {n} of {entity_id}",
            "version": n + 1,
            "attributes": {"n": n},
        }
        values.update(fields)
        return Event(**values)  # type: ignore[arg-type]

    return make
