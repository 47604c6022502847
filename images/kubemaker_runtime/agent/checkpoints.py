"""Checkpoints: restored before the algorithm starts, synced while it runs and at the end.

Like SageMaker, files are copied one by one to ``<checkpoint uri>/<relative path>``;
a file is uploaded again whenever its size or modification time changed. Files
deleted locally are left in the store.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from kubemaker_runtime.agent.errors import AgentError, from_storage
from kubemaker_runtime.agent.transfer import TransferStats, download_all
from kubemaker_runtime.storage import (
    BucketNotFoundError,
    NotFoundError,
    StorageError,
    Store,
    join_uri,
)

logger = logging.getLogger(__name__)

_Signature = tuple[int, int]  # (size, mtime_ns)


def _signature(path: Path) -> _Signature:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _local_files(root: Path) -> list[Path]:
    files = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            if name.startswith(".") and name.endswith(".part"):
                continue  # our own in-flight download
            files.append(Path(dirpath) / name)
    return sorted(files)


class CheckpointSync:
    def __init__(
        self,
        store: Store,
        uri: str,
        local_dir: Path,
        *,
        interval_seconds: float,
        workers: int = 8,
    ) -> None:
        self.store = store
        self.uri = uri
        self.local_dir = local_dir
        self.interval_seconds = interval_seconds
        self.workers = workers
        self.bytes_uploaded = 0
        self.files_uploaded = 0
        self.error: AgentError | None = None
        self._synced: dict[str, _Signature] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def restore(self, cancel: threading.Event | None = None) -> TransferStats:
        """Download what an earlier run left at the checkpoint URI (nothing is fine)."""
        self.local_dir.mkdir(parents=True, exist_ok=True)
        context = f"checkpoints ({self.uri})"
        try:
            # The URI is a folder: <uri>/<relative path>, whether or not it ends in "/".
            objects = self.store.list(self.uri.rstrip("/") + "/")
        except BucketNotFoundError as exc:
            raise from_storage(exc, context) from exc
        except NotFoundError:
            objects = []  # a prefix (or directory) not written yet
        except StorageError as exc:
            raise from_storage(exc, context) from exc
        stats = download_all(
            self.store,
            objects,
            self.local_dir,
            label="restoring checkpoints",
            context=context,
            workers=self.workers,
            cancel=cancel,
        )
        # What was just restored is already in the store.
        with self._lock:
            for path in _local_files(self.local_dir):
                self._synced[path.relative_to(self.local_dir).as_posix()] = _signature(path)
        return stats

    def sync_once(self) -> int:
        """Upload new and changed files; bytes uploaded by this call."""
        with self._lock:
            moved = 0
            if not self.local_dir.is_dir():
                return 0
            for path in _local_files(self.local_dir):
                rel = path.relative_to(self.local_dir).as_posix()
                try:
                    signature = _signature(path)
                except FileNotFoundError:
                    continue  # deleted while we looked
                if self._synced.get(rel) == signature:
                    continue
                try:
                    moved += self.store.upload(path, join_uri(self.uri, rel))
                except FileNotFoundError:
                    continue
                except StorageError as exc:
                    raise from_storage(exc, f"checkpoint sync ({self.uri})") from exc
                self._synced[rel] = signature
                self.files_uploaded += 1
            self.bytes_uploaded += moved
            return moved

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="checkpoint-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=60)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            try:
                moved = self.sync_once()
                if moved:
                    logger.info("checkpoints: synced %d bytes to %s", moved, self.uri)
            except AgentError as exc:
                # Keep training; the final sync tries again and reports what fails.
                logger.warning("%s", exc.message)
