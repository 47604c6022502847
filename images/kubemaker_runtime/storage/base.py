"""The small interface every storage scheme implements, and its errors.

Staging, Pipe feeding, checkpoint sync and upload are written once against
:class:`Store`; ``s3://``, ``pvc://`` and ``file://`` each provide one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, Protocol

ErrorKind = Literal["user", "platform"]

# Transfers in flight per store factory, so per agent (the agent's default --workers).
DEFAULT_CONCURRENCY = 8


class StorageError(Exception):
    """A storage operation failed; ``kind`` says whose fault it is.

    ``user``: the spec points at something that is not there or not readable (a
    missing bucket, a wrong prefix, denied access); retrying cannot help.
    ``platform``: the store or the network failed (5xx, timeouts, refused
    connections); a retry of the job may succeed.
    """

    kind: ErrorKind = "platform"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(StorageError):
    kind: ErrorKind = "user"


class BucketNotFoundError(NotFoundError):
    """The bucket itself is missing (not merely a key or prefix under it)."""


class AccessDeniedError(StorageError):
    kind: ErrorKind = "user"


class BadRequestError(StorageError):
    """The store refused the request as malformed (an invalid bucket name, say)."""

    kind: ErrorKind = "user"


class TransientError(StorageError):
    kind: ErrorKind = "platform"


@dataclass(frozen=True)
class StoredObject:
    """One object (or file) found under a URI."""

    uri: str
    # Path relative to the listed URI, with "/" separators: where the object lands
    # under a channel directory.
    key: str
    size: int
    # Seconds since the epoch (S3 LastModified, or a file's mtime); a staged copy gets
    # this mtime, so an unchanged object is recognised and skipped on resume.
    mtime: float
    etag: str | None = None


class Store(Protocol):
    """list / download / open / upload, for one URI scheme."""

    def list(self, uri: str) -> list[StoredObject]:
        """Every object under ``uri``, sorted by key; NotFoundError if its root is missing."""
        ...

    def download(self, obj: StoredObject, dest: Path) -> int:
        """Write ``obj`` to ``dest`` atomically (never a partial file); bytes moved."""
        ...

    def open(self, obj: StoredObject) -> BinaryIO:
        """A stream of the object's bytes (Pipe mode)."""
        ...

    def upload(self, src: Path, uri: str) -> int:
        """Store the file ``src`` at ``uri``; bytes moved."""
        ...


def split_uri(uri: str) -> tuple[str, str]:
    """``("s3", "bucket/key")`` from ``s3://bucket/key``."""
    scheme, sep, rest = uri.partition("://")
    if not sep or not scheme:
        raise NotFoundError(f"{uri!r} is not a URI (expected s3://, pvc:// or file://)")
    return scheme.lower(), rest


def join_uri(base: str, *parts: str) -> str:
    """Join path parts onto a URI with exactly one "/" between them."""
    text = base.rstrip("/")
    for part in parts:
        text += "/" + part.strip("/")
    return text


def temp_path_for(dest: Path) -> Path:
    """A sibling name to download into before the atomic rename onto ``dest``."""
    return dest.with_name(f".{dest.name}.{os.getpid()}.part")


def is_unchanged(obj: StoredObject, dest: Path) -> bool:
    """True when ``dest`` already holds ``obj`` (same size and modification time)."""
    try:
        stat = dest.stat()
    except OSError:
        return False
    return stat.st_size == obj.size and abs(stat.st_mtime - obj.mtime) < 1e-3
