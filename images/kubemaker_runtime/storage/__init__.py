"""Storage schemes behind one interface: ``s3://``, ``pvc://`` and ``file://``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubemaker_runtime.storage.base import (
    AccessDeniedError,
    BadRequestError,
    BucketNotFoundError,
    NotFoundError,
    StorageError,
    Store,
    StoredObject,
    TransientError,
    join_uri,
    split_uri,
)

if TYPE_CHECKING:
    from kubemaker_runtime.protocol import StorageConfig

__all__ = [
    "AccessDeniedError",
    "BadRequestError",
    "BucketNotFoundError",
    "NotFoundError",
    "StorageError",
    "Store",
    "StoreFactory",
    "StoredObject",
    "TransientError",
    "join_uri",
    "split_uri",
]


class StoreFactory:
    """One store per scheme, created on first use (boto3 only when s3:// is used)."""

    def __init__(self, storage: StorageConfig, *, link_local: bool = False) -> None:
        self.storage = storage
        self.link_local = link_local
        self._stores: dict[str, Store] = {}

    def for_uri(self, uri: str) -> Store:
        scheme, _ = split_uri(uri)
        if scheme not in self._stores:
            self._stores[scheme] = self._create(scheme, uri)
        return self._stores[scheme]

    def _create(self, scheme: str, uri: str) -> Store:
        if scheme == "s3":
            from kubemaker_runtime.storage.s3 import S3Store

            return S3Store.from_config(self.storage)
        if scheme in ("file", "pvc"):
            from kubemaker_runtime.storage.local import LocalStore

            return LocalStore(pvc_root=self.storage.pvc_root, link=self.link_local)
        raise NotFoundError(
            f"{uri!r}: unsupported scheme {scheme!r} (use s3://, pvc:// or file://)"
        )
