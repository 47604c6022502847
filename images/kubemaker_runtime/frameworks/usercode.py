"""The user's code, for every script-mode framework: where it comes from and where it goes.

``sagemaker_submit_directory`` (set by the operator from ``sourceDir``, as the SageMaker
Python SDK sets it) may be an ``s3://`` URI of a ``sourcedir.tar.gz`` or of a prefix, a
``file://`` or ``pvc://`` URI, or a plain path (a directory or a tarball, e.g. a channel
the agent staged). Unset, the code is expected in the image at ``/opt/ml/code``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from kubemaker_runtime.archives import extract_all
from kubemaker_runtime.protocol import StorageConfig

logger = logging.getLogger(__name__)

TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar")
# What the model server needs from the code travels in model.tar.gz under code/.
MODEL_CODE_DIR = "code"


class UserCodeError(Exception):
    """The code the job names cannot be found or used: the user's to fix."""


def _is_tarball(name: str) -> bool:
    return name.endswith(TARBALL_SUFFIXES)


def _extract(tarball: Path, dest: Path) -> None:
    try:
        with tarfile.open(tarball) as tf:
            extract_all(tf, dest)
    except (tarfile.TarError, OSError) as exc:
        raise UserCodeError(f"cannot unpack {tarball.name}: {exc}") from exc


def _storage_from_env() -> StorageConfig:
    """Where ``s3://`` code is read: boto3's own endpoint variables, as any AWS tool."""
    return StorageConfig(
        s3_endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
        or None,
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None,
    )


def stage_code(submit_directory: str | None, dest: Path) -> Path:
    """Put the user's code in ``dest`` (a directory) and return it.

    With no submit directory the code is already in the image at ``dest``.
    """
    if not submit_directory:
        if not dest.is_dir():
            raise UserCodeError(f"no sourceDir was given and the image has no code at {dest}")
        return dest
    source = submit_directory
    if source.startswith("file://") and not source.startswith("file:///"):
        raise UserCodeError(f"sourceDir {source!r}: a file URI needs an absolute path")
    if "://" not in source or source.startswith("file://"):
        path = Path(source.removeprefix("file://"))
        if path.resolve() == dest.resolve():
            return dest
        _copy_local(path, dest)
        return dest
    _download(source, dest)
    return dest


def _copy_local(path: Path, dest: Path) -> None:
    if path.is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copytree(path, dest, dirs_exist_ok=True)
    elif path.is_file() and _is_tarball(path.name):
        dest.mkdir(parents=True, exist_ok=True)
        _extract(path, dest)
    elif path.is_file():
        raise UserCodeError(f"sourceDir {path} is a file but not a .tar.gz")
    else:
        raise UserCodeError(f"sourceDir {path} does not exist")


def _download(uri: str, dest: Path) -> None:
    from kubemaker_runtime.storage import StorageError, StoreFactory

    store = StoreFactory(_storage_from_env()).for_uri(uri)
    try:
        objects = store.list(uri)
    except StorageError as exc:
        raise UserCodeError(f"sourceDir {uri}: {exc.message}") from exc
    if not objects:
        raise UserCodeError(f"sourceDir {uri} holds no files")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sourcedir-") as tmp:
        for obj in objects:
            key = obj.key or Path(obj.uri).name
            target = Path(tmp) / key
            target.parent.mkdir(parents=True, exist_ok=True)
            store.download(obj, target)
        if len(objects) == 1 and _is_tarball(objects[0].uri):
            _extract(Path(tmp) / (objects[0].key or Path(objects[0].uri).name), dest)
        else:
            shutil.copytree(tmp, dest, dirs_exist_ok=True)
    logger.info("staged the code from %s into %s", uri, dest)


def entry_point_path(code_dir: Path, program: str | None) -> Path:
    if not program:
        raise UserCodeError("no entry point: set entryPoint (the sagemaker_program hyperparameter)")
    path = (code_dir / program).resolve()
    if not path.is_relative_to(code_dir.resolve()):
        raise UserCodeError(f"entry point {program!r} is outside the source directory")
    if not path.is_file():
        listing = sorted(p.name for p in code_dir.iterdir()) if code_dir.is_dir() else []
        raise UserCodeError(f"entry point {program!r} not found in the source directory {listing}")
    return path


def install_requirements(code_dir: Path) -> None:
    """``pip install -r requirements.txt`` when the source directory has one (as SageMaker)."""
    requirements = code_dir / "requirements.txt"
    if not requirements.is_file():
        return
    logger.info("installing %s", requirements)
    cmd = [sys.executable, "-m", "pip", "install", "--no-input", "-r", str(requirements)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise UserCodeError(
            f"pip install -r requirements.txt failed (exit {done.returncode}): "
            f"{done.stderr.strip()[-600:]}"
        )


def copy_code_into_model(code_dir: Path, model_dir: Path) -> None:
    """Ship the code with the model, so the model server finds model_fn & co.

    SageMaker's Python SDK repacks the entry point into model.tar.gz under ``code/``
    when it deploys a framework model; doing it here makes every model.tar.gz
    servable as it is. A model directory the script left empty stays empty.
    """
    if not model_dir.is_dir() or not any(model_dir.iterdir()):
        return
    target = model_dir / MODEL_CODE_DIR
    if target.exists():
        return
    shutil.copytree(code_dir, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".git"))
