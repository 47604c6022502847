"""Parallel, resumable downloads of many objects into a directory, with a progress log."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kubemaker_runtime.agent.errors import Cancelled, UserError, from_storage
from kubemaker_runtime.storage import StorageError, Store, StoredObject
from kubemaker_runtime.storage.base import is_unchanged

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_SECONDS = 5.0


@dataclass
class TransferStats:
    objects: int = 0
    skipped: int = 0
    bytes: int = 0
    seconds: float = 0.0


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"  # pragma: no cover - the loop always returns


class Progress:
    """Thread-safe counters that log a line at most every few seconds, and a summary."""

    def __init__(self, label: str, total_objects: int, total_bytes: int) -> None:
        self.label = label
        self.total_objects = total_objects
        self.total_bytes = total_bytes
        self.done_objects = 0
        self.done_bytes = 0
        self.skipped = 0
        self.started = time.monotonic()
        self._last_log = self.started
        self._lock = threading.Lock()

    def add(self, size: int, *, skipped: bool = False) -> None:
        with self._lock:
            self.done_objects += 1
            if skipped:
                self.skipped += 1
            else:
                self.done_bytes += size
            now = time.monotonic()
            if now - self._last_log >= PROGRESS_INTERVAL_SECONDS:
                self._last_log = now
                logger.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.started, 1e-6)
        rate = self.done_bytes / elapsed
        return (
            f"{self.label}: {self.done_objects}/{self.total_objects} objects, "
            f"{format_bytes(self.done_bytes)} of {format_bytes(self.total_bytes)} "
            f"({self.skipped} unchanged, skipped) in {elapsed:.1f} s, {format_bytes(rate)}/s"
        )


def safe_destination(root: Path, key: str) -> Path:
    """``root/key``, refusing keys that would land outside ``root``."""
    parts = PurePosixPath(key.lstrip("/")).parts
    if not parts or any(part in ("..", ".") for part in parts):
        raise UserError(f"object key {key!r} cannot be staged under {root}")
    return root.joinpath(*parts)


def remove_partial_files(root: Path) -> None:
    """Drop temp files an interrupted earlier attempt left behind (see temp_path_for)."""
    for leftover in root.rglob(".*.part"):
        if leftover.is_file() or leftover.is_symlink():
            leftover.unlink()


def download_all(
    store: Store,
    objects: Sequence[StoredObject],
    dest_dir: Path,
    *,
    label: str,
    context: str,
    workers: int = 8,
    cancel: threading.Event | None = None,
) -> TransferStats:
    """Download ``objects`` under ``dest_dir`` by key, ``workers`` objects at a time.

    Objects already present with the same size and modification time (from an
    earlier, interrupted attempt) are skipped; every file appears atomically, so a
    partial file never passes for a complete one.

    ``workers`` is how many objects are in flight; the store bounds the requests
    (an S3 store's one transfer manager, shared by every caller), and retries them:
    a storage error that reaches here is final for this attempt, and becomes an
    AgentError of its kind (``platform`` for a store that kept failing).
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    remove_partial_files(dest_dir)
    targets = [(obj, safe_destination(dest_dir, obj.key)) for obj in objects]
    progress = Progress(label, len(objects), sum(o.size for o in objects))
    cancel = cancel or threading.Event()

    def fetch(obj: StoredObject, dest: Path) -> None:
        if cancel.is_set():
            raise Cancelled(f"{context}: stopped before the transfer finished")
        if is_unchanged(obj, dest):
            progress.add(obj.size, skipped=True)
            return
        try:
            moved = store.download(obj, dest)
        except StorageError as exc:
            raise from_storage(exc, context) from exc
        progress.add(moved)

    if targets:
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="stage") as pool:
            futures = [pool.submit(fetch, obj, dest) for obj, dest in targets]
            done, pending = wait(futures, return_when=FIRST_EXCEPTION)
            for future in pending:
                future.cancel()
            for future in done:
                error = future.exception()
                if error is not None:
                    raise error
    stats = TransferStats(
        objects=len(objects),
        skipped=progress.skipped,
        bytes=progress.done_bytes,
        seconds=time.monotonic() - progress.started,
    )
    logger.info("%s", progress.line())
    return stats
