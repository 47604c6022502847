#!/usr/bin/env python3
"""A real Kubernetes control plane on this machine, with simulated (KWOK) nodes.

    python3 tests/cluster/localcluster.py build    # build or reuse the pinned binaries
    python3 tests/cluster/localcluster.py up       # start (or reuse) the cluster
    python3 tests/cluster/localcluster.py status   # binaries, cluster, nodes
    python3 tests/cluster/localcluster.py down     # stop and delete the cluster
    python3 tests/cluster/localcluster.py bin helm # print the path of a pinned binary

The control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) and
kwok are built from their Go modules at the versions pinned below and cached in
``$KUBEMAKER_CACHE/bin`` (default ``~/.cache/kubemaker``), keyed by version. ``kwokctl``
runs them as local processes; kwok plays the nodes and the pod lifecycles described by
the stages in ``tests/cluster/kwok/``. The kubeconfig is written to ``.cluster/kubeconfig``.

Standard library only: ``make cluster`` runs it before any virtualenv exists, and the
pytest fixtures in ``conftest.py`` import it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# --- pinned versions: the one place to change them ------------------------------------
# kwok v0.8.0 supports Kubernetes 1.27 to 1.36 (its supported_releases.txt) and pairs
# 1.36 with etcd 3.6.10 (kwokctl's etcd table, taken from kubeadm). Native sidecars
# (init containers with restartPolicy: Always) are GA since Kubernetes 1.33.
KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.10"
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.22.0"

CLUSTER_NAME = "kubemaker"

REPO_ROOT = Path(__file__).resolve().parents[2]
KWOK_MANIFESTS = Path(__file__).resolve().parent / "kwok"
CLUSTER_DIR = REPO_ROOT / ".cluster"
KUBECONFIG = CLUSTER_DIR / "kubeconfig"
# kwokctl's own work dir (certificates, etcd data, component logs) lives in the
# checkout, so two checkouts never share a cluster and `down` leaves nothing behind.
KWOK_WORKDIR = CLUSTER_DIR / "kwok"
# Unversioned links to the pinned tools, for a contributor's PATH.
TOOLS_DIR = CLUSTER_DIR / "bin"
TOOLS = ("kubectl", "helm", "kwokctl")
SESSIONS_DIR = CLUSTER_DIR / "sessions"
OWNER_FILE = CLUSTER_DIR / "owner"

NODE_NAMES = ("kwok-cpu-0", "kwok-cpu-1", "kwok-gpu-0")
START_TIMEOUT = 180.0
GO_BUILD_TIMEOUT = 3 * 3600.0


class ClusterError(RuntimeError):
    """The local cluster could not be built, started or reached; the text says why."""


def log(message: str) -> None:
    print(f"[localcluster] {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    return Path(os.environ.get("KUBEMAKER_CACHE") or Path.home() / ".cache" / "kubemaker")


# --- building the binaries ------------------------------------------------------------


@dataclass(frozen=True)
class GoBuild:
    """Binaries built from one Go module at one version through a wrapper module.

    A wrapper module of ours requires the module, so modules whose go.mod has
    ``replace`` directives (Kubernetes' staging repos, etcd's sibling modules) build at
    exactly their published versions, which ``go install module@version`` refuses.
    """

    name: str
    module: str
    version: str
    binaries: dict[str, str]  # binary name -> package path
    ldflags: tuple[str, ...] = ()
    # Kubernetes only: replace k8s.io/<staging module> v0.0.0 by the published v0.Y.Z.
    replace_staging: bool = False
    # -X flags computed from the module's go.mod (helm's Kubernetes version).
    ldflags_from_gomod: bool = False
    env: dict[str, str] = field(default_factory=dict)


def _kubernetes_ldflags(version: str) -> tuple[str, ...]:
    # What hack/lib/version.sh stamps: `kube-apiserver --version` must say the real
    # version, because kwokctl picks component flags from it and clients (helm's
    # kubeVersion checks) read it from /version.
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={version}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
            f"-X {package}.buildDate=1970-01-01T00:00:00Z",
        ]
    return tuple(flags)


BUILDS: tuple[GoBuild, ...] = (
    GoBuild(
        name="kubernetes",
        module="k8s.io/kubernetes",
        version=KUBERNETES_VERSION,
        binaries={
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
            "kubectl": "k8s.io/kubernetes/cmd/kubectl",
        },
        ldflags=_kubernetes_ldflags(KUBERNETES_VERSION),
        replace_staging=True,
    ),
    GoBuild(
        name="etcd",
        module="go.etcd.io/etcd/server/v3",
        version=ETCD_VERSION,
        binaries={"etcd": "go.etcd.io/etcd/server/v3"},
    ),
    GoBuild(
        name="kwok",
        module="sigs.k8s.io/kwok",
        version=KWOK_VERSION,
        binaries={"kwok": "sigs.k8s.io/kwok/cmd/kwok", "kwokctl": "sigs.k8s.io/kwok/cmd/kwokctl"},
        ldflags=(f"-X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION.lstrip('v')}",),
    ),
    GoBuild(
        name="helm",
        module="helm.sh/helm/v3",
        version=HELM_VERSION,
        binaries={"helm": "helm.sh/helm/v3/cmd/helm"},
        ldflags=(f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",),
        ldflags_from_gomod=True,
    ),
)

BINARY_VERSIONS = {name: build.version for build in BUILDS for name in build.binaries}


def versioned_binary(name: str, version: str) -> Path:
    """Path of a binary in the cache, keyed by its version (it may not be built yet)."""
    return cache_dir() / "bin" / f"{name}-{version}"


def binary(name: str) -> Path:
    """Path of a pinned binary in the cache (it may not be built yet)."""
    try:
        version = BINARY_VERSIONS[name]
    except KeyError:
        raise ClusterError(f"unknown binary {name!r}; known: {sorted(BINARY_VERSIONS)}") from None
    return versioned_binary(name, version)


def missing_binaries() -> list[str]:
    return [name for name in BINARY_VERSIONS if not binary(name).is_file()]


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise ClusterError(
            "the Go toolchain is needed to build the control plane: install Go >= 1.26 "
            "(https://go.dev/dl/) and put `go` on PATH"
        )
    return go


def _run_go(args: Sequence[str], cwd: Path, extra_env: dict[str, str] | None = None) -> str:
    env = dict(os.environ)
    # Our wrapper module is its own main module: never let a go.work or vendor dir of
    # the surroundings decide what gets built.
    env.update({"GOWORK": "off", "GOFLAGS": _goflags(env.get("GOFLAGS", ""))})
    env.update(extra_env or {})
    result = subprocess.run(
        [_go(), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=GO_BUILD_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise ClusterError(f"`go {' '.join(args)}` failed in {cwd}:\n{result.stderr.strip()}")
    return result.stdout


def _goflags(existing: str) -> str:
    flags = [flag for flag in existing.split() if not flag.startswith("-mod=")]
    flags.append("-mod=mod")
    jobs = os.environ.get("KUBEMAKER_BUILD_JOBS")
    if jobs:
        flags = [flag for flag in flags if not flag.startswith("-p=")] + [f"-p={jobs}"]
    return " ".join(flags)


def _module_gomod(module: str, version: str, workdir: Path) -> str:
    info = json.loads(_run_go(["mod", "download", "-json", f"{module}@{version}"], workdir))
    return Path(info["GoMod"]).read_text()


def build_wrapper_gomod(build: GoBuild, upstream_gomod: str) -> str:
    """The go.mod of the wrapper module that builds ``build`` (pure)."""
    go_line = re.search(r"^go\s+(\S+)", upstream_gomod, re.MULTILINE)
    lines = [
        f"module kubemaker.local/build/{build.name}",
        "",
        f"go {go_line.group(1) if go_line else '1.26'}",
        "",
        f"require {build.module} {build.version}",
    ]
    if build.replace_staging:
        # Staging modules are required at v0.0.0 and replaced by ./staging/... paths
        # upstream; the published copies carry the same code at v0.<minor>.<patch>.
        staging_version = "v0." + build.version.lstrip("v").split(".", 1)[1]
        staging = sorted(set(re.findall(r"^\s+(k8s\.io/[\w.-]+) v0\.0\.0$", upstream_gomod, re.M)))
        if not staging:
            raise ClusterError(f"no staging modules found in {build.module} {build.version}")
        lines += ["", "replace ("]
        lines += [f"\t{module} => {module} {staging_version}" for module in staging]
        lines.append(")")
    return "\n".join(lines) + "\n"


def build_tools_go(build: GoBuild) -> str:
    """A file that imports the commands, so `go mod tidy` resolves their dependencies."""
    imports = "\n".join(f'\t_ "{package}"' for package in sorted(set(build.binaries.values())))
    return f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n"


def go_binary_name(package: str) -> str:
    """The file `go build -o dir/` writes for a package: its last path element that is
    not a major-version suffix (go.etcd.io/etcd/server/v3 -> server)."""
    elements = package.rstrip("/").split("/")
    if len(elements) > 1 and re.fullmatch(r"v\d+", elements[-1]):
        return elements[-2]
    return elements[-1]


def _gomod_ldflags(upstream_gomod: str) -> list[str]:
    # helm stamps the Kubernetes version of its client-go (v0.Y.Z means 1.Y) as the
    # default for `helm template` and lint, as its own Makefile does.
    match = re.search(r"^\s+k8s\.io/client-go v0\.(\d+)\.", upstream_gomod, re.MULTILINE)
    if not match:
        return []
    minor = match.group(1)
    return [
        f"-X helm.sh/helm/v3/pkg/{package}.k8sVersion{part}={value}"
        for package in ("chartutil", "lint/rules")
        for part, value in (("Major", "1"), ("Minor", minor))
    ]


def _build_one(build: GoBuild) -> float:
    started = time.monotonic()
    src = cache_dir() / "src" / f"{build.name}-{build.version}"
    src.mkdir(parents=True, exist_ok=True)
    log(f"building {', '.join(build.binaries)} from {build.module} {build.version}")
    upstream = _module_gomod(build.module, build.version, src)
    gomod = build_wrapper_gomod(build, upstream)
    if not (src / "go.mod").is_file() or (src / "go.mod.in").read_text() != gomod:
        (src / "go.mod").write_text(gomod)
        (src / "go.mod.in").write_text(gomod)
        (src / "go.sum").unlink(missing_ok=True)
    (src / "tools.go").write_text(build_tools_go(build))
    _run_go(["mod", "tidy"], src)
    ldflags = ["-s", "-w", *build.ldflags]
    if build.ldflags_from_gomod:
        ldflags += _gomod_ldflags(upstream)
    bindir = cache_dir() / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=bindir, prefix=f".{build.name}-") as out:
        # One `go build` for all the commands of a module shares the compile work.
        _run_go(
            [
                "build",
                "-trimpath",
                f"-ldflags={' '.join(ldflags)}",
                "-o",
                out + "/",
                *sorted(set(build.binaries.values())),
            ],
            src,
            build.env,
        )
        for name, package in build.binaries.items():
            os.replace(Path(out) / go_binary_name(package), versioned_binary(name, build.version))
    elapsed = time.monotonic() - started
    log(f"built {', '.join(build.binaries)} in {elapsed:.0f}s")
    return elapsed


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_built(builds: Sequence[GoBuild]) -> dict[str, Path]:
    """Build the binaries of ``builds`` missing from the cache (under the cache's lock, so
    concurrent sessions build once); return the paths of all of them."""
    with _file_lock(cache_dir() / "build.lock"):
        for build in builds:
            if any(not versioned_binary(name, build.version).is_file() for name in build.binaries):
                _build_one(build)
    return {
        name: versioned_binary(name, build.version) for build in builds for name in build.binaries
    }


def build_binaries() -> dict[str, Path]:
    """Build whatever pinned binary is missing from the cache; return all their paths."""
    started = time.monotonic()
    paths = ensure_built(BUILDS)
    log(f"binaries ready in {cache_dir() / 'bin'} ({time.monotonic() - started:.1f}s)")
    return paths


# --- running the cluster --------------------------------------------------------------


def _kwokctl_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "KWOK_WORKDIR": str(KWOK_WORKDIR),
            "KWOK_KUBE_VERSION": KUBERNETES_VERSION,
            "KWOK_VERSION": KWOK_VERSION,
            "KWOK_KUBECTL_BINARY": str(binary("kubectl")),
        }
    )
    return env


def kwokctl(*args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary("kwokctl")), "--name", CLUSTER_NAME, *args],
        env=_kwokctl_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def kubectl(
    *args: str, input: str | None = None, timeout: float = 60.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run the pinned kubectl against the local cluster."""
    result = subprocess.run(
        [str(binary("kubectl")), "--kubeconfig", str(KUBECONFIG), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def cluster_exists() -> bool:
    return (KWOK_WORKDIR / "clusters" / CLUSTER_NAME / "kwok.yaml").is_file()


def is_healthy() -> bool:
    """True when the apiserver answers /readyz through .cluster/kubeconfig."""
    if not KUBECONFIG.is_file() or not binary("kubectl").is_file():
        return False
    try:
        result = kubectl("get", "--raw", "/readyz", "--request-timeout=5s", timeout=10, check=False)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0 and result.stdout.strip() == "ok"


def _wait(what: str, predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _write_kubeconfig() -> None:
    result = kwokctl("get", "kubeconfig")
    if result.returncode != 0 or "clusters:" not in result.stdout:
        raise ClusterError(f"kwokctl get kubeconfig failed: {result.stderr.strip()}")
    CLUSTER_DIR.mkdir(parents=True, exist_ok=True)
    tmp = KUBECONFIG.with_suffix(".tmp")
    tmp.write_text(result.stdout)
    tmp.chmod(0o600)
    os.replace(tmp, KUBECONFIG)


def _link_tools() -> None:
    TOOLS_DIR.mkdir(parents=True, exist_ok=True)
    for name in TOOLS:
        link = TOOLS_DIR / name
        tmp = TOOLS_DIR / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(binary(name))
        os.replace(tmp, link)


def _create() -> None:
    # The Stage CRD (--enable-crds) lets `up` re-apply tests/cluster/kwok/ to a running
    # cluster; it also means kwok starts with no built-in stages: ours cover nodes too.
    args = [
        "create",
        "cluster",
        f"--config={KWOK_MANIFESTS / 'kwokctl.yaml'}",
        "--runtime=binary",
        f"--kube-apiserver-binary={binary('kube-apiserver')}",
        f"--kube-controller-manager-binary={binary('kube-controller-manager')}",
        f"--kube-scheduler-binary={binary('kube-scheduler')}",
        f"--etcd-binary={binary('etcd')}",
        f"--kwok-controller-binary={binary('kwok')}",
        "--kube-authorization=true",  # Node,RBAC
        "--kube-admission=true",
        "--enable-crds=Stage",
        # A benchmark applies 1000 TrainingJobs: no client-side throttling anywhere.
        "--disable-qps-limits",
        "--kubeconfig=",  # never touch ~/.kube/config
        f"--timeout={int(START_TIMEOUT)}s",
        "--wait=120s",
    ]
    result = kwokctl(*args, timeout=START_TIMEOUT + 30)
    if result.returncode != 0:
        raise ClusterError(f"kwokctl create cluster failed:\n{result.stderr.strip()[-4000:]}")


def _component_logs_tail(lines: int = 15) -> str:
    logs_dir = KWOK_WORKDIR / "clusters" / CLUSTER_NAME / "logs"
    parts = []
    for path in sorted(logs_dir.glob("*.log")) if logs_dir.is_dir() else []:
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {path.name} (last {len(tail)} lines)\n" + "\n".join(tail))
    return "\n".join(parts)


def _apply_manifests() -> None:
    _wait(
        "the kwok Stage CRD",
        lambda: kubectl("get", "crd", "stages.kwok.x-k8s.io", check=False).returncode == 0,
        60,
    )
    kubectl("wait", "--for=condition=Established", "crd/stages.kwok.x-k8s.io", "--timeout=60s")
    # Stages before nodes, so that kwok initialises the nodes as soon as they exist.
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(KWOK_MANIFESTS / "stages"))
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(KWOK_MANIFESTS / "nodes.yaml"))


def _nodes_ready() -> bool:
    result = kubectl("get", "nodes", "-o", "json", check=False, timeout=15)
    if result.returncode != 0:
        return False
    ready = {
        node["metadata"]["name"]
        for node in json.loads(result.stdout)["items"]
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node.get("status", {}).get("conditions", [])
        )
    }
    return set(NODE_NAMES) <= ready


def _default_service_account_ready() -> bool:
    # Pods need the namespace's default ServiceAccount (the admission plugin checks),
    # which kube-controller-manager creates: its presence shows the controllers run.
    result = kubectl("get", "serviceaccount", "default", "-n", "default", check=False, timeout=15)
    return result.returncode == 0


def up(owner: str = "cli") -> bool:
    """Start the cluster, or reuse a running one. Returns True when this call started it.

    ``owner`` is recorded when this call starts the cluster: a pytest session that
    started it ("fixture") stops it at the end; one started by `make cluster` ("cli")
    stays up. A `make cluster` on a running cluster claims it, so it stays up.
    """
    build_binaries()
    started_at = time.monotonic()
    with _file_lock(CLUSTER_DIR / "lock"):
        _link_tools()
        started = restarted = False
        if cluster_exists() and not is_healthy():
            log("cluster exists but does not answer; starting its components")
            restarted = True
            kwokctl("start", "cluster")
            with contextlib.suppress(ClusterError):
                _write_kubeconfig()
                _wait("the apiserver", is_healthy, 60)
            if not is_healthy():
                log("restart failed; recreating the cluster")
                _delete()
        if not cluster_exists():
            log(f"creating cluster {CLUSTER_NAME!r} (Kubernetes {KUBERNETES_VERSION})")
            started = True
        try:
            if started:
                _create()
            _write_kubeconfig()
            _wait("the apiserver /readyz", is_healthy, 60)
            _apply_manifests()
            _wait(f"nodes {', '.join(NODE_NAMES)} Ready", _nodes_ready, 60)
            _wait("the default ServiceAccount", _default_service_account_ready, 60)
        except ClusterError as error:
            logs = _component_logs_tail()
            # Leave no half-made cluster for the next attempt, unless asked to keep it.
            if started and not os.environ.get("KUBEMAKER_KEEP_CLUSTER"):
                with contextlib.suppress(ClusterError, subprocess.SubprocessError):
                    _delete()
            raise ClusterError(f"{error}\n{logs}") from error
        if started or owner == "cli":
            OWNER_FILE.write_text(owner + "\n")
    elapsed = time.monotonic() - started_at
    how = "started" if started else "restarted" if restarted else "reused"
    log(f"cluster {how} in {elapsed:.1f}s")
    return started


def _delete() -> None:
    if cluster_exists():
        # kwokctl removes its context from this kubeconfig (the default is ~/.kube/config).
        result = kwokctl("delete", "cluster", f"--kubeconfig={KUBECONFIG}", timeout=120)
        if result.returncode != 0:
            raise ClusterError(f"kwokctl delete cluster failed: {result.stderr.strip()}")
    shutil.rmtree(KWOK_WORKDIR / "clusters" / CLUSTER_NAME, ignore_errors=True)
    KUBECONFIG.unlink(missing_ok=True)
    OWNER_FILE.unlink(missing_ok=True)


def down() -> None:
    """Stop and delete the cluster (its etcd data goes with it)."""
    with _file_lock(CLUSTER_DIR / "lock"):
        _delete()
    log("cluster deleted")


# --- sharing one cluster between pytest sessions ----------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def register_session() -> None:
    """Note that this process uses the cluster (pytest sessions may overlap)."""
    SESSIONS_DIR.mkdir(parents=True, exist_ok=True)
    (SESSIONS_DIR / str(os.getpid())).touch()


def release_session() -> bool:
    """Forget this process; stop the cluster if a fixture started it and nobody else
    uses it. Returns True when the cluster was stopped."""
    with _file_lock(CLUSTER_DIR / "lock"):
        (SESSIONS_DIR / str(os.getpid())).unlink(missing_ok=True)
        others = [
            path
            for path in (SESSIONS_DIR.iterdir() if SESSIONS_DIR.is_dir() else [])
            if path.name.isdigit() and _pid_alive(int(path.name))
        ]
        owner = OWNER_FILE.read_text().strip() if OWNER_FILE.is_file() else "cli"
        if others or owner != "fixture" or os.environ.get("KUBEMAKER_KEEP_CLUSTER"):
            return False
        _delete()
    log("cluster deleted (started by this test session)")
    return True


# --- reporting --------------------------------------------------------------------------


def _pids_of_cluster() -> list[int]:
    pids_dir = KWOK_WORKDIR / "clusters" / CLUSTER_NAME / "pids"
    pids = []
    for path in sorted(pids_dir.glob("*.pid")) if pids_dir.is_dir() else []:
        with contextlib.suppress(ValueError):
            pids.append(int(path.read_text().strip()))
    return [pid for pid in pids if _pid_alive(pid)]


def memory_mib() -> float:
    """Resident memory of the cluster's processes, in MiB."""
    total_kib = 0
    for pid in _pids_of_cluster():
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
    return total_kib / 1024


def status() -> int:
    for name in BINARY_VERSIONS:
        path = binary(name)
        print(f"{name:24} {'ok     ' if path.is_file() else 'missing'} {path}")
    if not cluster_exists():
        print(f"cluster {CLUSTER_NAME!r}: not created")
        return 1
    healthy = is_healthy()
    print(f"cluster {CLUSTER_NAME!r}: {'running' if healthy else 'not answering'}")
    print(f"kubeconfig: {KUBECONFIG}")
    print(f"control plane memory (RSS): {memory_mib():.0f} MiB")
    if healthy:
        print(kubectl("get", "nodes", "-o", "wide").stdout)
    return 0 if healthy else 1


def usage_text() -> str:
    here = Path.cwd()
    kubeconfig = os.path.relpath(KUBECONFIG, here)
    tools = os.path.relpath(TOOLS_DIR, here)
    return (
        f"\nThe local cluster {CLUSTER_NAME!r} is up (Kubernetes {KUBERNETES_VERSION}, "
        f"kwok {KWOK_VERSION}). To use it:\n"
        f"  export KUBECONFIG=$PWD/{kubeconfig}\n"
        f"  export PATH=$PWD/{tools}:$PATH   # the pinned {', '.join(TOOLS)}\n"
        "  kubectl get nodes\n"
        "Its pods are simulated by kwok: no container runs (docs/local-cluster.md).\n"
        "Stop it with `make cluster-down`.\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build (or reuse) the pinned binaries")
    commands.add_parser("up", help="start the cluster, or reuse the running one")
    commands.add_parser("down", help="stop and delete the cluster")
    commands.add_parser("status", help="show binaries, cluster health and nodes")
    bin_parser = commands.add_parser("bin", help="print the path of a pinned binary")
    bin_parser.add_argument("name", choices=sorted(BINARY_VERSIONS))
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            build_binaries()
        elif args.command == "up":
            up(owner="cli")
            print(usage_text())
        elif args.command == "down":
            down()
        elif args.command == "status":
            return status()
        elif args.command == "bin":
            print(binary(args.name))
    except ClusterError as error:
        log(f"error: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
