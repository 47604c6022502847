"""Where the SDK keeps data and code: an S3 API (AWS, MinIO) or a directory (local mode).

Both stores speak in buckets and keys, as ``Session.upload_data`` does, and hand out the
URI a kubemaker manifest takes: ``s3://bucket/key`` or ``file:///dir/bucket/key``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse


def split_uri(uri: str) -> tuple[str, str, str]:
    """(scheme, bucket, key) of ``s3://bucket/key``; ValueError for anything else."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{uri!r} is not an s3://bucket/key URI")
    return "s3", parsed.netloc, parsed.path.lstrip("/")


class Store(Protocol):
    def uri(self, bucket: str, key: str) -> str: ...
    def ensure_bucket(self, bucket: str) -> None: ...
    def upload_file(self, path: Path, bucket: str, key: str) -> None: ...
    def upload_bytes(self, body: bytes, bucket: str, key: str) -> None: ...
    def keys(self, bucket: str, prefix: str) -> Iterator[str]: ...
    def download_file(self, bucket: str, key: str, path: Path) -> None: ...
    def read(self, bucket: str, key: str) -> bytes: ...
    def locate(self, uri: str) -> tuple[str, str]: ...


class S3Store:
    """An S3 API through boto3 (AWS, or MinIO and the like with an endpoint URL)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def uri(self, bucket: str, key: str) -> str:
        return f"s3://{bucket}/{key}" if key else f"s3://{bucket}"

    def locate(self, uri: str) -> tuple[str, str]:
        _, bucket, key = split_uri(uri)
        return bucket, key

    def ensure_bucket(self, bucket: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise
            self.client.create_bucket(Bucket=bucket)

    def upload_file(self, path: Path, bucket: str, key: str) -> None:
        self.client.upload_file(str(path), bucket, key)

    def upload_bytes(self, body: bytes, bucket: str, key: str) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=body)

    def keys(self, bucket: str, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield str(item["Key"])

    def download_file(self, bucket: str, key: str, path: Path) -> None:
        self.client.download_file(bucket, key, str(path))

    def read(self, bucket: str, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body


class DirStore:
    """Buckets as directories under ``root``: object storage for local mode, no server."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def uri(self, bucket: str, key: str) -> str:
        return (self.root / bucket / key).as_uri() if key else (self.root / bucket).as_uri()

    def locate(self, uri: str) -> tuple[str, str]:
        parsed = urlparse(uri)
        if parsed.scheme == "s3":
            return parsed.netloc, parsed.path.lstrip("/")
        if parsed.scheme != "file":
            raise ValueError(f"{uri!r} is neither a file:// nor an s3:// URI")
        try:
            relative = Path(parsed.path).resolve().relative_to(self.root)
        except ValueError:
            raise ValueError(f"{uri!r} is not under this session's storage {self.root}") from None
        bucket, _, key = relative.as_posix().partition("/")
        return bucket, key

    def _path(self, bucket: str, key: str) -> Path:
        path = (self.root / bucket / key).resolve()
        if not path.is_relative_to(self.root / bucket):
            raise ValueError(f"key {key!r} leaves the bucket {bucket!r}")
        return path

    def ensure_bucket(self, bucket: str) -> None:
        (self.root / bucket).mkdir(parents=True, exist_ok=True)

    def upload_file(self, path: Path, bucket: str, key: str) -> None:
        target = self._path(bucket, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)

    def upload_bytes(self, body: bytes, bucket: str, key: str) -> None:
        target = self._path(bucket, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)

    def keys(self, bucket: str, prefix: str) -> Iterator[str]:
        base = self.root / bucket
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            key = path.relative_to(base).as_posix()
            if path.is_file() and key.startswith(prefix):
                yield key

    def download_file(self, bucket: str, key: str, path: Path) -> None:
        shutil.copyfile(self._path(bucket, key), path)

    def read(self, bucket: str, key: str) -> bytes:
        return self._path(bucket, key).read_bytes()
