#!/usr/bin/env python3
"""A kind node image built on this machine, offline (no registry), for the e2e tests.

    python3 scripts/kindnode.py build      # build or reuse the node image; print its reference
    python3 scripts/kindnode.py binaries   # build or reuse only the binaries it needs
    scripts/kind-node-image.sh             # = build

``kind build node-image`` always pulls pause, etcd, CoreDNS, kindnetd and
local-path-provisioner, so this does by hand what it does (kind's ``buildcontext.go``):

1. Go binaries from the Go module proxy, with the build code and cache of
   ``tests/cluster/localcluster.py`` (``$KUBEMAKER_CACHE/bin/<name>-<version>``): kubelet,
   kubeadm and kube-proxy (the local control plane's Kubernetes, which also gives
   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and etcd),
   containerd, crictl, the CNI plugins and CoreDNS; ``pause`` compiled statically from
   Kubernetes' ``build/pause/linux/pause.c``.
2. The node's Debian (``kubemaker/kind-os``): ``debootstrap`` of bookworm, whose systemd
   (252) still boots on a cgroup v1 host, with kind's packages and Debian's runc.
3. The base image (``images/kind-node/Dockerfile.base``): that, kind's own base files from
   its Go module zip, ours (``images/kind-node/kubemaker/``) and the binaries above.
4. The component images under their registry.k8s.io names (``images/kind-node/``).
5. The node: the base run with ``sleep infinity``; kubeadm, kubelet, kubectl copied in;
   containerd started inside and each component image imported into it (pinned);
   ``docker commit`` with kind's entry point.

Every image carries the label ``io.kubemaker.inputs``, a hash of what it is built from;
one whose label matches is reused, so the engine's image store is the cache (as
``scripts/images.sh``). The node image is ``kubemaker/kind-node:<kubernetes>-<hash>``.
The fixes that belong to the cluster's config (etcd's tag, no default CNI, cgroup v1)
are ``KIND_CONFIG_PATCHES`` and ``KIND_NETWORKING`` below, which the e2e harness adds to
``tests/e2e/manifests/kind-config.yaml`` (docs/e2e.md lists every fix).

Standard library only. Docker 20.10 client (``$KUBEMAKER_DOCKER``, default
/usr/bin/docker) with ``DOCKER_BUILDKIT=0``: plain Dockerfiles.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

REPO_ROOT = Path(__file__).resolve().parents[1]
CONTEXT = REPO_ROOT / "images" / "kind-node"


def _load_localcluster() -> ModuleType:
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


localcluster = _load_localcluster()

# --- pinned versions: change them together (docs/e2e.md, "Pins") ---------------------------
KIND_VERSION = "v0.32.0"
KUBERNETES_VERSION = localcluster.KUBERNETES_VERSION  # v1.36.3
ETCD_VERSION = localcluster.ETCD_VERSION  # v3.6.10: kubeadm 1.36 asks for 3.6.8-0 (kind config)
ETCD_TAG = ETCD_VERSION.lstrip("v") + "-0"
CONTAINERD_VERSION = "v2.3.1"
CRICTL_VERSION = "v1.36.0"
CNI_PLUGINS_VERSION = "v1.9.1"
COREDNS_VERSION = "v1.14.2"
PAUSE_VERSION = "3.10.2"  # what kubeadm 1.36 lists (containerd's sandbox image)
REGISTRY = "registry.k8s.io"
NODE_REPOSITORY = "kubemaker/kind-node"
LABEL = "io.kubemaker.inputs"

DOCKER = os.environ.get("KUBEMAKER_DOCKER") or "/usr/bin/docker"
MIRROR = os.environ.get("KUBEMAKER_DEBIAN_MIRROR") or "http://deb.debian.org/debian"

GoBuild = localcluster.GoBuild

# CGO_ENABLED=0: static binaries, whatever the node's and the images' libc.
STATIC = {"CGO_ENABLED": "0"}

NODE_BUILDS: tuple[object, ...] = (
    GoBuild(
        name="kubernetes-node",
        module="k8s.io/kubernetes",
        version=KUBERNETES_VERSION,
        binaries={
            "kubelet": "k8s.io/kubernetes/cmd/kubelet",
            "kubeadm": "k8s.io/kubernetes/cmd/kubeadm",
            "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
        },
        ldflags=localcluster._kubernetes_ldflags(KUBERNETES_VERSION),
        replace_staging=True,
        env=STATIC,
    ),
    GoBuild(
        name="containerd",
        module="github.com/containerd/containerd/v2",
        version=CONTAINERD_VERSION,
        binaries={
            name: f"github.com/containerd/containerd/v2/cmd/{name}"
            for name in ("containerd", "containerd-shim-runc-v2", "ctr")
        },
        ldflags=(f"-X github.com/containerd/containerd/v2/version.Version={CONTAINERD_VERSION}",),
        env=STATIC,
    ),
    GoBuild(
        name="cri-tools",
        module="sigs.k8s.io/cri-tools",
        version=CRICTL_VERSION,
        binaries={"crictl": "sigs.k8s.io/cri-tools/cmd/crictl"},
        ldflags=(f"-X sigs.k8s.io/cri-tools/pkg/version.Version={CRICTL_VERSION}",),
        env=STATIC,
    ),
    GoBuild(
        name="cni-plugins",
        module="github.com/containernetworking/plugins",
        version=CNI_PLUGINS_VERSION,
        binaries={
            "cni-ptp": "github.com/containernetworking/plugins/plugins/main/ptp",
            "cni-host-local": "github.com/containernetworking/plugins/plugins/ipam/host-local",
            "cni-loopback": "github.com/containernetworking/plugins/plugins/main/loopback",
            "cni-portmap": "github.com/containernetworking/plugins/plugins/meta/portmap",
        },
        env=STATIC,
    ),
    GoBuild(
        name="coredns",
        module="github.com/coredns/coredns",
        version=COREDNS_VERSION,
        binaries={"coredns": "github.com/coredns/coredns"},
        env=STATIC,
    ),
    GoBuild(
        name="kind",
        module="sigs.k8s.io/kind",
        version=KIND_VERSION,
        binaries={"kind": "sigs.k8s.io/kind"},
    ),
)

# The component images: name under registry.k8s.io -> (binary, Dockerfile).
COMPONENTS: dict[str, tuple[str, str]] = {
    f"kube-apiserver:{KUBERNETES_VERSION}": ("kube-apiserver", "Dockerfile.component"),
    f"kube-controller-manager:{KUBERNETES_VERSION}": (
        "kube-controller-manager",
        "Dockerfile.component",
    ),
    f"kube-scheduler:{KUBERNETES_VERSION}": ("kube-scheduler", "Dockerfile.component"),
    f"kube-proxy:{KUBERNETES_VERSION}": ("kube-proxy", "Dockerfile.component"),
    f"etcd:{ETCD_TAG}": ("etcd", "Dockerfile.component"),
    f"coredns/coredns:{COREDNS_VERSION}": ("coredns", "Dockerfile.coredns"),
    f"pause:{PAUSE_VERSION}": ("pause", "Dockerfile.pause"),
}
# The node's Debian: kind's package list (less fuse-overlayfs, NFS, iSCSI and curl) with
# runc (Debian's is built with seccomp) and ipset for kube-proxy.
OS_PACKAGES = (
    "systemd,conntrack,iptables,nftables,ipset,iproute2,ethtool,util-linux,mount,kmod,"
    "libseccomp2,pigz,bash,ca-certificates,jq,procps,runc"
)

# What the kind config needs for this node image (tests/e2e/kindharness.py merges it in).
KIND_CONFIG_PATCHES: tuple[str, ...] = (
    # kubeadm 1.36 asks for etcd 3.6.8-0; the node holds the local control plane's etcd.
    "kind: ClusterConfiguration\netcd:\n  local:\n    imageTag: " + ETCD_TAG + "\n",
    # A cgroup v1 host (the 1.36 kubelet refuses one unless told).
    "kind: KubeletConfiguration\nfailCgroupV1: false\n",
)
# kindnetd cannot be built from its module: a static CNI config in the node instead
# (images/kind-node/kubemaker/etc/cni/net.d), which fits one node.
KIND_NETWORKING = {"disableDefaultCNI": True}


class BuildError(RuntimeError):
    """A step of the node image build failed; the text says which and why."""


def log(message: str) -> None:
    print(f"[kindnode] {message}", file=sys.stderr, flush=True)


def docker(
    *args: str | Path, timeout: float = 1800.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """The 20.10 client, without BuildKit."""
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    result = subprocess.run(
        [DOCKER, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )
    if check and result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip())[-4000:]
        raise BuildError(
            f"`docker {' '.join(map(str, args))}` exited {result.returncode}:\n{output}"
        )
    return result


def label_of(image: str) -> str | None:
    result = docker(
        "image",
        "inspect",
        "--format",
        '{{index .Config.Labels "' + LABEL + '"}}',
        image,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def image_id(image: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()


def _hash(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _tree_hash(root: Path) -> str:
    parts: list[bytes | str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        parts += [str(path.relative_to(root)), oct(path.stat().st_mode & 0o777), path.read_bytes()]
    return _hash(*parts)


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- binaries -----------------------------------------------------------------------------


def build_binaries() -> dict[str, Path]:
    """The Go binaries (built once into the cache) and pause; name -> path."""
    paths: dict[str, Path] = {}
    for build in NODE_BUILDS:
        started = time.monotonic()
        built = localcluster.ensure_built([build])
        paths.update(built)
        log(f"{build.name} ready ({time.monotonic() - started:.0f}s)")
    control_plane = [b for b in localcluster.BUILDS if b.name in ("kubernetes", "etcd")]
    paths.update(localcluster.ensure_built(control_plane))
    paths["pause"] = build_pause()
    return paths


def build_pause() -> Path:
    """Kubernetes' pause.c, compiled statically with the host's C compiler."""
    path = localcluster.versioned_binary("pause", PAUSE_VERSION)
    if path.is_file():
        return path
    source = _kubernetes_source() / "build" / "pause" / "linux" / "pause.c"
    compiler = shutil.which(os.environ.get("CC") or "cc") or shutil.which("gcc")
    if compiler is None:
        raise BuildError("a C compiler (cc, gcc) and static libc are needed for pause")
    tmp = path.with_suffix(".tmp")
    subprocess.run(
        [
            compiler,
            "-Os",
            "-Wall",
            "-static",
            f"-DVERSION=v{PAUSE_VERSION}",
            "-o",
            str(tmp),
            str(source),
        ],
        check=True,
        timeout=300,
    )
    subprocess.run(["strip", str(tmp)], check=False, timeout=60)
    os.replace(tmp, path)
    return path


def _module_dir(module: str, version: str) -> Path:
    go = shutil.which("go")
    if go is None:
        raise BuildError("the Go toolchain is needed (go >= 1.26)")
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(
            [go, "mod", "download", "-json", f"{module}@{version}"],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
            env={**os.environ, "GOFLAGS": "-mod=mod", "GOWORK": "off"},
        )
    if result.returncode != 0:
        raise BuildError(f"go mod download {module}@{version}: {result.stderr.strip()}")
    return Path(json.loads(result.stdout)["Dir"])


def _kubernetes_source() -> Path:
    return _module_dir("k8s.io/kubernetes", KUBERNETES_VERSION)


def kind_base_files() -> Path:
    """kind's images/base/files from its Go module zip (read-only in the module cache)."""
    return _module_dir("sigs.k8s.io/kind", KIND_VERSION) / "images" / "base" / "files"


# --- images ----------------------------------------------------------------------------------


def build_os_image() -> str:
    """debootstrap (minbase) of bookworm with the node's packages, imported into the engine."""
    image = f"kubemaker/kind-os:bookworm-{_hash(OS_PACKAGES, MIRROR)}"
    if docker("image", "inspect", image, check=False).returncode == 0:
        return image
    if shutil.which("debootstrap") is None:
        raise BuildError("debootstrap is needed: apt-get install debootstrap")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kubemaker-kind-os.") as root:
        log(f"debootstrap bookworm into {root}")
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={OS_PACKAGES}",
                "bookworm",
                root,
                MIRROR,
            ],
            check=True,
            capture_output=True,
            timeout=1800,
        )
        for pattern in ("var/lib/apt/lists/*", "var/cache/apt/archives/*.deb"):
            for path in Path(root).glob(pattern):
                if path.is_file():
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [DOCKER, "import", "--change", "ENV LANG=C.UTF-8", "-", image],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
        if imported.returncode != 0:
            raise BuildError(f"docker import {image}: {imported.stderr.strip()}")
    log(f"built {image} in {time.monotonic() - started:.0f}s")
    return image


def _build(
    tag: str, dockerfile: Path, context: Path, inputs: str, build_args: dict[str, str]
) -> bool:
    """``docker build`` unless ``tag`` carries the label ``inputs``; True when built."""
    if label_of(tag) == inputs:
        return False
    args: list[str | Path] = ["build", "--label", f"{LABEL}={inputs}", "-f", dockerfile, "-t", tag]
    for key, value in build_args.items():
        args += ["--build-arg", f"{key}={value}"]
    docker(*args, context)
    return True


def build_base_image(os_image: str, binaries: dict[str, Path]) -> str:
    """kind's base image, on this machine (images/kind-node/Dockerfile.base)."""
    with tempfile.TemporaryDirectory(prefix="kubemaker-kind-base.") as tmp:
        context = Path(tmp)
        shutil.copytree(kind_base_files(), context / "files")
        shutil.copytree(CONTEXT / "kubemaker", context / "kubemaker")
        (context / "kubemaker" / "kind").mkdir(exist_ok=True)
        (context / "kubemaker" / "kind" / "pause-version").write_text(PAUSE_VERSION + "\n")
        # Modes as kind's COPY --chmod sets them (the module zip is read-only).
        for path in (context / "files").rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        for sub in ("files/usr/local/bin", "files/kind/bin"):
            for path in (context / sub).iterdir():
                path.chmod(0o755)
        for name, sub in (
            ("bin", ("containerd", "containerd-shim-runc-v2", "ctr", "crictl")),
            ("cni", ("cni-ptp", "cni-host-local", "cni-loopback", "cni-portmap")),
        ):
            (context / name).mkdir()
            for binary in sub:
                shutil.copy2(binaries[binary], context / name / binary.removeprefix("cni-"))
        shutil.copy2(CONTEXT / "Dockerfile.base", context / "Dockerfile")
        inputs = _hash(image_id(os_image), _tree_hash(context))
        tag = f"kubemaker/kind-base:{KIND_VERSION}-{inputs}"
        started = time.monotonic()
        if _build(tag, context / "Dockerfile", context, inputs, {"OS_IMAGE": os_image}):
            log(f"built {tag} in {time.monotonic() - started:.0f}s")
    return tag


def build_component_images(os_image: str, binaries: dict[str, Path]) -> list[str]:
    """The images kubeadm and the kubelet ask for, under their registry.k8s.io names."""
    refs = []
    for name, (binary, dockerfile) in COMPONENTS.items():
        ref = f"{REGISTRY}/{name}"
        with tempfile.TemporaryDirectory(prefix="kubemaker-kind-image.") as tmp:
            context = Path(tmp)
            shutil.copy2(binaries[binary], context / binary)
            (context / binary).chmod(0o755)
            shutil.copy2(CONTEXT / dockerfile, context / "Dockerfile")
            base = image_id(os_image) if dockerfile == "Dockerfile.component" else "scratch"
            inputs = _hash(base, _tree_hash(context))
            started = time.monotonic()
            if _build(
                ref,
                context / "Dockerfile",
                context,
                inputs,
                {"OS_IMAGE": os_image, "BINARY": binary},
            ):
                log(f"built {ref} in {time.monotonic() - started:.0f}s")
        refs.append(ref)
    return refs


def build_node_image(base: str, components: Sequence[str], binaries: dict[str, Path]) -> str:
    """What ``kind build node-image`` does, without pulling: the node image's reference."""
    node_binaries = ("kubeadm", "kubelet", "kubectl")
    inputs = _hash(
        image_id(base),
        *(image_id(ref) for ref in components),
        *(_file_hash(binaries[name]) for name in node_binaries),
        KUBERNETES_VERSION,
    )
    tag = f"{NODE_REPOSITORY}:{KUBERNETES_VERSION}-{inputs}"
    if label_of(tag) == inputs:
        return tag
    started = time.monotonic()
    container = f"kubemaker-kind-node-build-{os.getpid()}"
    docker("run", "-d", "--privileged", "--name", container, "--entrypoint=sleep", base, "infinity")
    try:
        for name in node_binaries:
            docker("cp", binaries[name], f"{container}:/usr/bin/{name}")
        docker("exec", container, "chmod", "0755", *(f"/usr/bin/{n}" for n in node_binaries))
        docker(
            "exec",
            container,
            "sh",
            "-c",
            f"mkdir -p /kind && echo {KUBERNETES_VERSION} > /kind/version",
        )
        docker(
            "exec", "-d", container, "sh", "-c", "containerd >/var/log/containerd-build.log 2>&1"
        )
        _wait_for_containerd(container)
        for ref in components:
            _import(container, ref)
        docker(
            "exec",
            container,
            "sh",
            "-c",
            "pkill containerd; while pgrep -x containerd >/dev/null; do sleep 0.2; done; "
            "rm -f /var/log/containerd-build.log",
        )
        docker(
            "commit",
            "--change",
            'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
            "--change",
            f"LABEL {LABEL}={inputs}",
            container,
            tag,
        )
    finally:
        docker("rm", "-f", container, check=False)
    log(f"built {tag} in {time.monotonic() - started:.0f}s")
    return tag


def _wait_for_containerd(container: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.2
    while time.monotonic() < deadline:
        if docker("exec", container, "ctr", "version", check=False).returncode == 0:
            return
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
    raise BuildError(f"containerd did not start in the node build container within {timeout:.0f}s")


def _import(container: str, ref: str) -> None:
    save = subprocess.Popen([DOCKER, "save", ref], stdout=subprocess.PIPE)
    imported = subprocess.run(
        [
            DOCKER,
            "exec",
            "-i",
            container,
            "ctr",
            "-n",
            "k8s.io",
            "images",
            "import",
            "--label=io.cri-containerd.pinned=pinned",
            "--all-platforms",
            "--no-unpack",
            "--digests",
            "-",
        ],
        stdin=save.stdout,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert save.stdout is not None
    save.stdout.close()
    if save.wait() != 0 or imported.returncode != 0:
        raise BuildError(f"importing {ref} into the node failed: {imported.stderr.strip()}")


def build() -> str:
    """Build (or reuse) every step; return the node image's reference."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    binaries = build_binaries()
    timings["binaries"] = time.monotonic() - started
    step = time.monotonic()
    os_image = build_os_image()
    timings["os image"] = time.monotonic() - step
    step = time.monotonic()
    base = build_base_image(os_image, binaries)
    timings["base image"] = time.monotonic() - step
    step = time.monotonic()
    components = build_component_images(os_image, binaries)
    timings["component images"] = time.monotonic() - step
    step = time.monotonic()
    node = build_node_image(base, components, binaries)
    timings["node image"] = time.monotonic() - step
    shown = ", ".join(f"{name} {seconds:.0f}s" for name, seconds in timings.items())
    log(f"{node} ready in {time.monotonic() - started:.0f}s ({shown})")
    return node


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build or reuse the node image; print its reference")
    commands.add_parser("binaries", help="build or reuse the Go binaries; print their paths")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(build())
        else:
            for name, path in sorted(build_binaries().items()):
                print(f"{name} {path}")
    except (BuildError, localcluster.ClusterError, subprocess.SubprocessError, OSError) as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
