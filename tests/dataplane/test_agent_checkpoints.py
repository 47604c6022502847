"""Checkpoints: restored before the algorithm starts, synced while it runs and at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from process_support import wait_for

from kubemaker_runtime.agent import Agent, AgentError
from kubemaker_runtime.contract import Paths
from kubemaker_runtime.protocol import AgentConfig, CheckpointConfig


def checkpoint_config(bucket: str, uri: str | None = None, interval: int = 1) -> AgentConfig:
    return AgentConfig(
        job_name="ckpt-job",
        hosts=["algo-1"],
        output_path=f"s3://{bucket}/out",
        checkpoint=CheckpointConfig(
            uri=uri or f"s3://{bucket}/checkpoints/ckpt-job", sync_interval_seconds=interval
        ),
    )


def s3_body(s3_client: Any, bucket: str, key: str) -> bytes | None:
    try:
        return bytes(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3_client.exceptions.NoSuchKey:
        return None


def test_restore_then_sync_while_running_and_at_the_end(
    s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    prefix = "checkpoints/ckpt-job"
    s3_client.put_object(Bucket=s3_bucket, Key=f"{prefix}/epoch-1.ckpt", Body=b"one")
    s3_client.put_object(Bucket=s3_bucket, Key=f"{prefix}/state/optimizer.json", Body=b"{}")
    paths = Paths(tmp_path / "ml")
    agent = Agent(checkpoint_config(s3_bucket), paths=paths)
    agent.prepare()

    # The default local path /opt/ml/checkpoints follows the agent's base dir.
    assert agent.checkpoint_dir == paths.checkpoints_dir
    assert (paths.checkpoints_dir / "epoch-1.ckpt").read_bytes() == b"one"
    assert (paths.checkpoints_dir / "state" / "optimizer.json").read_bytes() == b"{}"
    assert agent.bytes_downloaded == 5

    with agent.running():
        (paths.checkpoints_dir / "epoch-2.ckpt").write_bytes(b"two")
        wait_for(
            lambda: s3_body(s3_client, s3_bucket, f"{prefix}/epoch-2.ckpt") == b"two",
            15,
            "the periodic sync",
        )
        (paths.checkpoints_dir / "state" / "optimizer.json").write_bytes(b'{"step": 2}')
        wait_for(
            lambda: (
                s3_body(s3_client, s3_bucket, f"{prefix}/state/optimizer.json") == b'{"step": 2}'
            ),
            15,
            "a changed file synced again",
        )
    assert agent.checkpoints is not None
    # Restored, unchanged files are not uploaded again.
    assert agent.checkpoints.files_uploaded == 2

    (paths.checkpoints_dir / "epoch-3.ckpt").write_bytes(b"three")
    report = agent.finish()
    assert s3_body(s3_client, s3_bucket, f"{prefix}/epoch-3.ckpt") == b"three"
    assert report.outcome == "Completed"
    # Checkpoints plus the (empty) model archive.
    assert report.bytes_uploaded > len(b"two" + b'{"step": 2}' + b"three")


def test_nothing_to_restore_is_fine(s3_bucket: str, tmp_path: Path) -> None:
    paths = Paths(tmp_path / "ml")
    agent = Agent(checkpoint_config(s3_bucket, interval=3600), paths=paths)
    agent.prepare()
    assert paths.checkpoints_dir.is_dir()
    assert list(paths.checkpoints_dir.iterdir()) == []


def test_checkpoints_on_a_filesystem(s3_bucket: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "run").mkdir(parents=True)
    (store / "run" / "model.ckpt").write_text("restored")
    paths = Paths(tmp_path / "ml")
    agent = Agent(
        checkpoint_config(s3_bucket, uri=f"file://{store}/run", interval=3600), paths=paths
    )
    agent.prepare()
    assert (paths.checkpoints_dir / "model.ckpt").read_text() == "restored"
    (paths.checkpoints_dir / "later.ckpt").write_text("new")
    agent.finish()
    assert (store / "run" / "later.ckpt").read_text() == "new"


def test_missing_checkpoint_bucket_is_a_user_error(s3_bucket: str, tmp_path: Path) -> None:
    config = checkpoint_config(s3_bucket, uri="s3://kubemaker-no-such-bucket/ckpt")
    with pytest.raises(AgentError) as info:
        Agent(config, paths=Paths(tmp_path)).prepare()
    assert info.value.kind == "user"
    assert "s3://kubemaker-no-such-bucket/ckpt" in info.value.message
