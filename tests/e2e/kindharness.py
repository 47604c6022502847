"""kubemaker end to end with real containers: the cluster the e2e tests run in.

    python tests/e2e/kindharness.py build   # build (or reuse) kind, kubectl, helm; print them
    python tests/e2e/kindharness.py down    # delete the e2e cluster (say, one kept with
                                            # KUBEMAKER_E2E_KEEP=1), or with
                                            # KUBEMAKER_E2E_KUBECONFIG what the e2e installed

The tests (``tests/e2e``, ``make e2e-kind``) call :func:`set_up`, which by default (kind)

1. builds the pinned ``kind`` from its Go module into ``$KUBEMAKER_CACHE/bin/kind-<version>``
   with the build code of ``tests/cluster/localcluster.py`` (which also provides kubectl
   and helm at the versions the rest of the tests use);
2. builds (or reuses) the kind node image on this machine, offline
   (``scripts/kindnode.py``), unless ``KUBEMAKER_E2E_NODE_IMAGE`` names one;
3. builds (or reuses) the operator, runtime (agent), xgboost and mxnet images with
   ``scripts/images.sh`` and the object storage image (moto's S3 server) with
   ``scripts/s3-image.sh``;
4. creates the kind cluster and loads the images into it;
5. installs the object storage from ``manifests/s3.yaml``, creates the bucket and uploads
   the bank-marketing channels with ``examples/xgboost-bank/prepare.py --upload``;
6. installs ``charts/kubemaker`` with ``manifests/values-e2e.yaml`` plus the image
   references and pull policy, the in-cluster S3 as the default storage of the jobs.

With ``KUBEMAKER_E2E_KUBECONFIG`` it uses that cluster instead (:class:`ExistingCluster`):
no kind, no node image, nothing loaded (the cluster pulls the images, pull policy
``IfNotPresent``), S3 reached through ``kubectl port-forward``, and at the end only what
the harness installed is removed. Both kinds of cluster offer the tests the same
:class:`Cluster` interface.

Every setting comes from the environment (:meth:`Settings.from_env`, table in
docs/e2e.md). Nothing here sleeps for a fixed time: each wait polls a condition with a
deadline. This module needs the project's virtualenv (PyYAML; boto3 for S3).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import importlib.util
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
E2E_DIR = Path(__file__).resolve().parent
MANIFESTS = E2E_DIR / "manifests"
KIND_CONFIG = MANIFESTS / "kind-config.yaml"
S3_MANIFEST = MANIFESTS / "s3.yaml"
E2E_VALUES = MANIFESTS / "values-e2e.yaml"
CHART = REPO_ROOT / "charts" / "kubemaker"
CHART_CRDS = CHART / "crds"
BANK_EXAMPLE = REPO_ROOT / "examples" / "xgboost-bank" / "trainingjob-s3.yaml"
BANK_PREPARE = REPO_ROOT / "examples" / "xgboost-bank" / "prepare.py"
IMAGES_SCRIPT = REPO_ROOT / "scripts" / "images.sh"
S3_IMAGE_SCRIPT = REPO_ROOT / "scripts" / "s3-image.sh"
KINDNODE_SCRIPT = REPO_ROOT / "scripts" / "kindnode.py"

# --- pinned versions -----------------------------------------------------------------------
# kind and the node image's contents (Kubernetes = the local control plane's v1.36.3,
# containerd, CoreDNS, ...) are pinned in scripts/kindnode.py, which builds the node
# image here; native sidecars, which training pods use, are GA since Kubernetes 1.33.
KIND_VERSION = "v0.32.0"
# The default node image: the one scripts/kindnode.py builds (kubemaker/kind-node:...).
LOCAL_NODE_REPOSITORY = "kubemaker/kind-node"

RELEASE = "kubemaker"
OPERATOR_NAMESPACE = "kubemaker"
S3_NAMESPACE = "s3"
S3_SERVICE = "s3"
S3_ROOT_SECRET = "s3-root"
# The Secret each job namespace gets; values-e2e.yaml names it as config.storage.credentialsSecret.
CREDENTIALS_SECRET = "s3-credentials"
S3_REGION = "us-east-1"
# The Pod Security level the test namespaces enforce (the operator's pods must pass it).
POD_SECURITY_LEVEL = "restricted"
BANK_DATA_PREFIX = "data/xgboost-bank"
# The images the tests build with scripts/images.sh: name -> Dockerfile (context: the
# repository root).
DOCKERFILES = {
    "operator": "Dockerfile",
    "runtime": "images/runtime/Dockerfile",
    "xgboost": "images/xgboost/Dockerfile",
    # The framework image of script mode (the chart's config.images.frameworks.mxnet).
    "mxnet": "images/mxnet/Dockerfile",
}
# imagePullPolicy values Kubernetes knows (KUBEMAKER_E2E_PULL_POLICY).
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})

T = TypeVar("T")


class E2EError(RuntimeError):
    """A step of the e2e setup failed; the text says which and why."""


def _stderr_log(message: str) -> None:
    print(f"[e2e] {message}", file=sys.stderr, flush=True)


# --- the local control plane's build code, reused -------------------------------------------


def load_localcluster() -> ModuleType:
    """tests/cluster/localcluster.py (standard library only), loaded by path.

    Under the module name tests/cluster/conftest.py gives it, so a session that runs
    both suites shares one copy.
    """
    name = "kubemaker_localcluster"
    if name in sys.modules:
        return sys.modules[name]
    path = REPO_ROOT / "tests" / "cluster" / "localcluster.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


localcluster = load_localcluster()


# --- settings ---------------------------------------------------------------------------------


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{name}={raw!r}: expected 1/0, true/false, yes/no")


def _seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{name}={raw!r}: must be positive")
    return value


def _text(environ: Mapping[str, str], name: str, default: str) -> str:
    return (environ.get(name) or "").strip() or default


def _existing_file(environ: Mapping[str, str], name: str) -> Path | None:
    """A file named by ``name`` (``~`` expanded, made absolute), None when unset."""
    raw = (environ.get(name) or "").strip()
    if not raw:
        return None
    path = Path(raw).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"{name}={raw!r}: no such file ({path})")
    return path


def _pull_policy(environ: Mapping[str, str], name: str, default: str) -> str:
    """One of Kubernetes' imagePullPolicy values, spelled as Kubernetes wants it."""
    raw = (environ.get(name) or "").strip()
    if not raw:
        return default
    for policy in PULL_POLICIES:
        if raw.lower() == policy.lower():
            return policy
    raise ValueError(f"{name}={raw!r}: expected one of {', '.join(PULL_POLICIES)}")


@dataclass(frozen=True)
class Settings:
    """What the e2e run does; every field has an environment variable (see from_env)."""

    cluster_name: str = "kubemaker-e2e"
    kind_version: str = KIND_VERSION
    node_image: str = ""  # empty: built here by scripts/kindnode.py
    # What scripts/images.sh tags (the chart's defaults); another prefix or tag is a
    # `docker tag` of those.
    image_prefix: str = "ghcr.io/kubemaker"
    image_tag: str = "0.1.0"
    build_images: bool = True
    keep: bool = False
    require_docker: bool = False  # default: True where CI=true
    s3_image: str = ""  # empty: built by scripts/s3-image.sh
    bucket: str = "kubemaker-e2e"
    build_timeout: float = 2400.0  # per image
    setup_timeout: float = 600.0  # cluster creation, rollouts, helm
    job_timeout: float = 900.0  # one TrainingJob, apply to end
    workdir: Path = REPO_ROOT / ".work" / "e2e"
    # Another cluster: its kubeconfig (None: the harness's kind cluster) and context.
    existing_kubeconfig: Path | None = None
    context: str = ""  # empty: the kubeconfig's current context
    # Of our images and the S3 server's; from_env defaults it to IfNotPresent on another
    # cluster, which must pull them (kind's node has them loaded: Never).
    pull_policy: str = "Never"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``KUBEMAKER_E2E_*``; ValueError naming the variable if one is bad."""
        env = os.environ if environ is None else environ
        d = cls()
        workdir = env.get("KUBEMAKER_E2E_WORKDIR")
        existing = _existing_file(env, "KUBEMAKER_E2E_KUBECONFIG")
        context = _text(env, "KUBEMAKER_E2E_CONTEXT", d.context)
        if context and existing is None:
            # kind's kubeconfig has one context; naming another would be ignored silently.
            raise ValueError(
                f"KUBEMAKER_E2E_CONTEXT={context!r} needs KUBEMAKER_E2E_KUBECONFIG (the "
                "kubeconfig holding that context); the kind cluster has its own kubeconfig"
            )
        return cls(
            existing_kubeconfig=existing,
            context=context,
            pull_policy=_pull_policy(
                env, "KUBEMAKER_E2E_PULL_POLICY", "IfNotPresent" if existing else d.pull_policy
            ),
            cluster_name=_text(env, "KUBEMAKER_E2E_CLUSTER", d.cluster_name),
            kind_version=_text(env, "KUBEMAKER_E2E_KIND_VERSION", d.kind_version),
            node_image=_text(env, "KUBEMAKER_E2E_NODE_IMAGE", d.node_image),
            image_prefix=_text(env, "KUBEMAKER_E2E_IMAGE_PREFIX", d.image_prefix).rstrip("/"),
            image_tag=_text(env, "KUBEMAKER_E2E_IMAGE_TAG", d.image_tag),
            build_images=_flag(env, "KUBEMAKER_E2E_BUILD", d.build_images),
            keep=_flag(env, "KUBEMAKER_E2E_KEEP", d.keep),
            # CI=true (what CI services set; .ci/run's `make test`): the e2e tests must run.
            require_docker=_flag(
                env,
                "KUBEMAKER_E2E_REQUIRE",
                (env.get("CI") or "").strip().lower() in TRUE_WORDS or d.require_docker,
            ),
            s3_image=_text(env, "KUBEMAKER_E2E_S3_IMAGE", d.s3_image),
            bucket=_text(env, "KUBEMAKER_E2E_BUCKET", d.bucket),
            build_timeout=_seconds(env, "KUBEMAKER_E2E_BUILD_TIMEOUT", d.build_timeout),
            setup_timeout=_seconds(env, "KUBEMAKER_E2E_SETUP_TIMEOUT", d.setup_timeout),
            job_timeout=_seconds(env, "KUBEMAKER_E2E_JOB_TIMEOUT", d.job_timeout),
            workdir=Path(workdir).resolve() if workdir else d.workdir,
        )

    def image(self, name: str) -> str:
        """Reference of one of the images the tests build: ``ghcr.io/kubemaker/operator:0.1.0``."""
        return f"{self.image_prefix}/{name}:{self.image_tag}"

    @property
    def existing(self) -> bool:
        """The tests run against a cluster the harness did not make (KUBEMAKER_E2E_KUBECONFIG)."""
        return self.existing_kubeconfig is not None

    @property
    def cluster_dir(self) -> Path:
        return self.workdir / self.cluster_name

    @property
    def kubeconfig(self) -> Path:
        """The kubeconfig of every client of the tests: kind's (written by the harness), or
        KUBEMAKER_E2E_KUBECONFIG itself. With KUBEMAKER_E2E_CONTEXT, a copy holding that
        context alone as the current one (written by :meth:`ExistingCluster.open`): programs
        the tests start with it (the SDK) read the current context, and must reach the
        cluster kubectl and helm installed into."""
        if self.existing_kubeconfig is None:
            return self.cluster_dir / "kubeconfig"
        if self.context:
            return self.cluster_dir / f"kubeconfig-{re.sub(r'[^A-Za-z0-9_.-]', '_', self.context)}"
        return self.existing_kubeconfig


# --- Docker -------------------------------------------------------------------------------------


def docker_engine_problem(timeout: float = 30.0) -> str | None:
    """Why no Docker engine can be used here, or None when one answers."""
    docker = docker_client()
    if docker is None:
        return "the `docker` command is not installed"
    try:
        result = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"`docker info` did not answer within {timeout:.0f}s"
    version = result.stdout.strip()
    if result.returncode == 0 and version:
        return None
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    if lines and lines[-1].startswith("template:"):
        # The 20.10 client says only that its template failed; plain `docker info` says why.
        with contextlib.suppress(subprocess.TimeoutExpired):
            plain = subprocess.run(
                [docker, "info"], capture_output=True, text=True, timeout=timeout, check=False
            )
            said = (plain.stdout + plain.stderr).splitlines()
            lines = [line.strip() for line in said if "ERROR:" in line] or lines
    detail = lines[-1] if lines else f"exit code {result.returncode}"
    return f"no Docker engine answers (`docker info`: {detail})"


def kind_node_problem(node_image: str, docker: str = "docker", timeout: float = 5.0) -> str | None:
    """Why kind cannot create a cluster here, or None.

    The default node image (``node_image`` empty) is built here by scripts/kindnode.py,
    which needs the Go toolchain, debootstrap (as root, for the node's Debian) and a C
    compiler (pause); another one must be on the engine or a registry must answer.
    """
    if not node_image:
        missing = [tool for tool in ("go", "cc", "tar") if shutil.which(tool) is None]
        if shutil.which("debootstrap") is None and shutil.which("apt-get") is None:
            missing.append("debootstrap")
        if os.geteuid() != 0:
            missing.append("root (debootstrap)")
        if missing:
            return (
                "kind e2e skipped: the kind node image is built on this machine "
                f"(scripts/kindnode.py), which needs {', '.join(missing)}; or name a node "
                "image with KUBEMAKER_E2E_NODE_IMAGE (see docs/e2e.md)"
            )
        return None
    found = subprocess.run(
        [docker, "image", "inspect", node_image], capture_output=True, timeout=60, check=False
    )
    if found.returncode == 0:
        return None
    try:
        socket.create_connection(("registry-1.docker.io", 443), timeout=timeout).close()
    except OSError as exc:
        return (
            f"kind e2e skipped: the node image {node_image} (KUBEMAKER_E2E_NODE_IMAGE) is not "
            f"on this engine and no registry answers (registry-1.docker.io: {exc}); leave "
            "KUBEMAKER_E2E_NODE_IMAGE empty to build one here (see docs/e2e.md)"
        )
    return None


def skip_message(problem: str, *, existing: bool = False) -> str:
    """The reason an e2e test is skipped on a machine without a Docker engine;
    ``existing``: a cluster test against KUBEMAKER_E2E_KUBECONFIG, which needs Docker
    only to build the images."""
    if existing:
        return (
            f"e2e skipped: {problem}. KUBEMAKER_E2E_BUILD=1 builds the images here with "
            "Docker before the tests run against the cluster of KUBEMAKER_E2E_KUBECONFIG: "
            "with the images pushed where that cluster pulls from, set "
            'KUBEMAKER_E2E_BUILD=0 (see docs/e2e.md, "Against another cluster").'
        )
    return (
        f"kind e2e skipped: {problem}. These tests run real containers in a kind "
        "cluster and need a running Docker engine: on a machine with one, run "
        "`make e2e-kind` (see docs/e2e.md)."
    )


def without_skip_prefix(message: str) -> str:
    """A skip reason as the middle of a sentence (the fixtures' failure under REQUIRE)."""
    return re.sub(r"^(kind )?e2e skipped: ", "", message)


def cluster_needs_docker(settings: Settings) -> bool:
    """Whether the cluster tests need a Docker engine here: kind runs on it and its images
    are loaded from it; another cluster pulls them, so only building them needs one."""
    return not settings.existing or settings.build_images


def e2e_problem(
    settings: Settings,
    *,
    uses_cluster: bool,
    docker_problem: Callable[[], str | None],
    node_problem: Callable[[], str | None],
) -> str | None:
    """Why one e2e test cannot run here (its skip reason), or None.

    ``uses_cluster``: the test uses the cluster (the ``kind_env`` fixture); the others
    (tests/e2e/test_images.py) run containers with Docker. The probes (``docker info``,
    the node image's prerequisites) are called only when the answer depends on them, so
    a run against another cluster with KUBEMAKER_E2E_BUILD=0 never asks for Docker.
    """
    if not uses_cluster or cluster_needs_docker(settings):
        problem = docker_problem()
        if problem is not None:
            return skip_message(problem, existing=uses_cluster and settings.existing)
    if uses_cluster and not settings.existing:
        return node_problem()
    return None


def docker_platform_of(inspect_json: Sequence[Mapping[str, Any]]) -> str:
    """``os/arch[/variant]`` of an image from ``docker image inspect`` output (pure)."""
    image = inspect_json[0]
    platform = f"{image.get('Os') or 'linux'}/{image['Architecture']}"
    return f"{platform}/{image['Variant']}" if image.get("Variant") else platform


def parse_docker_port(text: str) -> int:
    """The host port in ``docker port`` output (``127.0.0.1:41234``, maybe also ``[::1]:…``)."""
    for line in text.strip().splitlines():
        host, _, port = line.strip().rpartition(":")
        if host and port.isdigit():
            return int(port)
    raise E2EError(f"no host port in `docker port` output: {text!r}")


# --- running commands ---------------------------------------------------------------------------


def run(
    command: Sequence[str | Path],
    *,
    input: str | None = None,
    timeout: float = 120.0,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output; E2EError with its stderr when it fails."""
    args = [str(part) for part in command]
    try:
        result = subprocess.run(
            args,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as exc:
        raise E2EError(f"`{' '.join(args)}` did not finish within {timeout:.0f}s") from exc
    if check and result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip())[-4000:]
        raise E2EError(f"`{' '.join(args)}` exited {result.returncode}:\n{output}")
    return result


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    *,
    interval: float = 0.5,
    max_interval: float = 5.0,
    describe: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something truthy; at the deadline, E2EError
    naming ``what`` (and what ``describe`` says about the last state)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"; last seen: {describe()}" if describe is not None else ""
            raise E2EError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)
        interval = min(interval * 1.5, max_interval)


# --- tools: kind, kubectl, helm -------------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    kind: Path | None  # None against another cluster: no kind there
    kubectl: Path
    helm: Path
    docker: str | None  # None where no client is installed (another cluster, no build)


def kind_go_build(version: str) -> Any:
    """kind as one of localcluster's Go builds (kind's go.mod has no replace directives)."""
    return localcluster.GoBuild(
        name="kind",
        module="sigs.k8s.io/kind",
        version=version,
        binaries={"kind": "sigs.k8s.io/kind"},
    )


def kind_binary(version: str) -> Path:
    return Path(localcluster.cache_dir()) / "bin" / f"kind-{version}"


def build_kind(version: str = KIND_VERSION, log: Callable[[str], None] = _stderr_log) -> Path:
    """Build (or reuse) ``$KUBEMAKER_CACHE/bin/kind-<version>`` from the Go module proxy."""
    path = kind_binary(version)
    if not path.is_file():
        started = time.monotonic()
        localcluster.ensure_built([kind_go_build(version)])
        log(f"built kind {version} in {time.monotonic() - started:.0f}s: {path}")
    return path


def build_pinned(names: Sequence[str], log: Callable[[str], None] = _stderr_log) -> dict[str, Path]:
    """Build the named binaries of localcluster (kubectl, helm) if missing, and only those:
    the e2e needs no kube-apiserver or etcd."""
    builds = []
    for build in localcluster.BUILDS:
        wanted = {n: p for n, p in build.binaries.items() if n in names}
        missing = {n: p for n, p in wanted.items() if not localcluster.binary(n).is_file()}
        if missing and missing != build.binaries:
            # A build of part of a module's commands: its own source dir name.
            build = dataclasses.replace(
                build, name=f"{build.name}-{'-'.join(sorted(missing))}", binaries=missing
            )
        if missing:
            builds.append(build)
    started = time.monotonic()
    if builds:
        localcluster.ensure_built(builds)
        log(f"built {', '.join(sorted(names))} in {time.monotonic() - started:.0f}s")
    return {name: Path(localcluster.binary(name)) for name in names}


def docker_client() -> str | None:
    """The Docker client the harness and kind use: $KUBEMAKER_DOCKER, else Debian's
    /usr/bin/docker (docker.io, the engine's own 20.10 client, which builds without
    buildx; a newer client earlier on PATH may want buildx), else `docker` on PATH."""
    for candidate in (os.environ.get("KUBEMAKER_DOCKER"), "/usr/bin/docker"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("docker")


def build_tools(settings: Settings, log: Callable[[str], None] = _stderr_log) -> Tools:
    docker = docker_client()
    if docker is None and cluster_needs_docker(settings):
        raise E2EError("the `docker` command is not installed")
    pinned = build_pinned(["kubectl", "helm"], log)
    return Tools(
        kind=None if settings.existing else build_kind(settings.kind_version, log),
        kubectl=pinned["kubectl"],
        helm=pinned["helm"],
        docker=docker,
    )


def _docker(tools: Tools) -> str:
    if tools.docker is None:
        raise E2EError("the `docker` command is not installed")
    return tools.docker


# --- images -----------------------------------------------------------------------------------


def _script(command: Sequence[str | Path], what: str, settings: Settings, log_name: str) -> str:
    """Run one of our build scripts; its stdout (stripped). Its log in build-logs/."""
    logs_dir = settings.workdir / "build-logs"
    logs_dir.mkdir(parents=True, exist_ok=True)
    build_log = logs_dir / f"{log_name}.log"
    result = run(command, cwd=REPO_ROOT, timeout=settings.build_timeout, check=False)
    build_log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-60:])
        raise E2EError(f"{what} failed (exit {result.returncode}); full log: {build_log}\n{tail}")
    return result.stdout.strip()


def build_node_image(settings: Settings, log: Callable[[str], None]) -> str:
    """The node image: KUBEMAKER_E2E_NODE_IMAGE, else built (or reused) by scripts/kindnode.py."""
    if settings.node_image:
        return settings.node_image
    log("building (or reusing) the kind node image: scripts/kindnode.py build")
    output = _script(
        [sys.executable, KINDNODE_SCRIPT, "build"], "scripts/kindnode.py build", settings,
        "kind-node",
    )  # fmt: skip
    image = output.splitlines()[-1]
    log(f"node image {image}")
    return image


def s3_image_problem(settings: Settings) -> str | None:
    """Why the S3 server's image cannot be had, or None (pure).

    Another cluster pulls it: with KUBEMAKER_E2E_BUILD=0 nothing is built here, so it
    must be named. (With the build on, the one built here is used; the cluster may not
    be able to pull it, docs/e2e.md says so.)
    """
    if settings.existing and not settings.build_images and not settings.s3_image:
        return (
            "KUBEMAKER_E2E_S3_IMAGE is empty: against another cluster "
            "(KUBEMAKER_E2E_KUBECONFIG) with KUBEMAKER_E2E_BUILD=0 nothing is built here, so "
            "set KUBEMAKER_E2E_S3_IMAGE to an S3 server image (port 9000) that cluster can "
            "pull, e.g. the kubemaker/s3 image of scripts/s3-image.sh pushed to your "
            'registry (see docs/e2e.md, "Against another cluster")'
        )
    return None


def push_hint(refs: Sequence[str]) -> str:
    """What to do with images built here for another cluster, which pulls them (pure)."""
    pushes = "; ".join(f"docker push {ref}" for ref in refs)
    return (
        "the cluster of KUBEMAKER_E2E_KUBECONFIG pulls the images: they were built here, "
        f"not pushed. Push them where it pulls from ({pushes}) if it cannot already pull "
        "this version"
    )


def build_images(settings: Settings, tools: Tools, log: Callable[[str], None]) -> list[str]:
    """Our images with scripts/images.sh (with KUBEMAKER_E2E_BUILD=0: check they exist, or
    on another cluster, which pulls them, take them as named) and the S3 server's image
    with scripts/s3-image.sh; their references, the S3 one last."""
    refs = [settings.image(name) for name in DOCKERFILES]
    if not settings.build_images and settings.existing:
        # Only the cluster can say whether it can pull them; no Docker is needed here.
        log(f"the cluster pulls {', '.join(refs)} (KUBEMAKER_E2E_BUILD=0)")
    elif not settings.build_images:
        for ref in refs:
            found = run([_docker(tools), "image", "inspect", ref], check=False)
            if found.returncode != 0:
                raise E2EError(f"KUBEMAKER_E2E_BUILD=0 but there is no image {ref}: build it first")
            log(f"using the existing image {ref}")
    else:
        log(f"scripts/images.sh {' '.join(DOCKERFILES)}")
        output = _script([IMAGES_SCRIPT, *DOCKERFILES], "scripts/images.sh", settings, "images")
        for line in output.splitlines():
            log(line)
        version = os.environ.get("KUBEMAKER_IMAGE_VERSION") or "0.1.0"
        for name, ref in zip(DOCKERFILES, refs, strict=True):
            built = f"ghcr.io/kubemaker/{name}:{version}"
            if built != ref:
                run([_docker(tools), "tag", built, ref])
        if settings.existing:
            log(push_hint(refs))
    # The S3 server's image last (set_up installs it); cached, so built even with BUILD=0
    # for kind.
    problem = s3_image_problem(settings)
    if problem is not None:
        raise E2EError(problem)
    if settings.s3_image:
        s3_image = settings.s3_image
    else:
        s3_image = _script([S3_IMAGE_SCRIPT], "scripts/s3-image.sh", settings, "s3-image")
        s3_image = s3_image.splitlines()[-1]
        log(f"object storage image {s3_image}")
        if settings.existing:
            log(
                f"the S3 server's image {s3_image} was built here: the cluster must be able "
                "to pull it (else set KUBEMAKER_E2E_S3_IMAGE to one it can)"
            )
    return [*refs, s3_image]


def kind_config(node_image: str) -> dict[str, Any]:
    """manifests/kind-config.yaml, with what a node image of scripts/kindnode.py needs
    (kubeadm's etcd tag, no default CNI, a cgroup v1 host) when it is one (pure)."""
    config = dict(yaml.safe_load(KIND_CONFIG.read_text()))
    if node_image.split(":", 1)[0] == LOCAL_NODE_REPOSITORY:
        kindnode = load_kindnode()
        config["networking"] = {**config.get("networking", {}), **kindnode.KIND_NETWORKING}
        config["kubeadmConfigPatches"] = [
            *config.get("kubeadmConfigPatches", []),
            *kindnode.KIND_CONFIG_PATCHES,
        ]
    return config


def load_kindnode() -> ModuleType:
    """scripts/kindnode.py (standard library only), loaded by path."""
    name = "kubemaker_kindnode"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, KINDNODE_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# --- the clusters ---------------------------------------------------------------------------------

# What the diagnostics say instead of the node journals on a cluster that is not ours.
NODE_LOGS_NOTE = (
    "not collected: the kubelet and containerd journals are read with `docker exec` into "
    "the node container of the harness's kind cluster; this cluster "
    "(KUBEMAKER_E2E_KUBECONFIG) has no such node here, see its own node logs"
)


def context_kubeconfig_command(kubectl: str | Path, source: Path, context: str) -> list[str]:
    """kubectl printing a kubeconfig of ``context`` alone, as the current context, its
    certificate files embedded (so the copy works from any folder) (pure)."""
    return [
        str(kubectl), "config", "view", "--raw", "--minify", "--flatten",
        "--kubeconfig", str(source), "--context", context,
    ]  # fmt: skip


def port_forward_command(
    kubectl: str | Path, kubeconfig: Path, context: str, local_port: int, service_port: int
) -> list[str]:
    """``kubectl port-forward`` of the S3 Service to ``local_port`` on this machine's
    loopback (pure)."""
    command = [str(kubectl), "--kubeconfig", str(kubeconfig)]
    if context:
        command += ["--context", context]
    return [
        *command, "port-forward", "-n", S3_NAMESPACE, f"svc/{S3_SERVICE}",
        f"{local_port}:{service_port}", "--address", "127.0.0.1",
    ]  # fmt: skip


def free_local_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS's pick: two runs never collide)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """What the tests use of the cluster, kind or not: kubectl and helm against it, how S3
    is reached from this machine, the diagnostics, and what the end removes."""

    settings: Settings
    tools: Tools
    log: Callable[[str], None] = _stderr_log

    @property
    def name(self) -> str:
        return self.settings.cluster_name

    @property
    def node_container(self) -> str | None:
        """The Docker container of the (one) node, where the tests can reach it; None."""
        return None

    def client_args(self) -> list[str]:
        """kubectl's flags naming the cluster."""
        return ["--kubeconfig", str(self.settings.kubeconfig)]

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run(
            [self.tools.kubectl, *self.client_args(), *args],
            input=input,
            timeout=timeout,
            check=check,
        )

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def apply(self, documents: Sequence[Mapping[str, Any]], *args: str) -> None:
        # As JSON: YAML written by PyYAML may be read differently by kubectl's YAML 1.1
        # parser (an unquoted `y` is a boolean there).
        items = {"apiVersion": "v1", "kind": "List", "items": list(documents)}
        self.kubectl("apply", *args, "-f", "-", input=json.dumps(items))

    def helm_args(self) -> list[str]:
        return ["--kubeconfig", str(self.settings.kubeconfig)]

    def open(self) -> bool:
        """Make the cluster ready for the installs; True when this call created it."""
        raise NotImplementedError

    def reach_s3(self, service_port: int, node_port: int) -> str:
        """The S3 server's endpoint from this machine, once it answers there."""
        raise NotImplementedError

    def node_logs(self, directory: Path) -> tuple[list[tuple[str, str]], str]:
        """The nodes' logs for the diagnostics: (title, text) sections and where the rest
        went (appended to the summary's first line)."""
        raise NotImplementedError

    def export_logs(self, directory: Path) -> None:
        """Node-level logs for a failure's post mortem, under ``directory``."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop what runs on this machine for the cluster (nothing, for kind)."""

    def remove(self) -> None:
        """Remove what the e2e made (at the end, unless KUBEMAKER_E2E_KEEP=1)."""
        raise NotImplementedError

    def keep_message(self) -> str:
        raise NotImplementedError


@dataclass
class KindCluster(Cluster):
    node_image: str = ""  # what set_up built or the settings name
    created_here: bool = False  # this process ran `kind create` (even if it failed)

    @property
    def node_container(self) -> str:
        # The one node: kind names its container <cluster>-control-plane.
        return f"{self.name}-control-plane"

    def kind(self, *args: str, timeout: float = 120.0, check: bool = True) -> str:
        if self.tools.kind is None:
            raise E2EError("kind is not built (KindCluster with the tools of another cluster)")
        # kind shells out to `docker`: the client of build_tools first on its PATH.
        path = f"{Path(_docker(self.tools)).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        env = {**os.environ, "PATH": path}
        return run([self.tools.kind, *args], timeout=timeout, check=check, env=env).stdout

    def exists(self) -> bool:
        clusters = self.kind("get", "clusters", timeout=60).split()
        return self.name in clusters

    def open(self) -> bool:
        return self.create()

    def create(self) -> bool:
        """Create the cluster, or reuse one of that name. True when this call created it."""
        self.settings.cluster_dir.mkdir(parents=True, exist_ok=True)
        if self.exists():
            self.log(f"reusing the kind cluster {self.name!r}")
            kubeconfig = self.kind("get", "kubeconfig", "--name", self.name)
            self.settings.kubeconfig.write_text(kubeconfig)
            self.settings.kubeconfig.chmod(0o600)
            return False
        image = self.node_image or self.settings.node_image
        self.log(f"creating the kind cluster {self.name!r} ({image})")
        wait = int(self.settings.setup_timeout)
        config = self.settings.cluster_dir / "kind-config.yaml"
        config.write_text(yaml.safe_dump(kind_config(image), sort_keys=False))
        self.created_here = True
        self.kind(
            "create",
            "cluster",
            "--name",
            self.name,
            "--image",
            image,
            "--config",
            str(config),
            # Its own kubeconfig: never ~/.kube/config.
            "--kubeconfig",
            str(self.settings.kubeconfig),
            f"--wait={wait}s",
            # A failed create keeps the node, for the diagnostics (node journals); set_up
            # deletes it after.
            "--retain",
            timeout=wait + 300,
        )
        self.wait_for_system_pods()
        return True

    def wait_for_system_pods(self) -> None:
        """CoreDNS and kube-proxy Ready (right after `kind create` the CoreDNS pods may not
        exist yet, and `kubectl wait` on no pods fails at once)."""
        timeout = self.settings.setup_timeout
        for label in ("k8s-app=kube-dns", "k8s-app=kube-proxy"):
            wait_for(
                f"pods {label} in kube-system",
                lambda label=label: self.kubectl(
                    "get", "pods", "-n", "kube-system", "-l", label, "-o", "name", check=False
                ).stdout.strip(),
                timeout,
            )
            self.kubectl(
                "wait", "--for=condition=Ready", "pods", "-n", "kube-system", "-l", label,
                f"--timeout={int(timeout)}s", timeout=timeout + 30,
            )  # fmt: skip

    def delete(self) -> None:
        self.kind(
            "delete", "cluster", "--name", self.name, "--kubeconfig", str(self.settings.kubeconfig)
        )
        self.log(f"deleted the kind cluster {self.name!r}")

    def remove(self) -> None:
        self.delete()

    def keep_message(self) -> str:
        return (
            f"keeping the kind cluster {self.name!r} (KUBEMAKER_E2E_KEEP=1): "
            f"export KUBECONFIG={self.settings.kubeconfig}; delete it with "
            "`python tests/e2e/kindharness.py down`"
        )

    def load_image(self, ref: str) -> None:
        """Put a local image on the node: ``docker image save`` + ``kind load image-archive``.

        Not ``kind load docker-image``: under Docker's containerd image store (the default
        since Docker 29) it fails with "content digest ... not found" (kind issue #3795);
        an archive of the host's platform alone loads everywhere.
        """
        docker = _docker(self.tools)
        inspected = json.loads(run([docker, "image", "inspect", ref]).stdout)
        if self._node_image_id(ref) == inspected[0]["Id"]:
            # A kept cluster (KUBEMAKER_E2E_KEEP=1) already has it: the save and load of
            # the four images take about 100 s.
            self.log(f"{ref} is already on the node")
            return
        archive = self.settings.cluster_dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", ref) + ".tar")
        platform = docker_platform_of(inspected)
        saved = run(
            [docker, "image", "save", "--platform", platform, "-o", archive, ref],
            timeout=self.settings.setup_timeout,
            check=False,
        )
        if saved.returncode != 0:
            # Clients before Docker 28 have no --platform (nor the containerd store issue).
            if "unknown flag" not in saved.stderr:
                self.log(f"docker image save --platform failed ({saved.stderr.strip()}); retrying")
            run([docker, "image", "save", "-o", archive, ref], timeout=self.settings.setup_timeout)
        try:
            self.kind(
                "load",
                "image-archive",
                str(archive),
                "--name",
                self.name,
                timeout=self.settings.setup_timeout,
            )
        finally:
            archive.unlink(missing_ok=True)
        self.log(f"loaded {ref} into the cluster")

    def _node_image_id(self, ref: str) -> str | None:
        """The image ID (its config's digest, as Docker's) of ``ref`` in the node's
        containerd, None when it has none."""
        found = run(
            [_docker(self.tools), "exec", self.node_container, "crictl", "inspecti",
             "--output", "go-template", "--template", "{{.status.id}}", ref],
            check=False,
        )  # fmt: skip
        return found.stdout.strip() if found.returncode == 0 else None

    def host_port(self, container_port: int) -> int:
        """The host port (on 127.0.0.1) kind mapped to one of the node's ports."""
        mapped = run([_docker(self.tools), "port", self.node_container, f"{container_port}/tcp"])
        return parse_docker_port(mapped.stdout)

    def reach_s3(self, service_port: int, node_port: int) -> str:
        endpoint = f"http://127.0.0.1:{self.host_port(node_port)}"
        wait_for(
            f"S3 at {endpoint} (kind's mapping of node port {node_port})",
            lambda: _s3_answers(endpoint),
            self.settings.setup_timeout,
        )
        return endpoint

    def node_journal(self, unit: str) -> str:
        """The node's journal of a systemd unit (kubelet, containerd), or why not."""
        try:
            result = run(
                [_docker(self.tools), "exec", self.node_container, "journalctl", "-u", unit,
                 "--no-pager", "-o", "short-precise"],
                timeout=120, check=False,
            )  # fmt: skip
        except E2EError as exc:
            return str(exc)
        return result.stdout + (f"\n{result.stderr}" if result.stderr.strip() else "")

    def node_logs(self, directory: Path) -> tuple[list[tuple[str, str]], str]:
        sections = []
        for unit in ("kubelet", "containerd"):
            text = self.node_journal(unit)
            (directory / f"node-{unit}.journal").write_text(text)
            sections.append((f"node journal: {unit}", _tail(text, 60)))
        self.export_logs(directory / "kind")
        return sections, f", node logs (`kind export logs`) in {directory / 'kind'}"

    def export_logs(self, directory: Path) -> None:
        """Node-level logs (kubelet, containerd, pods) for a failure's post mortem."""
        directory.mkdir(parents=True, exist_ok=True)
        self.kind("export", "logs", str(directory), "--name", self.name, timeout=300, check=False)


@dataclass
class PortForward:
    """A ``kubectl port-forward`` running in the background, its output in a log file."""

    command: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            # The child keeps its own copy of the file descriptor.
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def exited(self) -> str | None:
        """Why the forward is gone (its exit code and output), or None while it runs."""
        if self.process is None or self.process.poll() is None:
            return None
        output = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return f"`kubectl port-forward` exited {self.process.returncode}: {_tail(output, 20)}"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@dataclass
class ExistingCluster(Cluster):
    """A cluster the harness did not make (KUBEMAKER_E2E_KUBECONFIG): reached with that
    kubeconfig only; nothing is loaded into it (it pulls the images), S3 is reached with
    ``kubectl port-forward``, and the end removes only what the harness installed."""

    forward: PortForward | None = None

    @property
    def name(self) -> str:
        where = self.settings.existing_kubeconfig
        return f"{where} (context {self.settings.context})" if self.settings.context else str(where)

    def client_args(self) -> list[str]:
        # The context too: the kubeconfig copy holds only it, but saying so costs nothing.
        context = ["--context", self.settings.context] if self.settings.context else []
        return [*super().client_args(), *context]

    def helm_args(self) -> list[str]:
        context = ["--kube-context", self.settings.context] if self.settings.context else []
        return [*super().helm_args(), *context]

    def open(self) -> bool:
        """Write the context's kubeconfig (KUBEMAKER_E2E_CONTEXT) and check that the API
        server answers. Never creates anything: False."""
        source = self.settings.existing_kubeconfig
        assert source is not None
        if self.settings.context:
            view = run(
                context_kubeconfig_command(self.tools.kubectl, source, self.settings.context)
            )
            path = self.settings.kubeconfig
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(view.stdout)
            path.chmod(0o600)
        version = self.kubectl("version", "-o", "json", timeout=60).stdout
        server = json.loads(version).get("serverVersion", {}).get("gitVersion", "?")
        self.log(f"using the cluster of {self.name}: Kubernetes {server}")
        return False

    def reach_s3(self, service_port: int, node_port: int) -> str:
        # No kind port mapping here: forward a free port of this machine to the Service.
        self.close()
        local_port = free_local_port()
        command = port_forward_command(
            self.tools.kubectl, self.settings.kubeconfig, self.settings.context,
            local_port, service_port,
        )  # fmt: skip
        self.forward = PortForward(command, self.settings.cluster_dir / "port-forward-s3.log")
        self.forward.start()
        endpoint = f"http://127.0.0.1:{local_port}"
        forward = self.forward

        def answers() -> bool:
            gone = forward.exited()
            if gone is not None:
                raise E2EError(gone)
            return _s3_answers(endpoint)

        wait_for(
            f"S3 at {endpoint} (`kubectl port-forward svc/{S3_SERVICE}` in {S3_NAMESPACE})",
            answers,
            self.settings.setup_timeout,
        )
        return endpoint

    def node_logs(self, directory: Path) -> tuple[list[tuple[str, str]], str]:
        self.export_logs(directory)
        return [("node logs", NODE_LOGS_NOTE)], ""

    def export_logs(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "node-logs.txt").write_text(NODE_LOGS_NOTE + "\n")

    def close(self) -> None:
        if self.forward is not None:
            self.forward.stop()
            self.forward = None

    def remove(self) -> None:
        """The helm release and the namespaces the harness made (the test namespaces are
        deleted by their fixtures); the CRDs stay: other releases may use them."""
        timeout = int(self.settings.setup_timeout)
        failures = []
        # Both steps, whatever the first one did: the namespaces go even if helm fails.
        for step in (
            lambda: run(
                [self.tools.helm, "uninstall", RELEASE, *self.helm_args(),
                 "--namespace", OPERATOR_NAMESPACE, "--ignore-not-found", "--wait",
                 f"--timeout={timeout}s"],
                timeout=timeout + 60,
            ),
            # Waited for: a next run's `kubectl apply` of the s3 namespace fails on one
            # that is still terminating.
            lambda: self.kubectl(
                "delete", "namespace", S3_NAMESPACE, OPERATOR_NAMESPACE, "--ignore-not-found",
                f"--timeout={timeout}s", timeout=timeout + 60,
            ),
        ):  # fmt: skip
            try:
                step()
            except E2EError as exc:
                failures.append(str(exc))
        if failures:
            raise E2EError(
                f"removing what the e2e installed in {self.name}: " + "; ".join(failures)
            )
        self.log(
            f"removed the helm release {RELEASE!r} and the namespaces {S3_NAMESPACE!r}, "
            f"{OPERATOR_NAMESPACE!r} from {self.name} (the CRDs stay)"
        )

    def keep_message(self) -> str:
        return (
            f"keeping what the e2e installed in {self.name} (KUBEMAKER_E2E_KEEP=1): the "
            f"helm release {RELEASE!r} and the namespaces {OPERATOR_NAMESPACE!r}, "
            f"{S3_NAMESPACE!r} and those of failed tests; "
            f"export KUBECONFIG={self.settings.kubeconfig}; "
            "remove them with `python tests/e2e/kindharness.py down` (same settings)"
        )


# --- object storage -------------------------------------------------------------------------------


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def find_document(docs: Sequence[Mapping[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc.get("kind") == kind and doc.get("metadata", {}).get("name") == name:
            return dict(doc)
    raise E2EError(f"no {kind} {name!r} in the manifest")


def s3_documents(
    image: str = "", pull_policy: str = "", *, node_port: bool = True
) -> list[dict[str, Any]]:
    """manifests/s3.yaml, with the S3 server's image and its pull policy if given (pure but
    for the read). Without ``node_port`` the Service is a ClusterIP one: another cluster
    is reached with `kubectl port-forward`, and a fixed node port may be taken there or
    open the test credentials' S3 on its nodes."""
    docs = load_yaml_documents(S3_MANIFEST)
    find_document(docs, "Deployment", S3_SERVICE)  # fails loudly if it moved
    for doc in docs:
        name = doc["metadata"]["name"]
        if doc["kind"] == "Deployment" and name == S3_SERVICE:
            container = doc["spec"]["template"]["spec"]["containers"][0]
            if image:
                container["image"] = image
            if pull_policy:
                container["imagePullPolicy"] = pull_policy
        if doc["kind"] == "Service" and name == S3_SERVICE and not node_port:
            doc["spec"]["type"] = "ClusterIP"
            for port in doc["spec"]["ports"]:
                port.pop("nodePort", None)
    return docs


def s3_credentials(docs: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """The S3 server's access key and secret, from the manifest's Secret (the one place
    they live)."""
    data = find_document(docs, "Secret", S3_ROOT_SECRET)["stringData"]
    return str(data["AWS_ACCESS_KEY_ID"]), str(data["AWS_SECRET_ACCESS_KEY"])


def s3_ports(docs: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """(service port, node port) of the S3 API."""
    service = find_document(docs, "Service", S3_SERVICE)
    port = next(p for p in service["spec"]["ports"] if p["name"] == "s3")
    return int(port["port"]), int(port["nodePort"])


@dataclass(frozen=True)
class ObjectStorage:
    """The S3 server in the cluster, reachable from this machine through kind's port mapping
    or, on another cluster, `kubectl port-forward`."""

    endpoint: str  # from this machine, e.g. http://127.0.0.1:41234
    in_cluster_endpoint: str  # from the pods: http://s3.s3:9000
    access_key: str
    secret_key: str

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=S3_REGION,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5}),
        )

    def aws_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """``environ`` for a boto3 program on this machine (prepare.py --upload) that
        talks to this S3 server whatever AWS settings the user has (profiles, tokens)."""
        env = {k: v for k, v in environ.items() if not k.startswith("AWS_")}
        env.update(
            {
                "AWS_ENDPOINT_URL_S3": self.endpoint,
                "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": S3_REGION,
                "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            }
        )
        return env

    def ensure_bucket(self, bucket: str) -> None:
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)

    def get(self, uri: str) -> bytes:
        bucket, key = split_s3_uri(uri)
        return bytes(self.client().get_object(Bucket=bucket, Key=key)["Body"].read())


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _s3_answers(endpoint: str) -> bool:
    """True when an S3 API answers at ``endpoint`` (any HTTP status: moto and MinIO differ
    in what an anonymous request gets)."""
    try:
        with urllib.request.urlopen(endpoint, timeout=5):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def install_s3(cluster: Cluster, settings: Settings, image: str) -> ObjectStorage:
    docs = s3_documents(image, settings.pull_policy, node_port=not settings.existing)
    cluster.apply(docs)
    timeout = f"--timeout={int(settings.setup_timeout)}s"
    cluster.kubectl(
        "rollout", "status", f"deployment/{S3_SERVICE}", "-n", S3_NAMESPACE, timeout,
        timeout=settings.setup_timeout + 30,
    )  # fmt: skip
    service_port, node_port = s3_ports(s3_documents())  # the manifest's, whatever was applied
    endpoint = cluster.reach_s3(service_port, node_port)
    access_key, secret_key = s3_credentials(docs)
    storage = ObjectStorage(
        endpoint=endpoint,
        in_cluster_endpoint=f"http://{S3_SERVICE}.{S3_NAMESPACE}:{service_port}",
        access_key=access_key,
        secret_key=secret_key,
    )
    cluster.log(f"S3 ready: {storage.in_cluster_endpoint} in the cluster, {endpoint} here")
    return storage


def upload_bank_data(storage: ObjectStorage, settings: Settings) -> tuple[str, Path]:
    """The bank-marketing channels in the S3 server, as the example's README does it.

    Returns the S3 prefix of the channels and the local copy (its test split is what the
    tests score the trained model on).
    """
    storage.ensure_bucket(settings.bucket)
    out = settings.workdir / "xgboost-bank"
    uri = f"s3://{settings.bucket}/{BANK_DATA_PREFIX}"
    run(
        [sys.executable, BANK_PREPARE, "--out", out, "--upload", uri],
        env=storage.aws_env(os.environ),
        timeout=settings.setup_timeout,
    )
    return uri, out


# --- the chart ------------------------------------------------------------------------------------


def build_image_values(settings: Settings) -> dict[str, Any]:
    """Helm values naming the images the tests built and their pull policy (pure; the rest
    is in values-e2e.yaml, which this file's values override)."""
    operator_repository, _, _ = settings.image("operator").rpartition(":")
    return {
        "image": {
            "repository": operator_repository,
            "tag": settings.image_tag,
            "pullPolicy": settings.pull_policy,
        },
        "config": {
            "images": {
                "agent": settings.image("runtime"),
                "algorithms": {"xgboost": settings.image("xgboost")},
                # Both, not only mxnet: helm merges maps, and the chart's default xgboost
                # entry would keep its ghcr.io/kubemaker name under another prefix.
                "frameworks": {
                    "mxnet": settings.image("mxnet"),
                    "xgboost": settings.image("xgboost"),
                },
                "pullPolicy": settings.pull_policy,
            }
        },
    }


def helm_values_args(settings: Settings) -> list[str]:
    """``--values`` arguments of the e2e install (writes the image values file)."""
    settings.cluster_dir.mkdir(parents=True, exist_ok=True)
    images = settings.cluster_dir / "values-images.yaml"
    images.write_text(yaml.safe_dump(build_image_values(settings), sort_keys=False))
    return ["--values", str(E2E_VALUES), "--values", str(images)]


def install_chart(cluster: Cluster, settings: Settings, *, restart: bool = False) -> None:
    """Install or upgrade the release; ``restart`` the operator (a reused cluster: the
    image tag is the same, its content may not be, and helm sees no change)."""
    # The CRDs of the checkout first: helm installs CRDs only into a cluster that has none,
    # and a kept cluster may hold older ones.
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART_CRDS))
    for crd in sorted(CHART_CRDS.glob("*.yaml")):
        name = yaml.safe_load(crd.read_text())["metadata"]["name"]
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=120s", f"crd/{name}")
    timeout = int(settings.setup_timeout)
    run(
        [
            cluster.tools.helm,
            "upgrade",
            "--install",
            RELEASE,
            CHART,
            *cluster.helm_args(),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--create-namespace",
            *helm_values_args(settings),
            "--wait",
            f"--timeout={timeout}s",
        ],
        timeout=timeout + 60,
    )
    if restart:
        cluster.kubectl("rollout", "restart", f"deployment/{RELEASE}", "-n", OPERATOR_NAMESPACE)
    cluster.kubectl(
        "rollout", "status", f"deployment/{RELEASE}", "-n", OPERATOR_NAMESPACE,
        f"--timeout={timeout}s", timeout=timeout + 30,
    )  # fmt: skip
    cluster.log(f"operator running: helm release {RELEASE!r} in namespace {OPERATOR_NAMESPACE!r}")


# --- TrainingJobs -----------------------------------------------------------------------------


def build_trainingjob(
    example: Mapping[str, Any],
    *,
    name: str,
    namespace: str,
    data_uri: str,
    output_uri: str,
    hyperparameters: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The example's TrainingJob with its channels under ``data_uri``/<channel> and its
    output under ``output_uri`` (pure). ``hyperparameters`` are merged over the example's."""
    job = copy.deepcopy(dict(example))
    job["metadata"] = {"name": name, "namespace": namespace}
    spec = job["spec"]
    for channel in spec["inputDataConfig"]:
        uri = f"{data_uri.rstrip('/')}/{channel['channelName']}"
        source = channel.get("dataSource", {}).get("s3DataSource")
        if source is not None:
            source["s3Uri"] = uri
        else:
            channel["uri"] = uri
    spec["outputDataConfig"]["s3OutputPath"] = output_uri
    if hyperparameters:
        spec["hyperParameters"] = {**spec.get("hyperParameters", {}), **hyperparameters}
    return job


def bank_example() -> dict[str, Any]:
    doc = yaml.safe_load(BANK_EXAMPLE.read_text())
    assert isinstance(doc, dict)
    return doc


def condition_status(obj: Mapping[str, Any], kind: str) -> str | None:
    """status of the condition ``kind`` ("True"/"False"/"Unknown"), None when absent."""
    for condition in obj.get("status", {}).get("conditions", []) or []:
        if condition.get("type") == kind:
            return str(condition.get("status"))
    return None


def describe_status(obj: Mapping[str, Any] | None) -> str:
    if not obj:
        return "no object"
    status = obj.get("status", {})
    keys = ("trainingJobStatus", "secondaryStatus", "failureReason", "conditions")
    shown = {k: status[k] for k in keys if k in status}
    return json.dumps(shown, indent=1) if shown else "no status yet"


def wait_for_training_end(
    cluster: Cluster, name: str, namespace: str, timeout: float
) -> dict[str, Any]:
    """Poll the TrainingJob until its Succeeded condition is True or False; the object."""
    last: dict[str, Any] = {}

    def finished() -> dict[str, Any] | None:
        result = cluster.kubectl(
            "get", "trainingjobs.kubemaker.io", name, "-n", namespace, "-o", "json", check=False
        )
        if result.returncode != 0:
            return None
        last.clear()
        last.update(json.loads(result.stdout))
        return dict(last) if condition_status(last, "Succeeded") in ("True", "False") else None

    return wait_for(
        f"TrainingJob {namespace}/{name} to end (condition Succeeded True or False)",
        finished,
        timeout,
        interval=1.0,
        max_interval=5.0,
        describe=lambda: describe_status(last),
    )


# --- checking a model -------------------------------------------------------------------------


def model_from_tarball(data: bytes, member: str = "xgboost-model") -> bytes:
    """The model file inside a model.tar.gz; E2EError if it is not a gzip'd tar with it."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            names = [m.name.removeprefix("./") for m in archive.getmembers() if m.isfile()]
            if member not in names:
                raise E2EError(f"model.tar.gz holds {names}, not {member!r}")
            extracted = archive.extractfile(
                next(m for m in archive.getmembers() if m.name.removeprefix("./") == member)
            )
            assert extracted is not None
            return extracted.read()
    except (tarfile.TarError, OSError) as exc:
        raise E2EError(f"model.tar.gz is not a valid gzip'd tar: {exc}") from exc


def roc_auc(labels: Sequence[float], scores: Sequence[float]) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties)."""
    pairs = sorted(zip(scores, labels, strict=True))
    ranks = [0.0] * len(pairs)
    i = 0
    while i < len(pairs):
        j = i
        while j + 1 < len(pairs) and pairs[j + 1][0] == pairs[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        i = j + 1
    positives = sum(1 for _, label in pairs if label == 1)
    negatives = len(pairs) - positives
    if positives == 0 or negatives == 0:
        raise ValueError("AUC needs both classes")
    rank_sum = sum(rank for rank, (_, label) in zip(ranks, pairs, strict=True) if label == 1)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


# --- diagnostics ------------------------------------------------------------------------------


def _tail(text: str, lines: int) -> str:
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join(kept)


def collect_diagnostics(
    cluster: Cluster, namespaces: Sequence[str], directory: Path, *, node_logs: bool = True
) -> str:
    """Write what helps debug a failure under ``directory``; return a summary to print.

    The summary has the TrainingJobs' status, the pods' containers and logs (agent and
    algorithm), the namespace's events and the operator's log tail; the files hold all of
    it, plus, when ``node_logs``, the node's kubelet and containerd journals and ``kind
    export logs`` on kind (elsewhere a line saying why they are not collected).
    """
    directory.mkdir(parents=True, exist_ok=True)
    sections: list[tuple[str, str]] = []

    def capture(title: str, filename: str, *args: str, tail: int | None = None) -> None:
        try:
            result = cluster.kubectl(*args, check=False, timeout=60)
        except E2EError as exc:
            text = str(exc)
        else:
            text = result.stdout + (f"\n{result.stderr}" if result.stderr.strip() else "")
        (directory / filename).write_text(text)
        sections.append((title, _tail(text, tail) if tail else text))

    for ns in namespaces:
        capture(f"objects in {ns}", f"{ns}-objects.txt",
                "get", "trainingjobs.kubemaker.io,jobs,pods,services", "-n", ns,
                "-o", "wide")  # fmt: skip
        try:
            jobs = cluster.kubectl_json("get", "trainingjobs.kubemaker.io", "-n", ns)["items"]
        except (E2EError, json.JSONDecodeError, KeyError):
            jobs = []
        (directory / f"{ns}-trainingjobs.json").write_text(json.dumps(jobs, indent=1))
        for job in jobs:
            status = json.dumps(job.get("status", {}), indent=1)
            sections.append((f"status of TrainingJob {ns}/{job['metadata']['name']}", status))
        capture(f"events in {ns}", f"{ns}-events.txt",
                "get", "events", "-n", ns, "--sort-by=.lastTimestamp", tail=60)  # fmt: skip
        capture(f"pods in {ns} (describe)", f"{ns}-pods-describe.txt",
                "describe", "pods", "-n", ns, tail=200)  # fmt: skip
        try:
            pods = cluster.kubectl_json("get", "pods", "-n", ns).get("items", [])
        except (E2EError, json.JSONDecodeError):
            pods = []
        for pod in pods:
            pod_name = pod["metadata"]["name"]
            spec = pod.get("spec", {})
            pod_status = pod.get("status", {})
            restarts = {
                c["name"]: c.get("restartCount", 0)
                for c in pod_status.get("initContainerStatuses", [])
                + pod_status.get("containerStatuses", [])
            }
            containers = [c["name"] for c in spec.get("initContainers", []) + spec["containers"]]
            for container in containers:
                capture(f"log of {ns}/{pod_name} container {container}",
                        f"{ns}-{pod_name}-{container}.log",
                        "logs", pod_name, "-n", ns, "-c", container, tail=120)  # fmt: skip
                if restarts.get(container):
                    # A native sidecar that failed is restarted: its first failure is here.
                    capture(f"previous log of {ns}/{pod_name} container {container}",
                            f"{ns}-{pod_name}-{container}-previous.log",
                            "logs", pod_name, "-n", ns, "-c", container, "--previous",
                            tail=120)  # fmt: skip
    capture("operator log", "operator.log",
            "logs", f"deployment/{RELEASE}", "-n", OPERATOR_NAMESPACE, "--tail=2000",
            tail=250)  # fmt: skip
    capture("operator namespace", "operator-objects.txt",
            "get", "all,events", "-n", OPERATOR_NAMESPACE, "-o", "wide", tail=60)  # fmt: skip
    capture("S3 server log", "s3.log",
            "logs", f"deployment/{S3_SERVICE}", "-n", S3_NAMESPACE, "--tail=200",
            tail=40)  # fmt: skip
    capture("nodes", "nodes.txt", "describe", "nodes", tail=80)
    capture("pods of all namespaces", "pods-all.txt", "get", "pods", "-A", "-o", "wide")
    capture("events of kube-system", "kube-system-events.txt",
            "get", "events", "-n", "kube-system", "--sort-by=.lastTimestamp", tail=40)  # fmt: skip
    where = f"all of it in {directory}"
    if node_logs:
        node_sections, node_where = cluster.node_logs(directory)
        sections.extend(node_sections)
        where += node_where
    body = "\n\n".join(f"===== {title}\n{text.rstrip()}" for title, text in sections)
    return f"({where})\n\n{body}"


# --- the whole environment --------------------------------------------------------------------


@dataclass
class Environment:
    """Everything the tests need: the cluster with the operator, the S3 server and the data."""

    settings: Settings
    cluster: Cluster
    storage: ObjectStorage
    data_uri: str  # s3://bucket/data/xgboost-bank: channels train/, validation/, test/
    data_dir: Path  # the same channels on this machine
    created_cluster: bool
    timings: dict[str, float] = field(default_factory=dict)

    def create_namespace(self, name: str) -> None:
        """A namespace for one test, enforcing Pod Security "restricted", with the storage
        Secret the chart's config names."""
        self.cluster.kubectl("create", "namespace", name)
        self.cluster.kubectl(
            "label", "namespace", name,
            f"pod-security.kubernetes.io/enforce={POD_SECURITY_LEVEL}",
            f"pod-security.kubernetes.io/warn={POD_SECURITY_LEVEL}",
        )  # fmt: skip
        self.cluster.kubectl(
            "create", "secret", "generic", CREDENTIALS_SECRET, "-n", name,
            f"--from-literal=AWS_ACCESS_KEY_ID={self.storage.access_key}",
            f"--from-literal=AWS_SECRET_ACCESS_KEY={self.storage.secret_key}",
        )  # fmt: skip

    def delete_namespace(self, name: str) -> None:
        self.cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)

    def apply_bank_job(
        self, namespace: str, name: str, hyperparameters: Mapping[str, str] | None = None
    ) -> str:
        """Apply the bank example as TrainingJob ``name``, reading the uploaded channels
        and writing under ``s3://<bucket>/<namespace>/output``, which is returned."""
        output = f"s3://{self.settings.bucket}/{namespace}/output"
        job = build_trainingjob(
            bank_example(),
            name=name,
            namespace=namespace,
            data_uri=self.data_uri,
            output_uri=output,
            hyperparameters=hyperparameters,
        )
        self.cluster.apply([job])
        return output

    def tear_down(self) -> None:
        # The port-forward goes even when the cluster's objects stay: it would outlive
        # this process.
        self.cluster.close()
        if self.settings.keep:
            self.cluster.log(self.cluster.keep_message())
            return
        self.cluster.remove()


@contextlib.contextmanager
def _timed(timings: dict[str, float], step: str, log: Callable[[str], None]) -> Iterator[None]:
    started = time.monotonic()
    yield
    timings[step] = time.monotonic() - started
    log(f"{step}: {timings[step]:.0f}s")


def make_cluster(
    settings: Settings, tools: Tools, log: Callable[[str], None], node_image: str = ""
) -> Cluster:
    """The cluster the settings name: another one (KUBEMAKER_E2E_KUBECONFIG) or kind."""
    if settings.existing:
        return ExistingCluster(settings, tools, log)
    return KindCluster(settings, tools, log, node_image=node_image)


def _release_installed(cluster: Cluster) -> bool:
    found = cluster.kubectl(
        "get", "deployment", RELEASE, "-n", OPERATOR_NAMESPACE, "-o", "name", check=False
    )  # fmt: skip
    return found.returncode == 0


def set_up(settings: Settings, log: Callable[[str], None] = _stderr_log) -> Environment:
    """Build, create and install everything; on a failure, collect diagnostics, delete
    the cluster this call created, or on another cluster what it installed there (unless
    keep), and raise E2EError."""
    problem = s3_image_problem(settings)
    if problem is not None:
        raise E2EError(f"e2e setup failed: {problem}")
    timings: dict[str, float] = {}
    settings.workdir.mkdir(parents=True, exist_ok=True)
    with _timed(timings, "tools (kubectl, helm)" if settings.existing else
                "tools (kind, kubectl, helm)", log):  # fmt: skip
        tools = build_tools(settings, log)
    node_image = ""
    if not settings.existing:
        with _timed(timings, "node image", log):
            node_image = build_node_image(settings, log)
    with _timed(timings, "images", log):
        refs = build_images(settings, tools, log)
    cluster = make_cluster(settings, tools, log, node_image)
    created = reached = installing = False
    try:
        with _timed(timings, "cluster" if settings.existing else "kind cluster", log):
            created = cluster.open()
            reached = True
        if isinstance(cluster, KindCluster):
            with _timed(timings, "image loading", log):
                for ref in refs:
                    cluster.load_image(ref)
        installing = True
        with _timed(timings, "object storage and data", log):
            storage = install_s3(cluster, settings, refs[-1])
            data_uri, data_dir = upload_bank_data(storage, settings)
        with _timed(timings, "chart", log):
            # A release already there runs the old operator if the image's tag is the same
            # and its content is not, and helm sees no change: restart it.
            install_chart(cluster, settings, restart=_release_installed(cluster))
    except (E2EError, subprocess.SubprocessError, OSError) as exc:
        cluster.close()
        directory = settings.workdir / "diagnostics" / "setup"
        if reached or isinstance(cluster, KindCluster):
            try:
                summary = collect_diagnostics(
                    cluster, [OPERATOR_NAMESPACE, S3_NAMESPACE, "kube-system"], directory
                )
            except (E2EError, OSError) as diag_exc:
                summary = f"(diagnostics failed too: {diag_exc})"
        else:
            # Another cluster that did not answer: every kubectl would wait its timeout.
            summary = "(no diagnostics: the cluster did not answer)"
        if not settings.keep:
            with contextlib.suppress(E2EError):
                if isinstance(cluster, KindCluster) and cluster.created_here:
                    cluster.delete()
                elif isinstance(cluster, ExistingCluster) and installing:
                    cluster.remove()
        raise E2EError(f"e2e setup failed: {exc}\n\n{summary}") from exc
    return Environment(
        settings=settings,
        cluster=cluster,
        storage=storage,
        data_uri=data_uri,
        data_dir=data_dir,
        created_cluster=created,
        timings=timings,
    )


# --- command line -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build (or reuse) kind, kubectl and helm; print them")
    commands.add_parser(
        "down",
        help="delete the e2e kind cluster; with KUBEMAKER_E2E_KUBECONFIG, remove what the "
        "e2e installed in that cluster (the helm release, the s3 and kubemaker namespaces)",
    )
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        if args.command == "build":
            started = time.monotonic()
            kind = build_kind(settings.kind_version)
            pinned = build_pinned(["kubectl", "helm"])
            for path in (kind, *pinned.values()):
                print(path)
            _stderr_log(f"tools ready in {time.monotonic() - started:.1f}s")
        elif args.command == "down":
            tools = Tools(
                kind=kind_binary(settings.kind_version),
                kubectl=Path(localcluster.binary("kubectl")),
                helm=Path(localcluster.binary("helm")),
                docker=docker_client() or "docker",
            )
            if settings.existing:
                existing = ExistingCluster(settings, tools)
                existing.open()
                existing.remove()
                return 0
            cluster = KindCluster(settings, tools)
            if cluster.exists():
                cluster.delete()
            else:
                _stderr_log(f"no kind cluster named {settings.cluster_name!r}")
    except (E2EError, ValueError, localcluster.ClusterError) as exc:
        _stderr_log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
