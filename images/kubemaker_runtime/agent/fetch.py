"""``kubemaker-agent fetch-model``: a serving pod's init container.

Downloads ``model.tar.gz`` (or copies it, for file://) and unpacks it into the model
directory before the serving image starts, as SageMaker does for a hosted model. The
object store comes from the environment any AWS SDK reads (``AWS_ENDPOINT_URL_S3``,
region, credentials), which the operator sets from the Endpoint's ``storage``.

Exit codes: 0 done; 1 the model cannot be fetched or unpacked (the message, on one
line, is the container's termination message, which the Endpoint's status quotes).
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from pathlib import Path

from kubemaker_runtime.archives import extract_all
from kubemaker_runtime.protocol import StorageConfig


class FetchError(Exception):
    """The model cannot be fetched or unpacked; the message says which and why."""


def fetch_model(uri: str, dest: Path, storage: StorageConfig | None = None) -> int:
    """Unpack the archive at ``uri`` into ``dest``; returns the number of files."""
    from kubemaker_runtime.storage import StorageError, StoreFactory

    storage = storage or StorageConfig(
        s3_endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or None,
        region=os.environ.get("AWS_REGION") or None,
    )
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kubemaker-model-") as tmp:
        try:
            store = StoreFactory(storage).for_uri(uri)
            found = [o for o in store.list(uri) if o.uri.rstrip("/") == uri.rstrip("/")]
            if len(found) != 1:
                raise FetchError(f"model {uri} does not exist (or is a prefix, not a file)")
            archive = Path(tmp) / "model.tar.gz"
            store.download(found[0], archive)
        except StorageError as exc:
            raise FetchError(f"cannot fetch the model {uri}: {exc.message}") from None
        try:
            with tarfile.open(archive) as tar:
                extract_all(tar, dest)
        except (tarfile.TarError, OSError, ValueError) as exc:
            raise FetchError(f"model {uri} is not a readable tar.gz archive: {exc}") from None
    return sum(1 for p in dest.rglob("*") if p.is_file())
