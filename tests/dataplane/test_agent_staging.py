"""Agent.prepare(): config files and File-mode channels staged from S3, pvc:// and file://."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from storage_support import Requests

from kubemaker_runtime.agent import Agent, AgentError
from kubemaker_runtime.agent.transfer import download_all
from kubemaker_runtime.contract import Paths
from kubemaker_runtime.protocol import AgentConfig, ChannelConfig, StorageConfig
from kubemaker_runtime.storage import StoredObject
from kubemaker_runtime.storage.s3 import S3Store


def make_config(
    bucket: str, channels: list[ChannelConfig], hosts: int = 1, **storage: Any
) -> AgentConfig:
    return AgentConfig(
        job_name="staging-job",
        hosts=[f"algo-{i + 1}" for i in range(hosts)],
        channels=channels,
        output_path=f"s3://{bucket}/output/staging-job/output",
        storage=StorageConfig(**storage),
    )


def put_tree(s3_client: Any, bucket: str, prefix: str, count: int) -> dict[str, bytes]:
    """``count`` objects spread over nested "folders"; {relative key: body}."""
    bodies = {}
    for i in range(count):
        rel = f"{'abc'[i % 3]}/{'xy'[i % 2]}/part-{i:03d}.csv"
        body = f"{i},{i * 2}\n".encode() * (i + 1)
        s3_client.put_object(Bucket=bucket, Key=f"{prefix}/{rel}", Body=body)
        bodies[rel] = body
    return bodies


def staged_files(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_many_objects_under_nested_prefixes(
    s3_client: Any, s3_bucket: str, s3_endpoint: str, tmp_path: Path, caplog: Any
) -> None:
    train = put_tree(s3_client, s3_bucket, "data/train", 60)
    s3_client.put_object(Bucket=s3_bucket, Key="data/validation.csv", Body=b"1,1\n")
    # A sibling whose key merely starts like the prefix must not leak into "train/".
    s3_client.put_object(Bucket=s3_bucket, Key="data/train-old/x.csv", Body=b"old")
    config = make_config(
        s3_bucket,
        [
            ChannelConfig(name="train", uri=f"s3://{s3_bucket}/data/train/"),
            ChannelConfig(name="validation", uri=f"s3://{s3_bucket}/data/validation.csv"),
        ],
        s3_endpoint_url=s3_endpoint,
    )
    paths = Paths(tmp_path / "ml")
    caplog.set_level(logging.INFO, logger="kubemaker_runtime")

    agent = Agent(config, paths=paths, workers=4)
    store = agent.stores.for_uri(f"s3://{s3_bucket}/")
    assert isinstance(store, S3Store)
    sent = Requests(store.client).sent
    agent.prepare()

    # Both channels through the agent's one store; one GET per object, no HeadObject.
    assert agent.stores.for_uri(config.channels[1].uri) is store
    assert sent == {"ListObjectsV2": 2, "GetObject": 61}

    assert staged_files(paths.channel_dir("train")) == train
    assert staged_files(paths.channel_dir("validation")) == {"validation.csv": b"1,1\n"}
    assert agent.bytes_downloaded == sum(map(len, train.values())) + 4
    assert json.loads(paths.resourceconfig_file.read_text())["current_host"] == "algo-1"
    assert set(json.loads(paths.inputdataconfig_file.read_text())) == {"train", "validation"}
    progress = [
        r.getMessage() for r in caplog.records if "staging channel 'train'" in r.getMessage()
    ]
    assert progress and "60/60 objects" in progress[-1] and "/s" in progress[-1]


def test_staging_resumes_and_refreshes_changed_objects(
    s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    train = put_tree(s3_client, s3_bucket, "train", 12)
    config = make_config(s3_bucket, [ChannelConfig(name="train", uri=f"s3://{s3_bucket}/train")])
    paths = Paths(tmp_path / "ml")
    Agent(config, paths=paths).prepare()
    channel = paths.channel_dir("train")

    # An interrupted attempt: a leftover temp file, one file cut short, one object changed.
    (channel / "a" / ".part-000.csv.123.part").write_bytes(b"partial")
    (channel / "b/y/part-001.csv").write_bytes(b"cut")
    s3_client.put_object(Bucket=s3_bucket, Key="train/c/x/part-002.csv", Body=b"changed\n")
    train["c/x/part-002.csv"] = b"changed\n"

    again = Agent(config, paths=paths)
    again.prepare()
    stats = again.staged["train"].stats
    assert stats.skipped == 10
    assert stats.bytes == len(train["b/y/part-001.csv"]) + len(b"changed\n")
    assert staged_files(channel) == train


def test_file_and_pvc_channels_are_copied_or_linked(s3_bucket: str, tmp_path: Path) -> None:
    source = tmp_path / "datasets" / "iris"
    (source / "nested").mkdir(parents=True)
    (source / "a.csv").write_text("1,2\n")
    (source / "nested" / "b.csv").write_text("3,4\n")
    config = make_config(
        s3_bucket,
        [
            ChannelConfig(name="train", uri=f"file://{source}"),
            ChannelConfig(name="validation", uri="pvc://datasets/iris/nested"),
        ],
        pvc_root=str(tmp_path),
    )
    copied = Paths(tmp_path / "copied")
    Agent(config, paths=copied).prepare()
    assert staged_files(copied.channel_dir("train")) == {
        "a.csv": b"1,2\n",
        "nested/b.csv": b"3,4\n",
    }
    assert staged_files(copied.channel_dir("validation")) == {"b.csv": b"3,4\n"}
    assert not (copied.channel_dir("train") / "a.csv").is_symlink()

    linked = Paths(tmp_path / "linked")
    agent = Agent(config, paths=linked, link_local_sources=True)
    agent.prepare()
    link = linked.channel_dir("train") / "nested" / "b.csv"
    assert link.is_symlink() and link.read_text() == "3,4\n"
    assert agent.bytes_downloaded == 0


def test_gzip_channels_are_staged_as_stored_in_file_mode(
    s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    # SageMaker: "CompressionType is used only in Pipe input mode."
    body = gzip.compress(b"1,2\n3,4\n")
    s3_client.put_object(Bucket=s3_bucket, Key="gz/train.csv.gz", Body=body)
    config = make_config(
        s3_bucket, [ChannelConfig(name="train", uri=f"s3://{s3_bucket}/gz/", compression="Gzip")]
    )
    paths = Paths(tmp_path / "ml")
    Agent(config, paths=paths).prepare()
    assert (paths.channel_dir("train") / "train.csv.gz").read_bytes() == body


@pytest.mark.parametrize("mode", ["File", "Pipe"])
def test_sharded_by_s3_key_splits_objects_across_two_hosts(
    s3_client: Any, s3_bucket: str, tmp_path: Path, mode: str
) -> None:
    everything = put_tree(s3_client, s3_bucket, "shards", 25)
    channels = [
        ChannelConfig(
            name="train",
            uri=f"s3://{s3_bucket}/shards/",
            distribution="ShardedByS3Key",
            input_mode=mode,  # type: ignore[arg-type]
        ),
        ChannelConfig(name="replicated", uri=f"s3://{s3_bucket}/shards/a/"),
    ]
    config = make_config(s3_bucket, channels, hosts=2)
    shards = []
    for index in range(2):
        paths = Paths(tmp_path / f"host{index}")
        agent = Agent(config, host_index=index, paths=paths)
        agent.prepare()
        keys = {o.key for o in agent.staged["train"].objects}
        if mode == "File":
            assert set(staged_files(paths.channel_dir("train"))) == keys
        else:
            assert paths.pipe_fifo("train", 0).is_fifo()
            assert not paths.channel_dir("train").exists()
        # A FullyReplicated channel is whole on every host.
        assert len(staged_files(paths.channel_dir("replicated"))) == 9
        assert (
            json.loads(paths.resourceconfig_file.read_text())["current_host"] == f"algo-{index + 1}"
        )
        shards.append(keys)
    assert shards[0].isdisjoint(shards[1])
    assert shards[0] | shards[1] == set(everything)
    assert abs(len(shards[0]) - len(shards[1])) <= 1


def test_missing_bucket_is_a_user_error_naming_channel_and_uri(
    s3_bucket: str, tmp_path: Path
) -> None:
    uri = "s3://kubemaker-no-such-bucket/train/"
    config = make_config(s3_bucket, [ChannelConfig(name="train", uri=uri)])
    with pytest.raises(AgentError) as info:
        Agent(config, paths=Paths(tmp_path)).prepare()
    assert info.value.kind == "user"
    assert "'train'" in info.value.message and uri in info.value.message
    assert "does not exist" in info.value.message


def test_empty_prefix_is_a_user_error(s3_bucket: str, tmp_path: Path) -> None:
    uri = f"s3://{s3_bucket}/nothing/here/"
    config = make_config(s3_bucket, [ChannelConfig(name="validation", uri=uri)])
    with pytest.raises(AgentError) as info:
        Agent(config, paths=Paths(tmp_path)).prepare()
    assert info.value.kind == "user"
    assert "'validation'" in info.value.message and uri in info.value.message
    assert "no objects" in info.value.message


def test_missing_local_directory_is_a_user_error(s3_bucket: str, tmp_path: Path) -> None:
    config = make_config(
        s3_bucket,
        [ChannelConfig(name="train", uri="pvc://claim/missing")],
        pvc_root=str(tmp_path),
    )
    with pytest.raises(AgentError) as info:
        Agent(config, paths=Paths(tmp_path / "ml")).prepare()
    assert info.value.kind == "user" and "pvc://claim/missing" in info.value.message


def test_unavailable_store_is_a_platform_error(
    unavailable_s3_endpoint: str, tmp_path: Path
) -> None:
    config = make_config(
        "bucket",
        [ChannelConfig(name="train", uri="s3://bucket/train/")],
        s3_endpoint_url=unavailable_s3_endpoint,
    )
    with pytest.raises(AgentError) as info:
        Agent(config, paths=Paths(tmp_path)).prepare()
    assert info.value.kind == "platform"
    assert "'train'" in info.value.message


def test_keys_escaping_the_channel_directory_are_refused(
    s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    s3_client.put_object(Bucket=s3_bucket, Key="evil/../../../etc/passwd", Body=b"x")
    config = make_config(s3_bucket, [ChannelConfig(name="train", uri=f"s3://{s3_bucket}/evil/")])
    with pytest.raises(AgentError) as info:
        Agent(config, paths=Paths(tmp_path / "ml")).prepare()
    assert info.value.kind == "user" and ".." in info.value.message
    assert not (tmp_path / "etc").exists()


def test_a_failing_object_is_retried_by_botocore_only(
    unavailable_s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    store = S3Store(endpoint_url=unavailable_s3_endpoint)
    sent = Requests(store.client).sent
    obj = StoredObject(uri="s3://bucket/train/a.csv", key="a.csv", size=4, mtime=0, etag="e")
    with pytest.raises(AgentError) as info:
        download_all(store, [obj], tmp_path, label="staging", context="channel 'train'")
    assert info.value.kind == "platform" and "channel 'train'" in info.value.message
    # AWS_MAX_ATTEMPTS requests in all: no agent retry loop on top of botocore's.
    assert sent == {"GetObject": 2}
    assert list(tmp_path.iterdir()) == []
