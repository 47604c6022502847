"""MXNet's parameter-server kvstore (``dist_sync``) across the job's hosts.

As SageMaker's MXNet containers do it: the first host runs the scheduler, every host
runs one server and one worker (the user's code). MXNet's ps-lite finds its peers
through ``DMLC_*`` variables; a server or scheduler is just ``import mxnet`` with
``DMLC_ROLE`` set (mxnet.kvstore_server runs the loop at import and exits when the
workers finish).
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# SageMaker's MXNet containers put the scheduler on port 8000 of the first host.
DEFAULT_ROOT_PORT = 8000
ROOT_PORT_ENV = "DMLC_PS_ROOT_PORT"
HOST_ADDRESSES_ENV = "KUBEMAKER_HOST_ADDRESSES"
# How long a host name may take to resolve (a headless Service's records can lag).
RESOLVE_TIMEOUT_SECONDS = 300.0
# After the workers end, servers and the scheduler shut down by themselves.
SHUTDOWN_TIMEOUT_SECONDS = 60.0


class ParameterServerError(Exception):
    """The scheduler or a server could not start or died: a platform failure."""


@dataclass(frozen=True)
class PsLayout:
    hosts: tuple[str, ...]
    current_host: str
    scheduler_address: str
    node_address: str
    port: int

    @property
    def runs_scheduler(self) -> bool:
        return self.current_host == self.hosts[0]


def build_ps_env(layout: PsLayout, role: str) -> dict[str, str]:
    """The ``DMLC_*`` variables of one process (``scheduler``, ``server`` or ``worker``)."""
    if role not in ("scheduler", "server", "worker"):
        raise ValueError(f"unknown ps-lite role {role!r}")
    return {
        "DMLC_ROLE": role,
        "DMLC_PS_ROOT_URI": layout.scheduler_address,
        "DMLC_PS_ROOT_PORT": str(layout.port),
        "DMLC_NUM_SERVER": str(len(layout.hosts)),
        "DMLC_NUM_WORKER": str(len(layout.hosts)),
        # The address peers reach this node at (else ps-lite guesses an interface).
        "DMLC_NODE_HOST": layout.node_address,
    }


def resolve(
    host: str,
    *,
    timeout: float = RESOLVE_TIMEOUT_SECONDS,
    lookup: Callable[[str], str] = socket.gethostbyname,
) -> str:
    """The IPv4 address of a host, retried until ``timeout`` (DNS may not be ready yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return lookup(host)
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise ParameterServerError(f"cannot resolve host {host!r}: {exc}") from exc
            time.sleep(1.0)


def plan(hosts: list[str], current_host: str, environ: Mapping[str, str]) -> PsLayout:
    """Where the scheduler is and where this host is reached.

    ``KUBEMAKER_HOST_ADDRESSES`` (JSON, host name -> address) answers before DNS: local
    mode runs several hosts on one machine, each on its own loopback address.
    """
    port = int(environ.get(ROOT_PORT_ENV) or DEFAULT_ROOT_PORT)
    try:
        known = json.loads(environ.get(HOST_ADDRESSES_ENV) or "{}")
    except ValueError as exc:
        raise ParameterServerError(f"{HOST_ADDRESSES_ENV} is not JSON: {exc}") from exc

    def address(host: str) -> str:
        return str(known[host]) if host in known else resolve(host)

    return PsLayout(
        hosts=tuple(hosts),
        current_host=current_host,
        scheduler_address=address(hosts[0]),
        node_address=address(current_host),
        port=port,
    )


class ParameterServers:
    """The scheduler (first host only) and this host's server, as child processes."""

    def __init__(self, layout: PsLayout, base_env: Mapping[str, str]) -> None:
        self.layout = layout
        self.base_env = dict(base_env)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        roles = ["scheduler", "server"] if self.layout.runs_scheduler else ["server"]
        for role in roles:
            env = {**self.base_env, **build_ps_env(self.layout, role)}
            logger.info(
                "starting the kvstore %s (scheduler at %s:%d)",
                role,
                self.layout.scheduler_address,
                self.layout.port,
            )
            self.processes[role] = subprocess.Popen([sys.executable, "-c", "import mxnet"], env=env)

    def failed(self) -> str | None:
        """A description of a process that ended with an error while workers still run."""
        for role, process in self.processes.items():
            code = process.poll()
            if code is not None and code != 0:
                return f"the kvstore {role} exited with code {code}"
        return None

    def wait(self, timeout: float = SHUTDOWN_TIMEOUT_SECONDS) -> None:
        """Let them finish after the workers did; stop any that linger."""
        deadline = time.monotonic() + timeout
        for role, process in self.processes.items():
            remaining = max(0.0, deadline - time.monotonic())
            try:
                process.wait(remaining)
            except subprocess.TimeoutExpired:
                logger.warning("the kvstore %s did not stop by itself; terminating it", role)
                self.stop()
                return

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def worker_env(layout: PsLayout) -> dict[str, str]:
    return build_ps_env(layout, "worker")


def clean_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment without stale ``DMLC_*`` roles (a worker must not become a server)."""
    keep_port = {ROOT_PORT_ENV}
    return {k: v for k, v in environ.items() if not k.startswith("DMLC_") or k in keep_port}
