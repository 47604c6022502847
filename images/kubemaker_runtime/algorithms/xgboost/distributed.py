"""Training across hosts with XGBoost's own collective (rabit), tracker on the first host.

Every host of ``resourceconfig.json`` runs the same ``train`` with its own data (its
shard with ``ShardedByS3Key``); XGBoost all-reduces gradient histograms so the hosts
grow the same trees, and evaluation metrics are reduced across hosts too. The first
host (rank 0) also runs the tracker that introduces the workers to each other, prints
the evaluation log, and writes checkpoints, the model and metrics.json.

The tracker listens on port 9099 (``KUBEMAKER_XGBOOST_TRACKER_PORT``) of the first
host's address; ``KUBEMAKER_XGBOOST_TRACKER_ADDRESS`` overrides that address where
host names do not resolve (local mode, tests on loopback).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from xgboost import collective
from xgboost.tracker import RabitTracker

logger = logging.getLogger(__name__)

TRACKER_PORT_ENV = "KUBEMAKER_XGBOOST_TRACKER_PORT"
TRACKER_ADDRESS_ENV = "KUBEMAKER_XGBOOST_TRACKER_ADDRESS"
DEFAULT_TRACKER_PORT = 9099
# How long the hosts may take to find each other (name resolution, slow image pulls).
RESOLVE_TIMEOUT_SECONDS = 300
CONNECT_RETRIES = 12
BOOTSTRAP_TIMEOUT_SECONDS = 3600


@dataclass(frozen=True)
class Cluster:
    hosts: tuple[str, ...]
    current_host: str
    tracker_address: str | None
    tracker_port: int

    @property
    def size(self) -> int:
        return len(self.hosts)

    @property
    def rank(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_master(self) -> bool:
        return self.rank == 0


def build_cluster(
    resource_config: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> Cluster:
    """The cluster a host belongs to, from resourceconfig.json (pure)."""
    env = os.environ if environ is None else environ
    hosts = tuple(str(h) for h in resource_config.get("hosts") or ["algo-1"])
    current = str(resource_config.get("current_host") or hosts[0])
    if current not in hosts:
        raise ValueError(f"current_host {current!r} is not one of the hosts {list(hosts)}")
    return Cluster(
        hosts=hosts,
        current_host=current,
        tracker_address=env.get(TRACKER_ADDRESS_ENV) or None,
        tracker_port=int(env.get(TRACKER_PORT_ENV) or DEFAULT_TRACKER_PORT),
    )


def resolve(host: str, timeout: float = RESOLVE_TIMEOUT_SECONDS) -> str:
    """The IPv4 address of a host name, waiting for DNS to know it (pods start apart)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return socket.gethostbyname(host)
        except OSError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(1)


@contextlib.contextmanager
def communicator(cluster: Cluster) -> Iterator[None]:
    """Join the cluster's collective for the duration of the block (no-op on one host)."""
    if not cluster.distributed:
        yield
        return
    address = cluster.tracker_address or resolve(cluster.hosts[0])
    tracker = None
    if cluster.is_master:
        tracker = RabitTracker(
            n_workers=cluster.size,
            host_ip=address,
            port=cluster.tracker_port,
            sortby="task",
            # A host that never joins (its pod failed on bad data) must not leave the
            # others waiting forever; loading a large shard counts against this.
            timeout=BOOTSTRAP_TIMEOUT_SECONDS,
        )
        tracker.start()
        logger.info(
            "tracker for %d hosts listening on %s:%d", cluster.size, address, cluster.tracker_port
        )
    args: dict[str, Any] = {
        "dmlc_communicator": "rabit",
        "dmlc_tracker_uri": address,
        "dmlc_tracker_port": cluster.tracker_port,
        # Ranks follow the order of resourceconfig.json's hosts: rank 0 is the first.
        "dmlc_task_id": f"{cluster.rank:05d}",
        "dmlc_retry": CONNECT_RETRIES,
    }
    logger.info(
        "host %s joining as rank %d of %d", cluster.current_host, cluster.rank, cluster.size
    )
    with collective.CommunicatorContext(**args):
        yield
    if tracker is not None:
        tracker.wait_for(60)


def allreduce_max(values: list[int]) -> list[int]:
    """Element-wise maximum over all hosts (identity on one host)."""
    array = np.asarray(values, dtype=np.int64)
    if not collective.is_distributed():
        return [int(v) for v in array]
    reduced = collective.allreduce(array, collective.Op.MAX)
    return [int(v) for v in reduced]


def broadcast(value: Any, root: int = 0) -> Any:
    if not collective.is_distributed():
        return value
    return collective.broadcast(value, root)


def rank() -> int:
    return collective.get_rank() if collective.is_distributed() else 0
