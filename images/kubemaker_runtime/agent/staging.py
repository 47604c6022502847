"""Channels before the algorithm starts: list, shard, and stage File-mode data."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from kubemaker_runtime.agent.errors import UserError, from_storage
from kubemaker_runtime.agent.sharding import shard
from kubemaker_runtime.agent.transfer import TransferStats, download_all
from kubemaker_runtime.contract import Paths
from kubemaker_runtime.protocol import ChannelConfig
from kubemaker_runtime.storage import StorageError, Store, StoredObject

logger = logging.getLogger(__name__)


@dataclass
class StagedChannel:
    channel: ChannelConfig
    # This host's objects (its shard under ShardedByS3Key), sorted by key.
    objects: list[StoredObject] = field(default_factory=list)
    stats: TransferStats = field(default_factory=TransferStats)


def describe(channel: ChannelConfig) -> str:
    return f"channel {channel.name!r} ({channel.uri})"


def list_channel(
    channel: ChannelConfig, store: Store, host_index: int, num_hosts: int
) -> list[StoredObject]:
    """This host's objects of a channel; a missing or empty source is the user's error."""
    try:
        objects = store.list(channel.uri)
    except StorageError as exc:
        raise from_storage(exc, describe(channel)) from exc
    if not objects:
        raise UserError(f"{describe(channel)}: no objects found at {channel.uri}")
    if channel.distribution == "ShardedByS3Key":
        mine = shard(objects, host_index, num_hosts)
        logger.info(
            "%s: ShardedByS3Key, host %d of %d takes %d of %d objects",
            describe(channel),
            host_index + 1,
            num_hosts,
            len(mine),
            len(objects),
        )
        if not mine:
            logger.warning(
                "%s: fewer objects than hosts, this host's shard is empty", describe(channel)
            )
        return mine
    return objects


def stage_channel(
    channel: ChannelConfig,
    store: Store,
    paths: Paths,
    *,
    host_index: int,
    num_hosts: int,
    workers: int,
    cancel: threading.Event | None = None,
) -> StagedChannel:
    """List the channel; in File (and FastFile) mode download it to its directory.

    Compressed File-mode data is staged as it is stored: SageMaker applies
    ``CompressionType`` only in Pipe mode, so the algorithm reads ``.gz`` files itself.
    """
    objects = list_channel(channel, store, host_index, num_hosts)
    staged = StagedChannel(channel=channel, objects=objects)
    if channel.input_mode == "Pipe":
        return staged
    staged.stats = download_all(
        store,
        objects,
        paths.channel_dir(channel.name),
        label=f"staging channel {channel.name!r}",
        context=describe(channel),
        workers=workers,
        cancel=cancel,
    )
    return staged
