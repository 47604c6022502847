"""The MXNet framework in the tests: jobs run with ``kubemaker local train`` and what they
leave, the image's model server in the MXNet environment, and the labs' scripts
(scripts/datasets.py, benchmarks/mxnet_labs.py) loaded as modules.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from localmode_support import local_train, output, read_record, status_metrics, write_manifest
from serving_support import Server, run_server

from kubemaker_runtime import frameworks

REPO = Path(__file__).resolve().parents[2]
JOB_TIMEOUT = 600


def load_script(relative: str) -> ModuleType:
    """A script of this repository (``scripts/datasets.py``) imported as a module."""
    path = REPO / relative
    name = f"kubemaker_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class LocalRun:
    """A finished ``kubemaker local train`` and the record it left in its work directory."""

    exit_code: int
    record: dict[str, Any]
    output: str
    job_dir: Path

    @property
    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.record["status"]
        return status

    @property
    def failure_reason(self) -> str:
        return str(self.status.get("failureReason", ""))

    @property
    def model_artifacts(self) -> str:
        return str(self.status["modelArtifacts"]["s3ModelArtifacts"])

    def host_dir(self, index: int = 0) -> Path:
        """What /opt/ml is for that host."""
        return self.job_dir / f"host-{index}"

    def metric(self, name: str) -> float:
        return float(status_metrics(self.record)[name])


def run_job(manifest: dict[str, Any], workdir: Path, env: dict[str, str]) -> LocalRun:
    """``kubemaker local train -f <manifest>``, as a user runs it: the manifest written to
    ``workdir/<name>.yaml``, the job's files under ``workdir/jobs``."""
    workdir.mkdir(parents=True, exist_ok=True)
    name = manifest["metadata"]["name"]
    path = write_manifest(workdir / f"{name}.yaml", manifest)
    done = local_train(path, workdir / "jobs", env=env, timeout=JOB_TIMEOUT)
    job_dir = workdir / "jobs" / name
    if not (job_dir / "trainingjob.json").exists():
        pytest.fail(f"kubemaker local train left no record:\n{output(done)}")
    return LocalRun(done.returncode, read_record(workdir / "jobs", name), output(done), job_dir)


def unpack_model(uri: str, dest: Path) -> Path:
    assert uri.startswith("file://"), uri
    with tarfile.open(uri.removeprefix("file://")) as tf:
        tf.extractall(dest, filter="data")
    return dest


@contextlib.contextmanager
def model_server(model_dir: Path, env: dict[str, str], tmp_path: Path) -> Iterator[Server]:
    """The MXNet image's ``serve`` entry point, in the MXNet environment, on the model in
    ``model_dir``; ready (``/ping`` 200) when it is yielded."""
    command = frameworks.get("mxnet").command("serve", env)
    with run_server(command, tmp_path, {**env, "SM_MODEL_DIR": str(model_dir)}) as server:
        yield server


def invoke(
    server: Server, body: bytes, content_type: str, accept: str = "application/json"
) -> bytes:
    """POST /invocations, which must answer 200; the response's body."""
    response = server.post("/invocations", body, **{"Content-Type": content_type, "Accept": accept})
    assert response.status_code == 200, response.text
    return response.content
