"""Names and code archives, as ``sagemaker.utils`` makes them."""

from __future__ import annotations

import io
import re
import secrets
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path

# A kubemaker object's name is a DNS-1035 label: children and host names derive from it.
MAX_NAME = 52
SKIPPED = ("__pycache__", ".git", ".ipynb_checkpoints")


def base_name_from_image(image: str) -> str:
    """``ghcr.io/kubemaker/xgboost:0.1.0`` -> ``xgboost``."""
    repository = image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    return repository


def name_from_base(base: str, max_length: int = MAX_NAME, short: bool = False) -> str:
    """``<base>-<timestamp>-<random>``, lower case, within ``max_length``: unique per call
    (SageMaker appends a timestamp too; the random part keeps two calls in the same
    second apart)."""
    stamp = time.strftime("%y%m%d-%H%M%S" if short else "%Y-%m-%d-%H-%M-%S", time.gmtime())
    suffix = f"{stamp}-{secrets.token_hex(2)}"
    cleaned = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-") or "job"
    if not cleaned[0].isalpha():
        cleaned = f"j-{cleaned}"
    room = max_length - len(suffix) - 1
    if room < 1:
        raise ValueError(f"max_length {max_length} leaves no room for a name")
    return f"{cleaned[:room].rstrip('-')}-{suffix}"


def pack_source(
    entry_point: str, source_dir: str | None, dependencies: Sequence[str] = ()
) -> tuple[bytes, str]:
    """(sourcedir.tar.gz, the entry point's path inside it): ``source_dir``'s files (or
    the entry point file alone) and each dependency at the archive's top level, as
    SageMaker's SDK packs them."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        if source_dir is not None:
            root = Path(source_dir)
            if not root.is_dir():
                raise FileNotFoundError(f"source_dir {source_dir} is not a directory")
            entry = Path(entry_point)
            if entry.is_absolute() or not (root / entry).is_file():
                raise FileNotFoundError(
                    f"entry_point {entry_point} is not a file under source_dir {source_dir} "
                    "(give its path relative to source_dir)"
                )
            _add_tree(tar, root, "")
            name = entry.as_posix()
        else:
            entry = Path(entry_point)
            if not entry.is_file():
                raise FileNotFoundError(f"entry_point {entry_point} is not a file")
            tar.add(entry, arcname=entry.name, filter=_normalise)
            name = entry.name
        for dependency in dependencies:
            path = Path(dependency)
            if not path.exists():
                raise FileNotFoundError(f"dependency {dependency} does not exist")
            if path.is_dir():
                _add_tree(tar, path, path.name)
            else:
                tar.add(path, arcname=path.name, filter=_normalise)
    return buffer.getvalue(), name


def _add_tree(tar: tarfile.TarFile, root: Path, prefix: str) -> None:
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part in SKIPPED for part in relative.parts) or not path.is_file():
            continue
        arcname = f"{prefix}/{relative.as_posix()}" if prefix else relative.as_posix()
        tar.add(path, arcname=arcname, filter=_normalise)


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # The same code gives the same archive: no owner names from this machine.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
