"""The end of a run: /opt/ml/model as model.tar.gz, /opt/ml/output/data as output.tar.gz."""

from __future__ import annotations

import logging
import os
import tarfile
import tempfile
import time
from pathlib import Path

from kubemaker_runtime.agent.errors import from_storage
from kubemaker_runtime.agent.transfer import format_bytes
from kubemaker_runtime.storage import StorageError, Store

logger = logging.getLogger(__name__)

MODEL_ARCHIVE = "model.tar.gz"
OUTPUT_ARCHIVE = "output.tar.gz"


def make_tarball(src_dir: Path, archive: Path) -> None:
    """A gzipped tar of the directory's contents, entries named relative to it.

    Like SageMaker's archives: ``model.tar.gz`` holds ``xgboost-model``, not
    ``model/xgboost-model`` nor ``./xgboost-model``; a missing directory gives an
    empty archive.
    """
    with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
        if src_dir.is_dir():
            for entry in sorted(src_dir.iterdir()):
                tar.add(entry, arcname=entry.name)


def has_files(directory: Path) -> bool:
    if not directory.is_dir():
        return False
    return any(files for _dirpath, _dirnames, files in os.walk(directory))


def upload_directory(
    store: Store, src_dir: Path, uri: str, *, what: str, tmp_dir: Path | None = None
) -> int:
    """Archive ``src_dir`` and store it at ``uri``; bytes uploaded."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kubemaker-upload-", dir=tmp_dir) as tmp:
        archive = Path(tmp) / Path(uri).name
        make_tarball(src_dir, archive)
        try:
            size = store.upload(archive, uri)
        except StorageError as exc:
            raise from_storage(exc, f"uploading {what} to {uri}") from exc
    elapsed = time.monotonic() - started
    logger.info("uploaded %s to %s: %s in %.1f s", what, uri, format_bytes(size), elapsed)
    return size
