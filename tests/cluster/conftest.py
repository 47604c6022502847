"""Fixtures for tests that run against the local Kubernetes control plane.

``cluster`` (session) starts the cluster of ``localcluster.py`` once, or reuses one that
is already running (``make cluster``, another pytest session); it stops it at the end
only if this session started it and no other session still uses it. Set
``KUBEMAKER_KEEP_CLUSTER=1`` to keep a cluster the tests started.

``namespace`` (function) is a fresh namespace, deleted after the test.

Every test that uses ``cluster`` gets the ``cluster`` marker, so ``-m "not cluster"``
leaves them out. When the cluster cannot start they fail with the reason: they never skip.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


def _load_localcluster() -> ModuleType:
    # Loaded by path: tests/cluster is not a package, and this works whatever pytest's
    # import mode or rootdir.
    path = Path(__file__).with_name("localcluster.py")
    spec = importlib.util.spec_from_file_location("kubemaker_localcluster", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


localcluster = _load_localcluster()


class KubectlError(subprocess.CalledProcessError):
    """A kubectl command failed; the message carries its stderr."""

    def __str__(self) -> str:
        command = " ".join(str(part) for part in self.cmd)
        return f"`{command}` exited {self.returncode}: {(self.stderr or '').strip()}"


@dataclass(frozen=True)
class LocalCluster:
    """Handle on the running local cluster."""

    kubeconfig: Path
    kubernetes_version: str = localcluster.KUBERNETES_VERSION
    cpu_nodes: tuple[str, ...] = ("kwok-cpu-0", "kwok-cpu-1")
    gpu_nodes: tuple[str, ...] = ("kwok-gpu-0",)

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against the cluster. Raises :class:`KubectlError` on a
        non-zero exit unless ``check=False`` (to assert on a rejection)."""
        command = [str(localcluster.binary("kubectl")), "--kubeconfig", str(self.kubeconfig)]
        command += args
        result = subprocess.run(
            command, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, command, result.stdout, result.stderr)
        return result

    def api_client(self) -> ApiClient:
        """A new admin client (``kubernetes`` package) for this cluster."""
        from kubernetes.config import new_client_from_config

        return new_client_from_config(config_file=str(self.kubeconfig))

    def bin(self, name: str) -> Path:
        """Path of a pinned binary: kubectl, helm, kwokctl, kube-apiserver, etcd, ..."""
        return Path(localcluster.binary(name))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    localcluster.register_session()
    failure = None
    try:
        localcluster.up(owner="fixture")
    except (localcluster.ClusterError, subprocess.SubprocessError, OSError) as error:
        failure = str(error)
    if failure is not None:
        localcluster.release_session()
        # pytest keeps a session fixture's failure: every cluster test reports this
        # reason at once rather than trying again.
        pytest.fail(f"the local Kubernetes control plane could not start: {failure}", pytrace=False)
    try:
        yield LocalCluster(kubeconfig=localcluster.KUBECONFIG)
    finally:
        localcluster.release_session()


def _namespace_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{slug}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(cluster: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = _namespace_name(request.node.name)
    cluster.kubectl("create", "namespace", name)
    # Pod Security admission, as a careful cluster enforces it: the operator's pods must
    # pass "restricted". Tests of the simulated cluster itself mark a looser level.
    marker = request.node.get_closest_marker("pod_security")
    level = marker.args[0] if marker is not None else "restricted"
    cluster.kubectl(
        "label",
        "namespace",
        name,
        "kubemaker.io/test=true",
        f"pod-security.kubernetes.io/enforce={level}",
    )
    # Pods are refused until kube-controller-manager has made the default ServiceAccount.
    deadline = time.monotonic() + 30
    while cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode:
        if time.monotonic() > deadline:
            pytest.fail(f"namespace {name}: no default ServiceAccount after 30s", pytrace=False)
        time.sleep(0.1)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")
