"""The e2e harness's parts that need no Docker: settings, manifests, the chart's values,
the jobs it applies, and the Dockerfiles it builds. They run with the ordinary suite,
so a broken e2e setup shows here first, not only on a machine with Docker."""

from __future__ import annotations

import fnmatch
import io
import re
import shlex
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kindharness
import pytest
import yaml

from kubemaker.api import TrainingJobSpec
from kubemaker.config import OperatorConfig
from kubemaker_runtime.algorithms.xgboost.hyperparameters import HyperparameterError, validate

REPO_ROOT = kindharness.REPO_ROOT
localcluster = kindharness.localcluster


# --- settings ------------------------------------------------------------------------------------


def test_settings_defaults() -> None:
    settings = kindharness.Settings.from_env({})
    assert settings.cluster_name == "kubemaker-e2e"
    # What scripts/images.sh tags: the chart's defaults.
    assert settings.image("operator") == "ghcr.io/kubemaker/operator:0.1.0"
    assert settings.image("xgboost") == "ghcr.io/kubemaker/xgboost:0.1.0"
    assert settings.build_images and not settings.keep and not settings.require_docker
    assert settings.node_image == "" and settings.s3_image == ""
    assert settings.kubeconfig == REPO_ROOT / ".work" / "e2e" / "kubemaker-e2e" / "kubeconfig"
    # kind: the images are loaded into the node, never pulled.
    assert not settings.existing and settings.pull_policy == "Never"


def test_ci_requires_the_e2e_tests() -> None:
    # .ci/run runs `make test` with CI=true: there the kind tests fail, never skip.
    assert kindharness.Settings.from_env({"CI": "true"}).require_docker
    assert not kindharness.Settings.from_env(
        {"CI": "true", "KUBEMAKER_E2E_REQUIRE": "0"}
    ).require_docker


def test_settings_from_environment(tmp_path: Path) -> None:
    settings = kindharness.Settings.from_env(
        {
            "KUBEMAKER_E2E_CLUSTER": "mine",
            "KUBEMAKER_E2E_IMAGE_PREFIX": "registry.local:5000/km/",
            "KUBEMAKER_E2E_IMAGE_TAG": "dev1",
            "KUBEMAKER_E2E_KEEP": "1",
            "KUBEMAKER_E2E_BUILD": "no",
            "KUBEMAKER_E2E_JOB_TIMEOUT": "120",
            "KUBEMAKER_E2E_WORKDIR": str(tmp_path),
        }
    )
    assert settings.cluster_name == "mine"
    assert settings.image("runtime") == "registry.local:5000/km/runtime:dev1"
    assert settings.keep and not settings.build_images
    assert settings.job_timeout == 120.0
    assert settings.kubeconfig == tmp_path / "mine" / "kubeconfig"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("KUBEMAKER_E2E_KEEP", "maybe"),
        ("KUBEMAKER_E2E_JOB_TIMEOUT", "ten"),
        ("KUBEMAKER_E2E_SETUP_TIMEOUT", "-5"),
        ("KUBEMAKER_E2E_PULL_POLICY", "sometimes"),
        ("KUBEMAKER_E2E_KUBECONFIG", "/nonexistent/kubeconfig"),
    ],
)
def test_bad_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        kindharness.Settings.from_env({name: value})


def test_bad_pull_policy_lists_the_good_ones(tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path)
    with pytest.raises(ValueError, match="Always, IfNotPresent, Never") as raised:
        kindharness.Settings.from_env(
            {"KUBEMAKER_E2E_KUBECONFIG": str(kubeconfig), "KUBEMAKER_E2E_PULL_POLICY": "Latest"}
        )
    assert "KUBEMAKER_E2E_PULL_POLICY='Latest'" in str(raised.value)


def test_a_context_needs_a_kubeconfig() -> None:
    with pytest.raises(ValueError, match=r"KUBEMAKER_E2E_CONTEXT='prod'.*KUBEMAKER_E2E_KUBECONFIG"):
        kindharness.Settings.from_env({"KUBEMAKER_E2E_CONTEXT": "prod"})


def test_skip_message_says_why_and_how_to_run() -> None:
    message = kindharness.skip_message("no Docker engine answers (`docker info`: ...)")
    assert "no Docker engine" in message
    assert "make e2e-kind" in message and "docs/e2e.md" in message
    # Against another cluster, Docker only builds the images: say how to do without.
    existing = kindharness.skip_message("no Docker engine answers", existing=True)
    assert "KUBEMAKER_E2E_BUILD=0" in existing and "Against another cluster" in existing
    for text in (message, existing):
        assert kindharness.without_skip_prefix(text).startswith("no Docker engine answers")


def test_helm_values_name_the_built_images() -> None:
    settings = kindharness.Settings.from_env(
        {"KUBEMAKER_E2E_IMAGE_PREFIX": "localhost:5000/km", "KUBEMAKER_E2E_IMAGE_TAG": "t1"}
    )
    values = kindharness.build_image_values(settings)
    assert values["image"] == {
        "repository": "localhost:5000/km/operator",
        "tag": "t1",
        "pullPolicy": "Never",
    }
    images = values["config"]["images"]
    assert images["agent"] == "localhost:5000/km/runtime:t1"
    assert images["algorithms"] == {"xgboost": "localhost:5000/km/xgboost:t1"}
    # Both frameworks: the chart's default xgboost entry would keep ghcr.io/kubemaker.
    assert images["frameworks"] == {
        "mxnet": "localhost:5000/km/mxnet:t1",
        "xgboost": "localhost:5000/km/xgboost:t1",
    }
    assert images["pullPolicy"] == "Never"


# --- another cluster (KUBEMAKER_E2E_KUBECONFIG) ---------------------------------------------------


def _kubeconfig(directory: Path) -> Path:
    path = directory / "config"
    path.write_text("apiVersion: v1\nkind: Config\ncurrent-context: a\n")
    return path


def test_existing_cluster_settings_defaults(tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path)
    settings = kindharness.Settings.from_env({"KUBEMAKER_E2E_KUBECONFIG": str(kubeconfig)})
    assert settings.existing and settings.existing_kubeconfig == kubeconfig
    # The tests (the SDK's copy of the kubeconfig) get the user's file itself.
    assert settings.kubeconfig == kubeconfig
    assert settings.context == ""
    # The cluster pulls the images: IfNotPresent, not kind's Never.
    assert settings.pull_policy == "IfNotPresent"
    assert settings.build_images and not settings.keep


def test_existing_cluster_settings_from_environment(tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path)
    settings = kindharness.Settings.from_env(
        {
            "KUBEMAKER_E2E_KUBECONFIG": str(kubeconfig),
            "KUBEMAKER_E2E_CONTEXT": "prod/admin",
            "KUBEMAKER_E2E_PULL_POLICY": "always",
            "KUBEMAKER_E2E_WORKDIR": str(tmp_path / "work"),
        }
    )
    assert settings.context == "prod/admin"
    assert settings.pull_policy == "Always"  # spelled as Kubernetes wants it
    # With a context: a copy holding it alone (ExistingCluster.open writes it), so the
    # programs the tests start reach the cluster kubectl and helm installed into.
    assert settings.kubeconfig == tmp_path / "work" / "kubemaker-e2e" / "kubeconfig-prod_admin"
    # kind may be told another policy too (say, IfNotPresent for images on the node).
    kind = kindharness.Settings.from_env({"KUBEMAKER_E2E_PULL_POLICY": "IfNotPresent"})
    assert kind.pull_policy == "IfNotPresent" and not kind.existing


def test_existing_cluster_kubeconfig_path_is_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = _kubeconfig(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = kindharness.Settings.from_env({"KUBEMAKER_E2E_KUBECONFIG": "~/config"})
    assert settings.existing_kubeconfig == kubeconfig


def test_existing_cluster_values_and_s3_pull_policy(tmp_path: Path) -> None:
    settings = kindharness.Settings.from_env(
        {
            "KUBEMAKER_E2E_KUBECONFIG": str(_kubeconfig(tmp_path)),
            "KUBEMAKER_E2E_IMAGE_PREFIX": "registry.example.com/team",
            "KUBEMAKER_E2E_IMAGE_TAG": "e2e1",
        }
    )
    values = kindharness.build_image_values(settings)
    assert values["image"]["pullPolicy"] == "IfNotPresent"
    assert values["config"]["images"]["pullPolicy"] == "IfNotPresent"
    assert (
        values["config"]["images"]["frameworks"]["mxnet"] == "registry.example.com/team/mxnet:e2e1"
    )

    docs = kindharness.s3_documents("registry.example.com/team/s3:1", settings.pull_policy,
                                    node_port=False)  # fmt: skip
    deployment = kindharness.find_document(docs, "Deployment", "s3")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/team/s3:1"
    assert container["imagePullPolicy"] == "IfNotPresent"
    # Reached with kubectl port-forward: no node port to collide with or to open.
    service = kindharness.find_document(docs, "Service", "s3")
    assert service["spec"]["type"] == "ClusterIP"
    assert all("nodePort" not in port for port in service["spec"]["ports"])
    # kind's manifest is left as it was.
    assert kindharness.s3_ports(kindharness.s3_documents()) == (9000, 30900)


def test_the_s3_image_must_be_named_for_another_cluster_without_a_build(tmp_path: Path) -> None:
    kubeconfig = str(_kubeconfig(tmp_path))

    def problem(**env: str) -> str | None:
        return kindharness.s3_image_problem(
            kindharness.Settings.from_env({"KUBEMAKER_E2E_KUBECONFIG": kubeconfig, **env})
        )

    message = problem(KUBEMAKER_E2E_BUILD="0")
    assert message is not None and "set KUBEMAKER_E2E_S3_IMAGE" in message
    assert problem(KUBEMAKER_E2E_BUILD="0", KUBEMAKER_E2E_S3_IMAGE="r.example/s3:1") is None
    assert problem() is None  # built here (docs: the cluster must be able to pull it)
    # kind builds it (cached) even with BUILD=0.
    kind = kindharness.Settings.from_env({"KUBEMAKER_E2E_BUILD": "0"})
    assert kindharness.s3_image_problem(kind) is None


def test_push_hint_names_every_image() -> None:
    refs = ["r.example/km/operator:1", "r.example/km/mxnet:1"]
    hint = kindharness.push_hint(refs)
    assert "docker push r.example/km/operator:1" in hint
    assert "docker push r.example/km/mxnet:1" in hint


def _no_probe() -> str | None:
    raise AssertionError("probed, but the answer does not depend on it")


def test_another_cluster_without_a_build_needs_no_docker(tmp_path: Path) -> None:
    settings = kindharness.Settings.from_env(
        {"KUBEMAKER_E2E_KUBECONFIG": str(_kubeconfig(tmp_path)), "KUBEMAKER_E2E_BUILD": "0"}
    )
    assert not kindharness.cluster_needs_docker(settings)
    # Neither `docker info` nor the node image's prerequisites are asked about.
    assert (
        kindharness.e2e_problem(
            settings, uses_cluster=True, docker_problem=_no_probe, node_problem=_no_probe
        )
        is None
    )
    # The image tests (no cluster) still run containers with Docker.
    reason = kindharness.e2e_problem(
        settings,
        uses_cluster=False,
        docker_problem=lambda: "no Docker engine answers",
        node_problem=_no_probe,
    )
    assert reason is not None and "no Docker engine answers" in reason


def test_another_cluster_with_a_build_needs_docker_not_a_node_image(tmp_path: Path) -> None:
    settings = kindharness.Settings.from_env(
        {"KUBEMAKER_E2E_KUBECONFIG": str(_kubeconfig(tmp_path))}
    )
    assert kindharness.cluster_needs_docker(settings)
    reason = kindharness.e2e_problem(
        settings,
        uses_cluster=True,
        docker_problem=lambda: "no Docker engine answers",
        node_problem=_no_probe,
    )
    assert reason is not None and "KUBEMAKER_E2E_BUILD=0" in reason
    assert (
        kindharness.e2e_problem(
            settings, uses_cluster=True, docker_problem=lambda: None, node_problem=_no_probe
        )
        is None
    )


def test_kind_needs_docker_and_the_node_image() -> None:
    settings = kindharness.Settings.from_env({"KUBEMAKER_E2E_BUILD": "0"})
    assert kindharness.cluster_needs_docker(settings)
    reason = kindharness.e2e_problem(
        settings,
        uses_cluster=True,
        docker_problem=lambda: "no Docker engine answers",
        node_problem=_no_probe,  # no engine: the node image is not asked about
    )
    assert reason is not None and "make e2e-kind" in reason
    node = "kind e2e skipped: the kind node image is built on this machine ..."
    assert (
        kindharness.e2e_problem(
            settings, uses_cluster=True, docker_problem=lambda: None, node_problem=lambda: node
        )
        == node
    )


def test_port_forward_command() -> None:
    command = kindharness.port_forward_command(
        "/cache/kubectl", Path("/home/me/.kube/config"), "", 41234, 9000
    )
    assert command == [
        "/cache/kubectl", "--kubeconfig", "/home/me/.kube/config",
        "port-forward", "-n", "s3", "svc/s3", "41234:9000", "--address", "127.0.0.1",
    ]  # fmt: skip
    with_context = kindharness.port_forward_command(
        "/cache/kubectl", Path("/k"), "prod", 41234, 9000
    )
    assert with_context[:5] == ["/cache/kubectl", "--kubeconfig", "/k", "--context", "prod"]
    assert with_context[5:] == command[3:]


def test_context_kubeconfig_command() -> None:
    assert kindharness.context_kubeconfig_command("kubectl", Path("/k"), "prod") == [
        "kubectl", "config", "view", "--raw", "--minify", "--flatten",
        "--kubeconfig", "/k", "--context", "prod",
    ]  # fmt: skip


def test_existing_cluster_clients_name_the_context(tmp_path: Path) -> None:
    settings = kindharness.Settings.from_env(
        {
            "KUBEMAKER_E2E_KUBECONFIG": str(_kubeconfig(tmp_path)),
            "KUBEMAKER_E2E_CONTEXT": "prod",
            "KUBEMAKER_E2E_WORKDIR": str(tmp_path / "work"),
        }
    )
    tools = kindharness.Tools(kind=None, kubectl=Path("kubectl"), helm=Path("helm"), docker=None)
    cluster = kindharness.make_cluster(settings, tools, lambda _: None)
    assert isinstance(cluster, kindharness.ExistingCluster)
    assert cluster.node_container is None  # no node to reach: the tests take another way
    kubeconfig = str(settings.kubeconfig)
    assert cluster.client_args() == ["--kubeconfig", kubeconfig, "--context", "prod"]
    assert cluster.helm_args() == ["--kubeconfig", kubeconfig, "--kube-context", "prod"]
    kind = kindharness.make_cluster(kindharness.Settings(), tools, lambda _: None)
    assert isinstance(kind, kindharness.KindCluster)
    assert kind.node_container == "kubemaker-e2e-control-plane"


def test_existing_cluster_diagnostics_say_why_there_are_no_node_logs(tmp_path: Path) -> None:
    settings = kindharness.Settings.from_env(
        {"KUBEMAKER_E2E_KUBECONFIG": str(_kubeconfig(tmp_path))}
    )
    tools = kindharness.Tools(kind=None, kubectl=Path("kubectl"), helm=Path("helm"), docker=None)
    cluster = kindharness.ExistingCluster(settings, tools)
    sections, where = cluster.node_logs(tmp_path / "diagnostics")
    assert sections == [("node logs", kindharness.NODE_LOGS_NOTE)] and where == ""
    assert "kind" in kindharness.NODE_LOGS_NOTE and "KUBEMAKER_E2E_KUBECONFIG" in (
        kindharness.NODE_LOGS_NOTE
    )
    assert (tmp_path / "diagnostics" / "node-logs.txt").read_text().startswith("not collected")


def test_port_forward_stops_and_says_why_it_exited(tmp_path: Path) -> None:
    # A stand-in for kubectl (this machine's Python), so no cluster is needed.
    log = tmp_path / "forward.log"
    gone = kindharness.PortForward(
        [sys.executable, "-c", "import sys; print('no such service'); sys.exit(1)"], log
    )
    gone.start()
    assert gone.process is not None
    gone.process.wait(30)
    reason = gone.exited()
    assert reason is not None and "exited 1" in reason and "no such service" in reason
    running = kindharness.PortForward([sys.executable, "-c", "import time; time.sleep(60)"], log)
    running.start()
    assert running.exited() is None
    running.stop()
    assert running.process is not None and running.process.poll() is not None
    running.stop()  # again: nothing to do


# --- small pure helpers --------------------------------------------------------------------------


def test_parse_docker_port() -> None:
    assert kindharness.parse_docker_port("127.0.0.1:41234\n") == 41234
    assert kindharness.parse_docker_port("127.0.0.1:5000\n[::1]:5000\n") == 5000
    with pytest.raises(kindharness.E2EError):
        kindharness.parse_docker_port("")


def test_docker_platform_of() -> None:
    assert kindharness.docker_platform_of([{"Os": "linux", "Architecture": "amd64"}]) == (
        "linux/amd64"
    )
    image = {"Os": "linux", "Architecture": "arm64", "Variant": "v8"}
    assert kindharness.docker_platform_of([image]) == "linux/arm64/v8"


def test_roc_auc() -> None:
    assert kindharness.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert kindharness.roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert kindharness.roc_auc([1, 0, 1], [0.9, 0.1, 0.8]) == pytest.approx(1.0)


def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_model_from_tarball() -> None:
    assert kindharness.model_from_tarball(_tarball({"xgboost-model": b"UBJ"})) == b"UBJ"
    assert kindharness.model_from_tarball(_tarball({"./xgboost-model": b"x"})) == b"x"
    with pytest.raises(kindharness.E2EError, match="not 'xgboost-model'"):
        kindharness.model_from_tarball(_tarball({"model.json": b"{}"}))
    with pytest.raises(kindharness.E2EError, match="not a valid"):
        kindharness.model_from_tarball(b"not a tarball")


def test_condition_status() -> None:
    obj = {"status": {"conditions": [{"type": "Succeeded", "status": "False"}]}}
    assert kindharness.condition_status(obj, "Succeeded") == "False"
    assert kindharness.condition_status(obj, "Ready") is None
    assert kindharness.condition_status({}, "Succeeded") is None


# --- pins and manifests --------------------------------------------------------------------------


def _minor(version: str) -> tuple[int, int]:
    match = re.match(r"v?(\d+)\.(\d+)\.", version)
    assert match, version
    return int(match.group(1)), int(match.group(2))


def test_node_image_is_built_here_at_the_local_control_plane_version() -> None:
    kindnode = kindharness.load_kindnode()
    assert kindharness.Settings().node_image == ""  # default: scripts/kindnode.py builds it
    assert kindnode.KUBERNETES_VERSION == localcluster.KUBERNETES_VERSION
    assert kindnode.KIND_VERSION == kindharness.KIND_VERSION
    assert _minor(kindnode.KUBERNETES_VERSION) >= (1, 29), "training pods use native sidecars"
    # Every component kubeadm and the kubelet ask for is built under its registry name.
    names = set(kindnode.COMPONENTS)
    assert f"etcd:{kindnode.ETCD_TAG}" in names and f"pause:{kindnode.PAUSE_VERSION}" in names
    assert {
        f"{c}:{kindnode.KUBERNETES_VERSION}"
        for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
    } <= names


def test_kind_config_for_a_local_node_image_has_its_fixes() -> None:
    local = kindharness.kind_config(f"{kindharness.LOCAL_NODE_REPOSITORY}:v1.36.3-0123")
    assert local["networking"]["disableDefaultCNI"] is True
    patches = [yaml.safe_load(patch) for patch in local["kubeadmConfigPatches"]]
    kubelet = next(p for p in patches if p["kind"] == "KubeletConfiguration")
    assert kubelet["failCgroupV1"] is False
    cluster = next(p for p in patches if p["kind"] == "ClusterConfiguration")
    assert cluster["etcd"]["local"]["imageTag"] == kindharness.load_kindnode().ETCD_TAG
    # Another node image (kindest/node, say) gets the config as it is.
    other = kindharness.kind_config("kindest/node:v1.36.1")
    assert other == yaml.safe_load(kindharness.KIND_CONFIG.read_text())


def test_kind_config_maps_the_s3_node_port() -> None:
    config = yaml.safe_load(kindharness.KIND_CONFIG.read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    (node,) = config["nodes"]
    (mapping,) = node["extraPortMappings"]
    _, node_port = kindharness.s3_ports(kindharness.s3_documents())
    assert mapping["containerPort"] == node_port
    # No hostPort: kind picks a free one, so two runs never fight over a port.
    assert "hostPort" not in mapping and mapping["listenAddress"] == "127.0.0.1"


def test_s3_manifest() -> None:
    docs = kindharness.s3_documents()
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    assert kinds == ["Deployment/s3", "Namespace/s3", "Secret/s3-root", "Service/s3"]
    deployment = kindharness.find_document(docs, "Deployment", "s3")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    # What scripts/s3-image.sh tags: moto at the version uv.lock has.
    script = (kindharness.REPO_ROOT / "scripts" / "s3-image.sh").read_text()
    version = re.search(r"KUBEMAKER_MOTO_VERSION:-([\d.]+)", script)
    assert version and container["image"] == f"kubemaker/s3:moto-{version.group(1)}"
    lock = (kindharness.REPO_ROOT / "uv.lock").read_text()
    assert f'name = "moto"\nversion = "{version.group(1)}"' in lock
    assert container["imagePullPolicy"] == "Never"
    access_key, secret_key = kindharness.s3_credentials(docs)
    assert access_key and secret_key
    assert kindharness.s3_ports(docs) == (9000, 30900)
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == kindharness.S3_NAMESPACE
    other = kindharness.s3_documents("example.org/minio:1")
    assert (
        kindharness.find_document(other, "Deployment", "s3")["spec"]["template"]["spec"][
            "containers"
        ][0]["image"]
        == "example.org/minio:1"
    )


def test_e2e_values_point_the_jobs_at_the_s3_server() -> None:
    values = yaml.safe_load(kindharness.E2E_VALUES.read_text())
    storage = values["config"]["storage"]
    service_port, _ = kindharness.s3_ports(kindharness.s3_documents())
    assert storage["s3EndpointUrl"] == (
        f"http://{kindharness.S3_SERVICE}.{kindharness.S3_NAMESPACE}:{service_port}"
    )
    assert storage["credentialsSecret"] == kindharness.CREDENTIALS_SECRET


# --- S3: the data upload and the model download, against moto on loopback -----------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def s3_server(tmp_path: Path) -> Iterator[str]:
    """A moto S3 server (its own process) on a free loopback port, as the in-cluster one."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "moto.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/moto-api/", timeout=2):
                    break
            except OSError as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"moto did not start ({exc}): {(tmp_path / 'moto.log').read_text()}"
                    )
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.mark.dataplane
def test_data_upload_and_model_download(s3_server: str, tmp_path: Path) -> None:
    storage = kindharness.ObjectStorage(
        endpoint=s3_server,
        in_cluster_endpoint="http://s3.s3:9000",
        access_key="kubemaker-e2e",
        secret_key="kubemaker-e2e-password",
    )
    settings = kindharness.Settings.from_env({"KUBEMAKER_E2E_WORKDIR": str(tmp_path)})
    uri, local = kindharness.upload_bank_data(storage, settings)
    kindharness.upload_bank_data(storage, settings)  # again: the bucket exists, no error

    assert uri == "s3://kubemaker-e2e/data/xgboost-bank"
    client = storage.client()
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="kubemaker-e2e")["Contents"])
    assert keys == [f"data/xgboost-bank/{c}/{c}.csv" for c in ("test", "train", "validation")]
    rows = (local / "train" / "train.csv").read_text().splitlines()
    assert storage.get(f"{uri}/train/train.csv").decode().splitlines() == rows

    model = _tarball({"xgboost-model": b"model bytes"})
    client.put_object(Bucket="kubemaker-e2e", Key="ns/output/job/output/model.tar.gz", Body=model)
    got = storage.get("s3://kubemaker-e2e/ns/output/job/output/model.tar.gz")
    assert kindharness.model_from_tarball(got) == b"model bytes"


# --- the TrainingJobs the e2e applies ------------------------------------------------------------


def _bank_job(**kwargs: Any) -> dict[str, Any]:
    return kindharness.build_trainingjob(
        kindharness.bank_example(),
        name=kwargs.pop("name", "xgboost-bank"),
        namespace="e2e-test",
        data_uri="s3://kubemaker-e2e/data/xgboost-bank",
        output_uri="s3://kubemaker-e2e/e2e-test/output",
        **kwargs,
    )


def test_bank_trainingjob_reads_and_writes_s3() -> None:
    job = _bank_job()
    assert job["metadata"] == {"name": "xgboost-bank", "namespace": "e2e-test"}
    spec = TrainingJobSpec.model_validate(job["spec"])
    channels = {c.channel_name: c.source_uri for c in spec.input_data_config or ()}
    assert channels == {
        "train": "s3://kubemaker-e2e/data/xgboost-bank/train",
        "validation": "s3://kubemaker-e2e/data/xgboost-bank/validation",
    }
    assert spec.output_data_config.s3_output_path == "s3://kubemaker-e2e/e2e-test/output"
    assert spec.resource_config.instance_type == "ml.m5.xlarge"
    # The example's hyperparameters are valid for the XGBoost image...
    validate(dict(spec.hyper_parameters or {}))
    # ...and the example itself is left as it was.
    assert (
        "kubemaker-examples"
        in kindharness.bank_example()["spec"]["outputDataConfig"]["s3OutputPath"]
    )


def test_bad_hyperparameter_job_is_rejected_by_the_algorithm() -> None:
    job = _bank_job(name="bad-eta", hyperparameters={"eta": "1.5"})
    spec = TrainingJobSpec.model_validate(job["spec"])  # the API accepts it...
    assert spec.hyper_parameters is not None and spec.hyper_parameters["max_depth"] == "5"
    with pytest.raises(HyperparameterError, match=r"Hyperparameter eta: 1\.5"):
        validate(dict(spec.hyper_parameters))  # ...the algorithm does not


# --- the chart with the e2e values ---------------------------------------------------------------


def _render_chart(settings: kindharness.Settings) -> dict[tuple[str, str], Any]:
    """``helm template`` of the chart with the e2e values: (kind, name) -> document."""
    helm = Path(localcluster.binary("helm"))
    if not helm.is_file():
        pytest.skip(f"{helm} is not built: `make cluster-binaries`")
    rendered = subprocess.run(
        [str(helm), "template", kindharness.RELEASE, str(kindharness.CHART),
         "--namespace", kindharness.OPERATOR_NAMESPACE,
         *kindharness.helm_values_args(settings)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(rendered.stdout) if d}


def test_chart_renders_the_pull_policy_for_another_cluster(tmp_path: Path) -> None:
    # values-e2e.yaml says Never (kind); the harness's values file wins over it.
    settings = kindharness.Settings.from_env(
        {
            "KUBEMAKER_E2E_KUBECONFIG": str(_kubeconfig(tmp_path)),
            "KUBEMAKER_E2E_WORKDIR": str(tmp_path / "work"),
            "KUBEMAKER_E2E_IMAGE_PREFIX": "registry.example.com/team",
        }
    )
    docs = _render_chart(settings)
    (container,) = docs[("Deployment", kindharness.RELEASE)]["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["image"] == "registry.example.com/team/operator:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    config_map = docs[("ConfigMap", f"{kindharness.RELEASE}-config")]
    config = OperatorConfig.model_validate(yaml.safe_load(config_map["data"]["config.yaml"]))
    assert config.images.pull_policy == "IfNotPresent"
    assert config.images.frameworks["mxnet"] == "registry.example.com/team/mxnet:0.1.0"


def test_chart_renders_with_the_e2e_values(tmp_path: Path) -> None:
    settings = kindharness.Settings.from_env({"KUBEMAKER_E2E_WORKDIR": str(tmp_path)})
    docs = _render_chart(settings)
    deployment = docs[("Deployment", kindharness.RELEASE)]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/kubemaker/operator:0.1.0"
    assert container["imagePullPolicy"] == "Never"
    config_map = docs[("ConfigMap", f"{kindharness.RELEASE}-config")]
    config = OperatorConfig.model_validate(yaml.safe_load(config_map["data"]["config.yaml"]))
    assert config.images.agent == "ghcr.io/kubemaker/runtime:0.1.0"
    assert config.images.algorithms["xgboost"] == "ghcr.io/kubemaker/xgboost:0.1.0"
    assert config.images.frameworks["mxnet"] == "ghcr.io/kubemaker/mxnet:0.1.0"
    assert config.images.frameworks["xgboost"] == "ghcr.io/kubemaker/xgboost:0.1.0"
    assert config.images.pull_policy == "Never"
    assert config.storage.s3_endpoint_url == "http://s3.s3:9000"
    assert config.storage.credentials_secret == kindharness.CREDENTIALS_SECRET
    # The job's instance type fits a small kind node; the rest of the catalog is kept.
    assert config.instance_types["ml.m5.xlarge"].cpu == "500m"
    assert config.instance_types["ml.m5.xlarge"].memory == "1Gi"
    assert "ml.p3.2xlarge" in config.instance_types


# --- the Dockerfiles the e2e builds --------------------------------------------------------------


def _dockerfile_instructions(text: str) -> list[str]:
    """Instructions with their continuation lines joined; heredoc bodies dropped."""
    instructions: list[str] = []
    lines = iter(text.splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.rstrip().endswith("\\"):
            line = line.rstrip()[:-1] + " " + next(lines, "")
        heredoc = re.search(r"<<-?'?\"?(\w+)'?\"?", line)
        if heredoc:
            for body in lines:
                if body.strip() == heredoc.group(1):
                    break
        instructions.append(line.strip())
    return instructions


def _dockerignore_allows(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = Path(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    allowed = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        cleaned = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(c, cleaned) for c in candidates):
            allowed = negate
    return allowed


@pytest.mark.parametrize("dockerfile", sorted(kindharness.DOCKERFILES.values()))
def test_dockerfile_copies_what_the_build_context_has(dockerfile: str) -> None:
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = [i for i in _dockerfile_instructions((REPO_ROOT / dockerfile).read_text())
              if i.split()[0].upper() in ("COPY", "ADD")]  # fmt: skip
    assert copies
    for instruction in copies:
        words = shlex.split(instruction)[1:]
        if any(w.startswith("--from") for w in words):
            continue  # from another stage, not from the context
        sources = [w for w in words if not w.startswith("--")][:-1]
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"{dockerfile}: `{instruction}`: no {source}"
            assert _dockerignore_allows(source, patterns), (
                f"{dockerfile}: `{instruction}`: .dockerignore leaves {source} out"
            )
