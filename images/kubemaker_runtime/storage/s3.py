"""``s3://bucket/prefix`` through boto3: AWS or any S3-compatible endpoint (MinIO).

Credentials come from boto3's standard chain (environment, shared files, IRSA web
identity, instance metadata). Transient failures are retried by botocore's
``standard`` retry mode; big objects move in parallel multipart transfers.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, cast

import boto3
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from kubemaker_runtime.storage.base import (
    AccessDeniedError,
    BadRequestError,
    BucketNotFoundError,
    NotFoundError,
    StoredObject,
    TransientError,
    split_uri,
    temp_path_for,
)

if TYPE_CHECKING:
    from kubemaker_runtime.protocol import StorageConfig

logger = logging.getLogger(__name__)

ENDPOINT_ENV = "AWS_ENDPOINT_URL_S3"
MiB = 1024 * 1024
_NOT_FOUND_CODES = {"NoSuchBucket", "NoSuchKey", "404", "NotFound"}
_DENIED_CODES = {
    "AccessDenied",
    "403",
    "Forbidden",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
}


def parse_s3_uri(uri: str) -> tuple[str, str]:
    scheme, rest = split_uri(uri)
    if scheme != "s3":
        raise NotFoundError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise NotFoundError(f"{uri!r} names no bucket")
    return bucket, key


def relative_paths(prefix: str, keys: list[str]) -> dict[str, str]:
    """Which of the listed keys a URI means, and where each lands under a channel.

    As SageMaker users expect (and SageMaker's local mode does): a prefix naming one
    object stages that object by its own name; otherwise the prefix is a folder,
    ``s3://b/data/train`` and ``s3://b/data/train/`` alike, and objects land at their
    path below it (``data/train/x/1.csv`` -> ``x/1.csv``) while a sibling such as
    ``data/train-old/`` is not included. Only when neither matches is the prefix a
    plain key prefix (``s3://b/data/part-``), objects landing by their path past its
    last "/".
    """
    keys = [k for k in keys if not k.endswith("/")]  # "folder" markers are not data
    if prefix == "" or prefix.endswith("/"):
        return {k: k[len(prefix) :] for k in keys if k.startswith(prefix)}
    folder = prefix + "/"
    chosen = {k: k[len(folder) :] for k in keys if k.startswith(folder)}
    if prefix in keys:
        chosen[prefix] = prefix.rsplit("/", 1)[-1]
    if chosen:
        return chosen
    cut = prefix.rfind("/") + 1
    return {k: k[cut:] for k in keys if k.startswith(prefix)}


class S3Store:
    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        max_concurrency: int = 8,
        client: Any | None = None,
    ) -> None:
        endpoint_url = endpoint_url or os.environ.get(ENDPOINT_ENV) or None
        if client is None:
            config = Config(
                retries={"mode": "standard", "max_attempts": _max_attempts()},
                max_pool_connections=max(10, max_concurrency * 2),
                # A custom endpoint (MinIO) rarely has wildcard DNS for virtual hosts.
                s3={"addressing_style": "path"} if endpoint_url else None,
                connect_timeout=10,
                read_timeout=60,
            )
            client = boto3.session.Session().client(
                "s3", endpoint_url=endpoint_url, region_name=region or None, config=config
            )
        self.client = client
        self.endpoint_url = endpoint_url
        self.transfer = TransferConfig(
            multipart_threshold=16 * MiB,
            multipart_chunksize=16 * MiB,
            max_concurrency=max_concurrency,
            use_threads=True,
        )

    @classmethod
    def from_config(cls, storage: StorageConfig) -> S3Store:
        return cls(endpoint_url=storage.s3_endpoint_url, region=storage.region)

    def list(self, uri: str) -> list[StoredObject]:
        bucket, prefix = parse_s3_uri(uri)
        listed: dict[str, dict[str, Any]] = {}
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    listed[item["Key"]] = item
        except botocore.exceptions.ClientError as exc:
            _raise_for(exc, f"s3://{bucket}/{prefix}", bucket=bucket)
        except botocore.exceptions.BotoCoreError as exc:
            raise TransientError(f"listing s3://{bucket}/{prefix}: {exc}") from exc
        objects = [
            StoredObject(
                uri=f"s3://{bucket}/{key}",
                key=rel,
                size=int(listed[key]["Size"]),
                mtime=listed[key]["LastModified"].timestamp(),
                etag=str(listed[key].get("ETag", "")).strip('"') or None,
            )
            for key, rel in relative_paths(prefix, list(listed)).items()
        ]
        objects.sort(key=lambda o: o.key)
        return objects

    def download(self, obj: StoredObject, dest: Path) -> int:
        bucket, key = parse_s3_uri(obj.uri)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path_for(dest)
        try:
            self.client.download_file(bucket, key, str(tmp), Config=self.transfer)
            os.utime(tmp, (obj.mtime, obj.mtime))
            tmp.replace(dest)
        except botocore.exceptions.ClientError as exc:
            _raise_for(exc, obj.uri, bucket=bucket)
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise TransientError(f"downloading {obj.uri}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return obj.size

    def open(self, obj: StoredObject) -> BinaryIO:
        bucket, key = parse_s3_uri(obj.uri)
        try:
            response = self.client.get_object(Bucket=bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            _raise_for(exc, obj.uri, bucket=bucket)
        except botocore.exceptions.BotoCoreError as exc:
            raise TransientError(f"reading {obj.uri}: {exc}") from exc
        return cast(BinaryIO, response["Body"])

    def upload(self, src: Path, uri: str) -> int:
        bucket, key = parse_s3_uri(uri)
        size = src.stat().st_size
        try:
            self.client.upload_file(str(src), bucket, key, Config=self.transfer)
        except botocore.exceptions.ClientError as exc:
            _raise_for(exc, uri, bucket=bucket)
        except boto3.exceptions.S3UploadFailedError as exc:
            # The transfer manager wraps the ClientError in text; recover the kind.
            text = str(exc)
            if "NoSuchBucket" in text:
                raise BucketNotFoundError(f"bucket {bucket!r} does not exist ({uri})") from exc
            if "AccessDenied" in text or "Forbidden" in text:
                raise AccessDeniedError(f"access denied writing {uri}: {text}") from exc
            raise TransientError(f"uploading {uri}: {text}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise TransientError(f"uploading {uri}: {exc}") from exc
        return size


def _max_attempts() -> int:
    # The standard chain's own knob, so an operator (or a test) can shorten retries.
    try:
        return max(1, int(os.environ.get("AWS_MAX_ATTEMPTS", "8")))
    except ValueError:
        return 8


def _raise_for(exc: botocore.exceptions.ClientError, uri: str, *, bucket: str) -> NoReturn:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    message = error.get("Message") or code
    if code == "NoSuchBucket":
        raise BucketNotFoundError(f"bucket {bucket!r} does not exist ({uri})") from exc
    if code in _NOT_FOUND_CODES or status == 404:
        raise NotFoundError(f"{uri} does not exist") from exc
    if code in _DENIED_CODES or status == 403:
        raise AccessDeniedError(f"access denied to {uri}: {message}") from exc
    if status and status < 500 and status != 429:
        raise BadRequestError(f"{uri}: {code} {message}") from exc
    raise TransientError(f"{uri}: {code or status} {message}") from exc
