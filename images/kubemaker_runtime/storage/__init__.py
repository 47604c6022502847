"""Storage schemes behind one interface: ``s3://``, ``pvc://`` and ``file://``."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from kubemaker_runtime.storage.base import (
    DEFAULT_CONCURRENCY,
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
    "DEFAULT_CONCURRENCY",
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
    """One store per scheme, created on first use (boto3 only when s3:// is used).

    The factory is the agent's: its one S3 store holds the agent's one transfer
    manager, so ``max_concurrency`` bounds every S3 transfer the agent makes, and the
    client's connection pool is sized to it.
    """

    def __init__(
        self,
        storage: StorageConfig,
        *,
        link_local: bool = False,
        max_concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self.storage = storage
        self.link_local = link_local
        self.max_concurrency = max_concurrency
        self._stores: dict[str, Store] = {}
        self._lock = threading.Lock()

    def for_uri(self, uri: str) -> Store:
        scheme, _ = split_uri(uri)
        with self._lock:
            if scheme not in self._stores:
                self._stores[scheme] = self._create(scheme, uri)
            return self._stores[scheme]

    def close(self) -> None:
        """Stop the stores' transfer threads (a store used afterwards starts them again)."""
        with self._lock:
            stores = list(self._stores.values())
        for store in stores:
            close = getattr(store, "close", None)
            if close is not None:
                close()

    def _create(self, scheme: str, uri: str) -> Store:
        if scheme == "s3":
            from kubemaker_runtime.storage.s3 import S3Store

            return S3Store.from_config(self.storage, max_concurrency=self.max_concurrency)
        if scheme in ("file", "pvc"):
            from kubemaker_runtime.storage.local import LocalStore

            return LocalStore(pvc_root=self.storage.pvc_root, link=self.link_local)
        raise NotFoundError(
            f"{uri!r}: unsupported scheme {scheme!r} (use s3://, pvc:// or file://)"
        )
