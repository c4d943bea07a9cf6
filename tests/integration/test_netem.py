"""Network profiles: the S3-protocol endpoint that applies one forwards every request faithfully,
counts what passes, and adds the profile's time to first byte and bandwidth — enough to move a
decision. Speed itself is measured in bench/profiles.py; these tests check the behaviour."""

from __future__ import annotations

import dataclasses
import socket
import statistics
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import boto3
import numpy as np
import pytest

from lakebench.benchmark.workloads import key_space
from lakebench.core.config import Settings
from lakebench.core.errors import ConfigError
from lakebench.engines import LOCAL_ENGINES, open_engine
from lakebench.generate.synthetic import GeneratorSpec, generate
from lakebench.lake.catalog import Lake
from lakebench.lake.writer import LakeWriter
from lakebench.storage.netem import PROFILES, NetworkProfile, get_profile, profiled, request_kind

pytestmark = pytest.mark.s3


def through(settings: Settings, endpoint: str) -> Settings:
    return dataclasses.replace(settings, s3=dataclasses.replace(settings.s3, endpoint=endpoint))


@pytest.fixture
def s3_lake(s3_settings: Settings) -> Iterator[Settings]:
    with Lake(s3_settings) as lake:
        LakeWriter(lake).write(generate(GeneratorSpec(count=120, avg_size_kb=1, seed=3)))
    yield s3_settings


def test_the_sampled_time_to_first_byte_follows_the_profile() -> None:
    profile = NetworkProfile("t", 30.0, 150.0, None, "test")
    rng = np.random.default_rng(1)
    draws = np.array([profile.ttfb_s(rng) for _ in range(20_000)]) * 1000
    assert abs(np.percentile(draws, 50) - 30) < 1.5
    assert abs(np.percentile(draws, 99) - 150) < 20
    assert get_profile("local").ttfb_s(rng) == 0.0
    with pytest.raises(ConfigError, match="unknown network profile"):
        get_profile("dial-up")
    with pytest.raises(ConfigError):
        NetworkProfile("bad", 50, 10, None, "p99 under p50")


def test_request_kinds() -> None:
    assert request_kind("GET", "/bucket/lake/events/data/x.parquet") == "GET"
    assert request_kind("GET", "/bucket?list-type=2&prefix=lake/") == "LIST"
    assert request_kind("GET", "/bucket/") == "LIST"
    assert request_kind("HEAD", "/bucket/key") == "HEAD"


@pytest.mark.parametrize("engine_name", LOCAL_ENGINES)
def test_every_engine_reads_through_the_endpoint_and_answers_the_same(s3_lake: Settings, engine_name: str) -> None:
    with Lake(s3_lake) as lake:
        keys = key_space(lake).keys[:15]
        direct = open_engine(engine_name, lake)
        try:
            expected = [direct.lookup(*k) for k in keys]
        finally:
            direct.close()
    with profiled(s3_lake.s3.endpoint or "", "local") as endpoint, Lake(through(s3_lake, endpoint.url)) as lake:
        engine = open_engine(engine_name, lake)
        try:
            answers = [engine.lookup(*k) for k in keys]
        finally:
            engine.close()
        assert answers == expected and all(a is not None for a in answers)
        seen = endpoint.stats.snapshot()
    assert sum(seen["requests"].values()) > 0 and seen["bytes_out"] > 0  # the engine's reads went through it


def test_bodies_are_paced_at_the_profile_bandwidth_and_heads_keep_their_length(s3_settings: Settings) -> None:
    bucket = s3_settings.lake.removeprefix("s3://").split("/")[0]
    data = bytes(range(256)) * 8192  # 2 MiB
    client = boto3.client(
        "s3",
        endpoint_url=s3_settings.s3.endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    client.put_object(Bucket=bucket, Key="blob", Body=data)
    slow = NetworkProfile("slow", 0.0, 0.0, 20.0, "test: 20 MB/s")
    with profiled(s3_settings.s3.endpoint or "", slow) as endpoint:
        through_client = boto3.client(
            "s3",
            endpoint_url=endpoint.url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        started = time.perf_counter()
        body = through_client.get_object(Bucket=bucket, Key="blob")["Body"].read()
        elapsed = time.perf_counter() - started
        head = through_client.head_object(Bucket=bucket, Key="blob")
        ranged = through_client.get_object(Bucket=bucket, Key="blob", Range="bytes=10-19")["Body"].read()
        listed = through_client.list_objects_v2(Bucket=bucket)
        stats = endpoint.stats.snapshot()
    assert body == data and ranged == data[10:20] and head["ContentLength"] == len(data)
    assert [o["Key"] for o in listed["Contents"]] == ["blob"]
    assert elapsed >= len(data) / 20e6 * 0.9  # 2 MiB at 20 MB/s: about 0.1 s
    assert stats["requests"] == {"GET": 2, "HEAD": 1, "LIST": 1}
    assert stats["bytes_out"] >= len(data) + 10


def test_the_r2_profile_raises_lookup_latency_and_can_flip_the_decision(s3_lake: Settings) -> None:
    medians = {}
    for name in ("local", "r2"):
        with (
            profiled(s3_lake.s3.endpoint or "", name, seed=3) as endpoint,
            Lake(through(s3_lake, endpoint.url)) as lake,
        ):
            keys = key_space(lake).keys[:12]
            engine = open_engine("lake-sql", lake)
            try:
                engine.lookup(*keys[0])  # warm: metadata, extensions
                samples = []
                for key in keys:
                    started = time.perf_counter()
                    assert engine.lookup(*key) is not None
                    samples.append((time.perf_counter() - started) * 1000)
            finally:
                engine.close()
            medians[name] = statistics.median(samples)
    # Every lake-sql lookup makes at least one request: r2's median adds about its ttfb p50 (150 ms).
    assert medians["r2"] - medians["local"] > PROFILES["r2"].ttfb_p50_ms / 3, medians
    # The decision that flips with a threshold between the two: tests/integration/test_run.py.


def test_an_upstream_that_closed_its_connection_is_reached_again(s3_settings: Settings) -> None:
    bucket = s3_settings.lake.removeprefix("s3://").split("/")[0]
    with profiled(s3_settings.s3.endpoint or "", "local") as endpoint:
        with urllib.request.urlopen(f"{endpoint.url}/{bucket}?list-type=2") as answer:
            assert answer.status == 200
        for _ in range(2):  # the forwarding call itself, on this thread's upstream connection
            status, *_ = endpoint.upstream_call("GET", f"/{bucket}?list-type=2&x={uuid.uuid4().hex}", b"", {})
            assert status == 200
            # A kept-alive connection the upstream has dropped: the next request on it fails, once.
            dropped = socket.create_connection((endpoint.upstream.hostname or "", endpoint.upstream.port or 80))
            dropped.shutdown(socket.SHUT_RDWR)
            connection = endpoint._local.connection
            if connection.sock is not None:
                connection.sock.close()
            connection.sock = dropped
        assert endpoint.stats.snapshot()["requests"] == {"LIST": 1}


def test_a_chunked_upload_arrives_whole_and_each_client_connection_frees_its_upstream_one(
    s3_settings: Settings,
) -> None:
    import http.client

    bucket = s3_settings.lake.removeprefix("s3://").split("/")[0]
    data = b"chunked body " * 10_000
    with profiled(s3_settings.s3.endpoint or "", "local") as endpoint:
        port = int(endpoint.url.rsplit(":", 1)[1])
        for n in range(5):  # five client connections, each closed after its request
            client = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            client.putrequest("PUT", f"/{bucket}/chunked-{n}")
            client.putheader("Transfer-Encoding", "chunked")
            client.endheaders()
            for offset in range(0, len(data), 7_000):
                piece = data[offset : offset + 7_000]
                client.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            client.send(b"0\r\n\r\n")
            answer = client.getresponse()
            answer.read()
            assert answer.status == 200
            client.close()
        deadline = time.monotonic() + 5
        while endpoint._connections and time.monotonic() < deadline:  # handler threads finish after the close
            time.sleep(0.01)
        assert endpoint._connections == []  # no upstream connection outlives its client's
    stored = (
        boto3.client(
            "s3",
            endpoint_url=s3_settings.s3.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        .get_object(Bucket=bucket, Key="chunked-4")["Body"]
        .read()
    )
    assert stored == data


def test_an_unreachable_upstream_is_a_502_not_a_dropped_connection() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    with profiled(f"http://127.0.0.1:{port}", "local") as endpoint:
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(f"{endpoint.url}/bucket/key", timeout=30)
        assert failed.value.code == 502
        failed.value.close()
