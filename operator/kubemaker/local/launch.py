"""How an algorithm runs on this machine: a local process, or a Docker container.

- a built-in algorithm (``algorithmName``) whose code ships in ``kubemaker_runtime``
  runs as ``python -m kubemaker_runtime.algorithms.<name> train|serve`` with this
  interpreter;
- a script-mode framework (``framework``) runs as ``python -m
  kubemaker_runtime.frameworks.<name> train|serve`` with the interpreter
  :mod:`kubemaker_runtime.frameworks` names: this one (XGBoost, whose package must be
  installed here), or that of the framework's own environment (MXNet cannot share this
  one's numpy: ``$KUBEMAKER_MXNET_PYTHON``, else ``$KUBEMAKER_CACHE/venv-mxnet``, built
  by ``scripts/mxnet-env.sh``);
- any other image (``trainingImage``, or a catalog name with no local code) runs in
  Docker, when a Docker engine answers; there is no other way to run an image here.

Several hosts on one machine reach each other on loopback: host names do not resolve,
so every process gets ``KUBEMAKER_HOST_ADDRESSES`` (host -> 127.0.0.1) and what its
algorithm needs to find its peers (XGBoost's tracker address, MXNet's scheduler port).
Containers get a Docker network in which each host name resolves.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kubemaker.config import OperatorConfig
from kubemaker.local.errors import UnsupportedError
from kubemaker_runtime import frameworks

Kind = Literal["builtin", "framework", "docker"]
Action = Literal["train", "serve"]

ALGORITHMS_PACKAGE = "kubemaker_runtime.algorithms"
LOOPBACK = "127.0.0.1"
HOST_ADDRESSES_ENV = "KUBEMAKER_HOST_ADDRESSES"
# What each algorithm or framework needs, beyond host addresses, to find its peers.
XGBOOST_TRACKER_ADDRESS_ENV = "KUBEMAKER_XGBOOST_TRACKER_ADDRESS"
XGBOOST_TRACKER_PORT_ENV = "KUBEMAKER_XGBOOST_TRACKER_PORT"
MXNET_ROOT_PORT_ENV = "DMLC_PS_ROOT_PORT"
# (kind, name) that train across several local processes. XGBoost script mode runs the
# script on every host, as SageMaker does; the script joins them (or not).
DISTRIBUTED = frozenset({("builtin", "xgboost"), ("framework", "mxnet"), ("framework", "xgboost")})
DOCKER_TIMEOUT_SECONDS = 15
CONTAINER_BASE = "/opt/ml"
CONTAINER_SERVING_PORT = 8080
# The contract's directories, each bind-mounted on its own (as the operator mounts
# subPaths): an image may keep its code elsewhere under /opt/ml.
CONTAINER_MOUNTS = ("input", "model", "output", "checkpoints")


@dataclass(frozen=True)
class Runtime:
    """What runs the algorithm on this machine."""

    kind: Kind
    name: str
    # The image the cluster runs (catalog resolution); what Docker runs locally.
    image: str
    python: str | None = None
    module: str | None = None

    @property
    def is_process(self) -> bool:
        return self.kind != "docker"

    @property
    def supports_hosts(self) -> bool:
        """Whether several hosts can train together on this machine."""
        return self.kind == "docker" or (self.kind, self.name) in DISTRIBUTED

    def describe(self) -> str:
        if self.kind == "builtin":
            return f"the built-in algorithm {self.name} as a local process"
        if self.kind == "framework":
            return f"{self.name} script mode as a local process ({self.python})"
        return f"the image {self.image} in Docker"

    def process_command(self, action: Action) -> list[str]:
        assert self.python is not None and self.module is not None
        return [self.python, "-m", self.module, action]

    def process_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """What a process needs beyond the contract's variables.

        A framework's environment built by scripts/mxnet-env.sh holds third-party packages
        only: when kubemaker runs from a source checkout, that checkout's runtime goes
        first on its path, so both sides of a run are the same code.
        """
        source = runtime_source_dir()
        if self.kind != "framework" or source is None:
            return {}
        path = os.pathsep.join(filter(None, [str(source), environ.get("PYTHONPATH")]))
        return {"PYTHONPATH": path}


def module_name(package: str, name: str) -> str:
    return f"{package}.{re.sub(r'[^0-9A-Za-z_]', '_', name)}"


def runtime_source_dir() -> Path | None:
    """The directory holding ``kubemaker_runtime`` when it is a source checkout's
    (``images/``), not an installed package's."""
    spec = importlib.util.find_spec("kubemaker_runtime")
    if spec is None or spec.origin is None:
        return None
    parent = Path(spec.origin).resolve().parent.parent
    return None if parent.name in ("site-packages", "dist-packages") else parent


def has_module(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def resolve_runtime(
    *,
    algorithm_name: str | None,
    framework: str | None,
    image: str | None,
    config: OperatorConfig,
    field: str,
    environ: Mapping[str, str] | None = None,
) -> Runtime:
    """How to run what a spec names; ``field`` is the spec path named in errors.

    ``image`` is the image the cluster would run (an explicit image wins over a
    framework's local environment, as on the cluster).
    """
    env = os.environ if environ is None else environ
    if algorithm_name and not image:
        image = config.images.algorithms.get(algorithm_name)
    if algorithm_name:
        module = module_name(ALGORITHMS_PACKAGE, algorithm_name)
        if has_module(module):
            return Runtime(
                "builtin", algorithm_name, image or "", python=sys.executable, module=module
            )
        if not image:
            known = ", ".join(sorted(config.images.algorithms)) or "none"
            raise UnsupportedError(
                f"{field}.algorithmName: unknown built-in algorithm {algorithm_name!r} "
                f"(known: {known})"
            )
        return Runtime("docker", algorithm_name, image)
    if framework and not image:
        catalog_image = config.images.frameworks.get(framework, "")
        local = frameworks.FRAMEWORKS.get(framework)
        if local is not None:
            if local.uses_current_interpreter:
                missing = [p for p in local.packages if not has_module(p)]
                if missing:
                    raise UnsupportedError(
                        f"{field}.framework: {framework} script mode runs with this Python "
                        f"({sys.executable}), which cannot import {', '.join(missing)}: "
                        f"install kubemaker's [{framework}] extra"
                    )
            try:
                python = local.interpreter(env)
            except frameworks.FrameworkUnavailable as exc:
                raise UnsupportedError(
                    f"{field}.framework: {framework} script mode runs in its own Python "
                    f"environment, and {exc}"
                ) from None
            return Runtime(
                "framework", framework, catalog_image, python=python, module=local.module
            )
        if not catalog_image:
            known = ", ".join(sorted(config.images.frameworks)) or "none"
            raise UnsupportedError(
                f"{field}.framework: unknown framework {framework!r} (known: {known})"
            )
        image = catalog_image
    if not image:
        raise UnsupportedError(f"{field}: names no algorithm, framework or image")
    return Runtime("docker", image, image)


# --- several hosts on one machine ----------------------------------------------------------


def free_port(address: str = LOOPBACK) -> int:
    """A port nothing listens on now (the OS's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def build_peer_env(runtime: Runtime, hosts: Sequence[str], port: int) -> dict[str, str]:
    """Environment that lets the hosts of a process-run job find each other on loopback.

    ``port``: a free port for the algorithm's rendezvous (XGBoost's tracker, MXNet's
    scheduler); the same for every host.
    """
    if len(hosts) < 2:
        return {}
    env = {HOST_ADDRESSES_ENV: json.dumps(dict.fromkeys(hosts, LOOPBACK), sort_keys=True)}
    if runtime.name == "xgboost":
        # The built-in algorithm's tracker; a script may use the same helper (docs/xgboost.md).
        env[XGBOOST_TRACKER_ADDRESS_ENV] = LOOPBACK
        env[XGBOOST_TRACKER_PORT_ENV] = str(port)
    elif (runtime.kind, runtime.name) == ("framework", "mxnet"):
        env[MXNET_ROOT_PORT_ENV] = str(port)
    return env


# --- Docker ------------------------------------------------------------------------------


def docker_engine() -> tuple[bool, str]:
    """Whether a Docker engine answers, and its version or why not."""
    client = shutil.which("docker")
    if client is None:
        return False, "the docker command is not installed"
    try:
        done = subprocess.run(
            [client, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=DOCKER_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"`docker version` did not answer within {DOCKER_TIMEOUT_SECONDS} s"
    if done.returncode != 0 or not done.stdout.strip():
        reason = (done.stderr.strip().splitlines() or ["no server version"])[-1]
        return False, f"`docker version` found no engine: {reason}"
    return True, done.stdout.strip()


def require_docker(what: str) -> None:
    available, detail = docker_engine()
    if not available:
        raise UnsupportedError(
            f"{what} runs in Docker in local mode, and no Docker engine answers here "
            f"({detail}). Start Docker, or use a built-in algorithm (algorithmName) or "
            "script mode (framework), which run as local processes."
        )


def docker_env_args(names: Sequence[str]) -> list[str]:
    """``-e NAME`` for each variable: Docker reads the values from its own environment,
    so none appears on a command line."""
    args: list[str] = []
    for name in names:
        args += ["-e", name]
    return args


def own_user() -> str:
    """``uid:gid`` of this process: the container runs as the user who runs local mode,
    so it can write the work directory's mounts (an image's own non-root user could
    not) and what it writes belongs to that user."""
    return f"{os.getuid()}:{os.getgid()}"


def build_docker_train_command(
    image: str,
    *,
    container: str,
    base_dir: Path,
    env_names: Sequence[str],
    host: str | None = None,
    network: str | None = None,
    gpus: int = 0,
    shared: Sequence[Path] = (),
) -> list[str]:
    """``docker run`` for one host: the contract's directories mounted, started with
    train; ``shared`` (a local ``sourceDir``) read-only at the same path, where the
    hyperparameters name it."""
    cmd = ["docker", "run", "--rm", "--name", container, "--user", own_user()]
    if network:
        cmd += ["--network", network, "--network-alias", host or container]
    if host:
        cmd += ["--hostname", host]
    if gpus:
        cmd += ["--gpus", "all"]
    for sub in CONTAINER_MOUNTS:
        cmd += ["-v", f"{base_dir / sub}:{CONTAINER_BASE}/{sub}"]
    for path in shared:
        cmd += ["-v", f"{path}:{path}:ro"]
    return [*cmd, *docker_env_args(env_names), image, "train"]


def build_docker_serve_command(
    image: str,
    *,
    container: str,
    model_dir: Path,
    address: str,
    port: int,
    env_names: Sequence[str],
    gpus: int = 0,
) -> list[str]:
    cmd = ["docker", "run", "--rm", "--name", container, "--user", own_user()]
    if gpus:
        cmd += ["--gpus", "all"]
    cmd += ["-p", f"{address}:{port}:{CONTAINER_SERVING_PORT}"]
    cmd += ["-v", f"{model_dir}:{CONTAINER_BASE}/model:ro"]
    return [*cmd, *docker_env_args(env_names), image, "serve"]
