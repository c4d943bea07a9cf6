"""An S3-protocol bucket (AWS S3, Cloudflare R2, MinIO) as an object store, through boto3."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakebench.core.config import S3Settings
from lakebench.core.errors import ConfigError, ObjectNotFound, StorageError, StorageUnavailable
from lakebench.storage.base import ObjectInfo, RequestStats, join_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


class S3Store:
    def __init__(self, bucket: str, prefix: str, settings: S3Settings) -> None:
        import boto3
        from botocore.config import Config

        self._bucket = bucket
        self._prefix = prefix.strip("/")
        self._stats = RequestStats()
        self._client: S3Client = boto3.client(
            "s3",
            endpoint_url=settings.endpoint,
            region_name=settings.region,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}),
        )

    @property
    def root_url(self) -> str:
        return f"s3://{self._bucket}" + (f"/{self._prefix}" if self._prefix else "")

    @property
    def stats(self) -> RequestStats:
        return self._stats

    @property
    def bucket(self) -> str:
        return self._bucket

    def _key(self, key: str) -> str:
        if not key or key.startswith("/"):
            raise StorageError(f"invalid object key {key!r}: keys are relative paths")
        return join_key(self._prefix, key)

    def url_for(self, key: str) -> str:
        return f"s3://{self._bucket}/{self._key(key)}"

    def _call(self, kind: str, key: str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

        try:
            return fn(**kwargs)
        except (NoCredentialsError, PartialCredentialsError) as exc:  # a setting to fix, not worth a retry
            raise ConfigError(
                f"{kind} {self.url_for(key)}: {exc}; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or an AWS profile) for this bucket"
            ) from None
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND:
                raise ObjectNotFound(f"no object {key!r} in {self.root_url}") from None
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if status >= 500 or code in {"SlowDown", "RequestTimeout"}:
                raise StorageUnavailable(f"{kind} {self.url_for(key)} failed: {code} (retry later)") from exc
            raise StorageError(f"{kind} {self.url_for(key)} was refused: {code}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"{kind} {self.url_for(key)} failed: {exc}") from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call("PUT", key, self._client.put_object, Bucket=self._bucket, Key=self._key(key), Body=data)
        self._stats.record("PUT", written=len(data))

    def staging_path(self, suffix: str = "") -> Path:
        fd, name = tempfile.mkstemp(prefix="lakebench-", suffix=suffix)
        os.close(fd)
        return Path(name)

    def publish_file(self, key: str, path: Path) -> None:
        # upload_file switches to multipart for large files; S3 publishes the object only when complete.
        from boto3.exceptions import S3UploadFailedError

        size = path.stat().st_size
        try:
            self._call(
                "PUT",
                key,
                self._client.upload_file,
                Filename=str(path),
                Bucket=self._bucket,
                Key=self._key(key),
            )
        except S3UploadFailedError as exc:
            raise StorageUnavailable(f"PUT {self.url_for(key)} failed: {exc}") from exc
        finally:
            path.unlink(missing_ok=True)
        self._stats.record("PUT", written=size)

    def get(self, key: str) -> bytes:
        response = self._call("GET", key, self._client.get_object, Bucket=self._bucket, Key=self._key(key))
        data: bytes = response["Body"].read()
        self._stats.record("GET", read=len(data))
        return data

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        response = self._call(
            "GET",
            key,
            self._client.get_object,
            Bucket=self._bucket,
            Key=self._key(key),
            Range=f"bytes={start}-{start + length - 1}",
        )
        data: bytes = response["Body"].read()
        self._stats.record("GET", read=len(data))
        return data

    def size(self, key: str) -> int:
        response = self._call("HEAD", key, self._client.head_object, Bucket=self._bucket, Key=self._key(key))
        self._stats.record("HEAD")
        return int(response["ContentLength"])

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full_prefix = join_key(self._prefix, prefix) if prefix else (f"{self._prefix}/" if self._prefix else "")
        if prefix.endswith("/") and not full_prefix.endswith("/"):
            full_prefix += "/"
        strip = len(self._prefix) + 1 if self._prefix else 0
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": full_prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call("LIST", prefix or "/", self._client.list_objects_v2, **kwargs)
            self._stats.record("LIST")
            for item in page.get("Contents", []):
                yield ObjectInfo(item["Key"][strip:], int(item["Size"]), item["LastModified"].timestamp())
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    def delete(self, key: str) -> None:
        self._call("DELETE", key, self._client.delete_object, Bucket=self._bucket, Key=self._key(key))
        self._stats.record("DELETE")
