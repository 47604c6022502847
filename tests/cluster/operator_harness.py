"""Run the kubemaker operator against the local cluster as it runs in a real one.

The chart is installed (its ServiceAccount, RBAC and configuration; the Deployment's
pod is only simulated by KWOK), and the operator runs here as a subprocess
(``python -m kubemaker operator``) with a kubeconfig whose credentials are a token of
the chart's ServiceAccount (TokenRequest), with the chart's rendered config.yaml: never
as the cluster admin. Used by the cluster tests and by benchmarks/apply_trainingjobs.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import yaml
from kubernetes import client

if TYPE_CHECKING:
    from conftest import LocalCluster

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "kubemaker"
CRDS = REPO_ROOT / "crds"

T = TypeVar("T")


class WaitTimeout(AssertionError):
    pass


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float = 60.0,
    interval: float = 0.2,
) -> T:
    """Call ``probe`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise WaitTimeout(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(command: Sequence[str], *, input: str | None = None, timeout: float = 120.0) -> str:
    result = subprocess.run(
        [str(c) for c in command],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(str(c) for c in command)}` exited {result.returncode}: "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
    return result.stdout


def can_i_resource(resource: str) -> list[str]:
    """``kubectl auth can-i`` arguments for a resource, with ``/subresource`` split off
    (``can-i get pods/log`` would ask about a pod *named* log)."""
    resource, _, subresource = resource.partition("/")
    return [resource, f"--subresource={subresource}"] if subresource else [resource]


@dataclass
class ChartInstall:
    """The chart installed in its own namespace, and a kubeconfig for its ServiceAccount."""

    kubectl: Path
    helm: Path
    admin_kubeconfig: Path
    release: str
    namespace: str
    workdir: Path
    service_account: str = ""
    operator_kubeconfig: Path = field(default_factory=Path)
    config_file: Path = field(default_factory=Path)

    def _kubectl(self, *args: str, input: str | None = None) -> str:
        return _run([self.kubectl, "--kubeconfig", self.admin_kubeconfig, *args], input=input)

    def _release_objects(self, kind: str) -> list[dict[str, Any]]:
        """The release's objects of one kind in its namespace, by the chart's label."""
        listed = self._kubectl(
            "get", kind, "-n", self.namespace, "-o", "json",
            "-l", f"app.kubernetes.io/instance={self.release}",
        )  # fmt: skip
        items: list[dict[str, Any]] = json.loads(listed)["items"]
        return items

    def install(self, values: dict[str, Any] | None = None) -> ChartInstall:
        # The CRDs as they are in the checkout (helm never upgrades CRDs it finds).
        self._kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
        for crd in sorted(CRDS.glob("*.yaml")):
            name = yaml.safe_load(crd.read_text())["metadata"]["name"]
            self._kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")
        values_file = self.workdir / "values.yaml"
        values_file.write_text(yaml.safe_dump(values or {}))
        _run(
            [
                self.helm,
                "install",
                self.release,
                str(CHART),
                "--kubeconfig",
                str(self.admin_kubeconfig),
                "--namespace",
                self.namespace,
                "--create-namespace",
                "--skip-crds",
                "--values",
                str(values_file),
            ],
            timeout=180,
        )
        accounts = self._release_objects("serviceaccounts")
        if len(accounts) != 1:
            raise RuntimeError(f"expected one ServiceAccount from the chart, found {accounts}")
        self.service_account = accounts[0]["metadata"]["name"]
        configmaps = self._release_objects("configmaps")
        config = next(
            (cm["data"]["config.yaml"] for cm in configmaps if "config.yaml" in cm.get("data", {})),
            None,
        )
        if config is None:
            raise RuntimeError("the chart rendered no ConfigMap with config.yaml")
        self.config_file = self.workdir / "config.yaml"
        self.config_file.write_text(config)
        self.operator_kubeconfig = self._service_account_kubeconfig()
        return self

    def _service_account_kubeconfig(self) -> Path:
        token = self._kubectl(
            "create", "token", self.service_account, "-n", self.namespace, "--duration=4h"
        ).strip()
        admin = yaml.safe_load(self.admin_kubeconfig.read_text())
        context_name = admin.get("current-context")
        context = next(c for c in admin["contexts"] if c["name"] == context_name)["context"]
        cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": dict(cluster["cluster"])}],
            "users": [{"name": "operator", "user": {"token": token}}],
            "contexts": [{"name": "operator", "context": {"cluster": "local", "user": "operator"}}],
            "current-context": "operator",
        }
        path = self.workdir / "operator.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        return path

    def can_i(self, verb: str, resource: str, namespace: str) -> bool:
        """``kubectl auth can-i`` as the operator; ``pods/log`` names a subresource."""
        result = subprocess.run(
            [
                str(self.kubectl),
                "--kubeconfig",
                str(self.operator_kubeconfig),
                "auth",
                "can-i",
                verb,
                *can_i_resource(resource),
                "-n",
                namespace,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return result.stdout.strip() == "yes"

    def uninstall(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            _run(
                [
                    self.helm,
                    "uninstall",
                    self.release,
                    "--kubeconfig",
                    str(self.admin_kubeconfig),
                    "--namespace",
                    self.namespace,
                    "--wait=false",
                ]
            )
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            self._kubectl(
                "delete", "namespace", self.namespace, "--wait=false", "--ignore-not-found"
            )


@contextlib.contextmanager
def installed_chart(
    kubectl: Path, helm: Path, admin_kubeconfig: Path, values: dict[str, Any] | None = None
) -> Iterator[ChartInstall]:
    suffix = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="kubemaker-chart-") as tmp:
        install = ChartInstall(
            kubectl=kubectl,
            helm=helm,
            admin_kubeconfig=admin_kubeconfig,
            release=f"kmt-{suffix}",
            namespace=f"kubemaker-test-{suffix}",
            workdir=Path(tmp),
        )
        try:
            yield install.install(values)
        finally:
            install.uninstall()


# The user database without the current uid, as in the operator's image (uid 65532 has no
# passwd entry there): getpwuid() raises the KeyError the real lookup raises.
_NO_PASSWD_ENTRY = """
import pwd, runpy

def getpwuid(uid):
    raise KeyError(f"getpwuid(): uid not found: {uid}")

pwd.getpwuid = getpwuid
runpy.run_module("kubemaker", run_name="__main__", alter_sys=True)
"""


class OperatorProcess:
    """``python -m kubemaker operator`` as a subprocess, with its log in a file."""

    def __init__(
        self,
        kubeconfig: Path,
        *,
        config_file: Path | None = None,
        namespaces: Sequence[str] = (),
        workers: int = 4,
        extra_args: Sequence[str] = (),
        log_path: Path | None = None,
        run_as: int | None = None,
        without_passwd_entry: bool = False,
    ) -> None:
        self.kubeconfig = kubeconfig
        # A uid to run as (uid = gid), as the image does; or, where no other uid can run
        # this interpreter, the current uid with the user database lacking its entry.
        self.run_as = run_as
        self.without_passwd_entry = without_passwd_entry
        self.config_file = config_file
        self.namespaces = list(namespaces)
        self.workers = workers
        self.extra_args = list(extra_args)
        self.log_path = log_path or Path(
            tempfile.mkstemp(prefix="kubemaker-operator-", suffix=".log")[1]
        )
        self.health_port = 0
        self.metrics_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def command(self) -> list[str]:
        entry = ["-m", "kubemaker"]
        if self.without_passwd_entry and self.run_as is None:
            entry = ["-c", _NO_PASSWD_ENTRY]
        command = [
            sys.executable,
            *entry,
            "operator",
            "--kubeconfig",
            str(self.kubeconfig),
            "--health-address",
            "127.0.0.1",
            "--health-port",
            str(self.health_port),
            "--metrics-address",
            "127.0.0.1",
            "--metrics-port",
            str(self.metrics_port),
            "--workers",
            str(self.workers),
        ]
        if self.config_file is not None:
            command += ["--config", str(self.config_file)]
        for namespace in self.namespaces:
            command += ["--namespace", namespace]
        return command + self.extra_args

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.health_port, self.metrics_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBEMAKER_CONFIG")}
        if self.without_passwd_entry:
            for name in ("USER", "LOGNAME", "LNAME", "USERNAME", "HOME"):
                env.pop(name, None)
        log = self.log_path.open("ab")
        log.write(f"\n=== start {self.starts + 1}: {' '.join(self.command())}\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO_ROOT,
            user=self.run_as,
            group=self.run_as,
        )
        log.close()
        self.starts += 1
        wait_for("the operator's liveness endpoint", self._healthy, timeout=timeout)
        return self

    def _healthy(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"the operator exited early:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/healthz", timeout=2
            ) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGKILL after ``timeout``); returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL: an operator crash (nothing is cleaned up)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as response:
            return str(response.read().decode())

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one sample (exact label match) from the /metrics text."""
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(self.metrics()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return None

    def memory(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) of the operator process in bytes."""
        values = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
        return values["VmRSS"], values["VmHWM"]

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self, print_tail: int = 150) -> None:
        """Stop, print the end of the log (pytest shows it if the test failed), delete it."""
        self.stop()
        print(f"--- operator log ({self.log_path}) ---\n{self.log_tail(print_tail)}")
        self.log_path.unlink(missing_ok=True)


# --- pytest fixtures and helpers shared by the cluster tests --------------------------

GROUP, VERSION, PLURAL = "kubemaker.io", "v1alpha1", "trainingjobs"
KWOK = "kwok.kubemaker.io/"
BUCKET = "s3://kubemaker-test"


@pytest.fixture(scope="session")
def chart(cluster: LocalCluster) -> Iterator[ChartInstall]:
    with installed_chart(cluster.bin("kubectl"), cluster.bin("helm"), cluster.kubeconfig) as c:
        yield c


@pytest.fixture
def operator(chart: ChartInstall, namespace: str) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        chart.operator_kubeconfig, config_file=chart.config_file, namespaces=[namespace]
    ).start()
    try:
        yield process
    finally:
        process.close()


class Kube:
    """Admin-side access for the test's own assertions."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.policy = client.PolicyV1Api(api)

    def create(self, name: str, **kwargs: Any) -> dict[str, Any]:
        body = training_job(name, **kwargs)
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )
        return result

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return result

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.get(name).get("status") or {})

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec}
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def wait_status(
        self, name: str, primary: str, secondary: str | None = None, timeout: float = 90.0
    ) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(name)
            if status.get("trainingJobStatus") == primary and (
                secondary is None or status.get("secondaryStatus") == secondary
            ):
                return status
            return None

        try:
            return wait_for(f"{name} to be {primary}/{secondary or '*'}", reached, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; status now: {json.dumps(self.status(name))}") from exc

    def jobs(self, name: str) -> list[Any]:
        return list(
            self.batch.list_namespaced_job(
                self.namespace, label_selector=f"kubemaker.io/training-job={name}"
            ).items
        )

    def pods(self, name: str) -> list[Any]:
        return list(
            self.core.list_namespaced_pod(
                self.namespace, label_selector=f"kubemaker.io/training-job={name}"
            ).items
        )

    def services(self, name: str) -> list[Any]:
        return list(
            self.core.list_namespaced_service(
                self.namespace, label_selector=f"kubemaker.io/training-job={name}"
            ).items
        )

    def events(self, name: str) -> list[Any]:
        return [
            e
            for e in self.core.list_namespaced_event(self.namespace).items
            if e.involved_object.kind == "TrainingJob" and e.involved_object.name == name
        ]


@pytest.fixture
def kube(cluster: LocalCluster, namespace: str) -> Kube:
    return Kube(cluster.api_client(), namespace)


def training_job(
    name: str,
    *,
    instance_type: str = "ml.m5.xlarge",
    count: int = 1,
    kwok: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body_spec: dict[str, Any] = {
        "algorithmSpecification": {"algorithmName": "xgboost"},
        "hyperParameters": {"num_round": "10", "objective": "binary:logistic"},
        "inputDataConfig": [{"channelName": "train", "uri": f"{BUCKET}/data/train"}],
        "outputDataConfig": {"s3OutputPath": f"{BUCKET}/models"},
        "resourceConfig": {"instanceType": instance_type, "instanceCount": count},
    }
    if kwok:
        body_spec["podOverrides"] = {"annotations": {KWOK + k: v for k, v in kwok.items()}}
    body_spec.update(spec)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": body_spec,
    }


def transitions(status: dict[str, Any]) -> list[str]:
    return [t["status"] for t in status.get("secondaryStatusTransitions") or ()]


def condition(status: dict[str, Any], type_: str) -> tuple[str, str]:
    for cond in status.get("conditions") or ():
        if cond["type"] == type_:
            return cond["status"], cond.get("reason", "")
    raise AssertionError(f"no condition {type_} in {status.get('conditions')}")


def model_uri(name: str) -> str:
    return f"{BUCKET}/models/{name}/output/model.tar.gz"
