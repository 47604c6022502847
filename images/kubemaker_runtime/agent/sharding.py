"""``ShardedByS3Key``: each host gets every n-th object of the sorted listing."""

from __future__ import annotations

from collections.abc import Sequence

from kubemaker_runtime.storage import StoredObject


def shard(objects: Sequence[StoredObject], host_index: int, num_hosts: int) -> list[StoredObject]:
    """The objects host ``host_index`` of ``num_hosts`` stages.

    Deterministic (sorted by key, then round robin by host index), so every host
    computes the same split independently; the shards are disjoint and together hold
    every object, and their object counts differ by at most one.
    """
    if num_hosts < 1 or not 0 <= host_index < num_hosts:
        raise ValueError(f"host index {host_index} out of range for {num_hosts} hosts")
    ordered = sorted(objects, key=lambda o: (o.key, o.uri))
    return ordered[host_index::num_hosts]
