"""``s3://bucket/prefix`` through boto3: AWS or any S3-compatible endpoint (MinIO).

Credentials come from boto3's standard chain (environment, shared files, IRSA web
identity, instance metadata).

One store holds one botocore client and one s3transfer ``TransferManager``: every
download and upload goes through that manager, whose ``max_concurrency`` bounds the
requests in flight across all of them (big objects as parallel 16 MiB ranged parts,
small ones as a single GET each, with no HEAD first: the listing already gave the size
and ETag). The client's connection pool holds that many connections plus a few for
listings and Pipe-mode streams. Transient failures are retried in one place, botocore's
``standard`` retry mode (``AWS_MAX_ATTEMPTS``); neither s3transfer nor the agent adds
attempts on top.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, cast

import boto3
import botocore.exceptions
import s3transfer.exceptions
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config
from s3transfer.subscribers import BaseSubscriber

from kubemaker_runtime.storage.base import (
    DEFAULT_CONCURRENCY,
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
    from s3transfer.futures import TransferFuture
    from s3transfer.manager import TransferManager

    from kubemaker_runtime.protocol import StorageConfig

logger = logging.getLogger(__name__)

ENDPOINT_ENV = "AWS_ENDPOINT_URL_S3"
MiB = 1024 * 1024
# Connections beyond the transfers' own: listings and Pipe-mode streams.
POOL_HEADROOM = 4
PART_SIZE = 16 * MiB
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


class _KnownObject(BaseSubscriber):  # type: ignore[misc]  # s3transfer is untyped
    """Hands s3transfer the size and ETag from the listing, so it sends no HeadObject.

    With the ETag, each ranged part of a big object is an ``If-Match`` GET: an object
    replaced while it is being staged fails the transfer instead of mixing versions.
    """

    def __init__(self, obj: StoredObject) -> None:
        self.obj = obj

    def on_queued(self, future: TransferFuture, **_: Any) -> None:
        future.meta.provide_transfer_size(self.obj.size)
        if self.obj.etag:
            future.meta.provide_object_etag(f'"{self.obj.etag}"')


class S3Store:
    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        max_concurrency: int = DEFAULT_CONCURRENCY,
        client: Any | None = None,
    ) -> None:
        max_concurrency = max(1, max_concurrency)
        endpoint_url = endpoint_url or os.environ.get(ENDPOINT_ENV) or None
        if client is None:
            config = Config(
                # total_max_attempts counts the first request, as AWS_MAX_ATTEMPTS
                # does; the dict's "max_attempts" would count retries only (one more).
                retries={"mode": "standard", "total_max_attempts": _max_attempts()},
                max_pool_connections=max_concurrency + POOL_HEADROOM,
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
        self.max_concurrency = max_concurrency
        self.transfer_config = TransferConfig(
            multipart_threshold=PART_SIZE,
            multipart_chunksize=PART_SIZE,
            max_concurrency=max_concurrency,
            # botocore retries each request; s3transfer would otherwise re-send a GET
            # whose body broke off up to 5 times, on top of botocore's attempts.
            num_download_attempts=1,
            use_threads=True,
            # The pure-Python manager on every machine (no CRT, whatever is installed):
            # the same bound and retries everywhere.
            preferred_transfer_client="classic",
        )
        self._manager: TransferManager | None = None
        self._manager_lock = threading.Lock()

    @classmethod
    def from_config(
        cls, storage: StorageConfig, *, max_concurrency: int = DEFAULT_CONCURRENCY
    ) -> S3Store:
        return cls(
            endpoint_url=storage.s3_endpoint_url,
            region=storage.region,
            max_concurrency=max_concurrency,
        )

    @property
    def manager(self) -> TransferManager:
        """The store's one transfer manager (its threads start on first use)."""
        with self._manager_lock:
            if self._manager is None:
                self._manager = cast(
                    "TransferManager", create_transfer_manager(self.client, self.transfer_config)
                )
            return self._manager

    def close(self) -> None:
        """Stop the transfer manager's threads (after its transfers finish)."""
        with self._manager_lock:
            manager, self._manager = self._manager, None
        if manager is not None:
            manager.shutdown()

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
        """Through the shared manager, into a hidden temp file renamed onto ``dest``.

        Safe to call from many threads at once: the manager's ``max_concurrency``,
        not the number of callers, bounds the requests in flight.
        """
        bucket, key = parse_s3_uri(obj.uri)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path_for(dest)
        try:
            with tmp.open("wb") as out:
                future = self.manager.download(bucket, key, out, subscribers=[_KnownObject(obj)])
                future.result()
            os.utime(tmp, (obj.mtime, obj.mtime))
            tmp.replace(dest)
        except botocore.exceptions.ClientError as exc:
            _raise_for(exc, obj.uri, bucket=bucket)
        except s3transfer.exceptions.S3DownloadFailedError as exc:
            # If-Match failed: the object was replaced after it was listed.
            raise TransientError(f"downloading {obj.uri}: {exc}") from exc
        except s3transfer.exceptions.RetriesExceededError as exc:
            raise TransientError(f"downloading {obj.uri}: {exc.last_exception}") from exc
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
            self.manager.upload(str(src), bucket, key).result()
        except botocore.exceptions.ClientError as exc:
            _raise_for(exc, uri, bucket=bucket)
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
