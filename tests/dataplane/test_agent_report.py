"""Agent.finish(): model.tar.gz and output.tar.gz uploaded, and the report that says so."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from kubemaker_runtime import contract
from kubemaker_runtime.agent import Agent, AgentError
from kubemaker_runtime.agent.report import write_report
from kubemaker_runtime.contract import Paths
from kubemaker_runtime.protocol import (
    REPORT_VERSION,
    TERMINATION_MESSAGE_LIMIT,
    AgentConfig,
    AgentReport,
    ChannelConfig,
)


def config(output_path: str, hosts: int = 1, **extra: Any) -> AgentConfig:
    return AgentConfig(
        job_name="report-job",
        hosts=[f"algo-{i + 1}" for i in range(hosts)],
        output_path=output_path,
        **extra,
    )


def tar_members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def s3_bytes(s3_client: Any, bucket: str, key: str) -> bytes:
    return bytes(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_model_and_output_archives_and_report(
    s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    paths = Paths(tmp_path / "ml")
    agent = Agent(config(f"s3://{s3_bucket}/jobs/report-job/output"), paths=paths)
    agent.prepare()
    (paths.model_dir / "weights.bin").write_bytes(b"\x00\x01" * 100)
    (paths.model_dir / "code").mkdir()
    (paths.model_dir / "code" / "inference.py").write_text("print('hi')\n")
    (paths.output_data_dir / "eval.json").write_text('{"auc": 0.9}')
    paths.metrics_file.write_text(json.dumps({"validation:auc": 0.91, "note": "text", "n": 3}))

    report = agent.finish()

    model_uri = f"s3://{s3_bucket}/jobs/report-job/output/model.tar.gz"
    assert report.outcome == "Completed"
    assert report.model_artifacts == model_uri
    assert report.output_data == f"s3://{s3_bucket}/jobs/report-job/output/output.tar.gz"
    assert report.failure_reason is None and report.agent_error is None
    assert report.final_metrics == {"validation:auc": 0.91, "n": 3.0}
    model = tar_members(s3_bytes(s3_client, s3_bucket, "jobs/report-job/output/model.tar.gz"))
    # Entries are named as SageMaker names them: relative, no "./" and no "model/".
    assert model == {"weights.bin": b"\x00\x01" * 100, "code/inference.py": b"print('hi')\n"}
    output = tar_members(s3_bytes(s3_client, s3_bucket, "jobs/report-job/output/output.tar.gz"))
    assert output == {"eval.json": b'{"auc": 0.9}'}
    assert report.bytes_uploaded > 0


def test_an_empty_model_dir_still_gives_model_tar_gz(
    s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    paths = Paths(tmp_path / "ml")
    agent = Agent(config(f"s3://{s3_bucket}/out"), paths=paths)
    agent.prepare()
    report = agent.finish()
    assert report.model_artifacts == f"s3://{s3_bucket}/out/model.tar.gz"
    assert report.output_data is None
    assert tar_members(s3_bytes(s3_client, s3_bucket, "out/model.tar.gz")) == {}


def test_failure_reason_from_the_failure_file_reaches_the_report(
    s3_bucket: str, tmp_path: Path
) -> None:
    paths = Paths(tmp_path / "ml")
    agent = Agent(config(f"s3://{s3_bucket}/out"), paths=paths)
    agent.prepare()
    contract.write_failure(paths, "ClientError: hyperparameter eta must be in (0, 1], got 7\n")
    report = agent.finish()
    assert report.failure_reason == "ClientError: hyperparameter eta must be in (0, 1], got 7"
    # The outcome is the job's (the algorithm failed); the agent's own work had no error.
    assert report.outcome == "Failed" and report.agent_error is None
    # SageMaker keeps no model of a failed job: none is uploaded.
    assert report.model_artifacts is None


def test_a_failed_algorithm_uploads_no_model(
    s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    paths = Paths(tmp_path / "ml")
    agent = Agent(config(f"s3://{s3_bucket}/out"), paths=paths)
    agent.prepare()
    (paths.model_dir / "half-trained.bin").write_bytes(b"x")
    # Local mode knows the exit code; a sidecar knows only the failure file.
    report = agent.finish(algorithm_failed=True)
    assert (report.outcome, report.model_artifacts) == ("Failed", None)
    listed = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="out/").get("Contents", [])
    assert "out/model.tar.gz" not in [o["Key"] for o in listed]


def test_report_fits_the_termination_message_and_round_trips(
    s3_bucket: str, tmp_path: Path
) -> None:
    paths = Paths(tmp_path / "ml")
    agent = Agent(config(f"s3://{s3_bucket}/out"), paths=paths)
    agent.prepare()
    contract.write_failure(paths, "Traceback: " + "x" * 6000)
    paths.metrics_file.write_text(json.dumps({f"metric-{i:03d}": i / 7 for i in range(120)}))
    report = agent.finish()
    assert report.failure_reason is not None and len(report.failure_reason) == 1024

    log = tmp_path / "termination-log"
    message = write_report(report, log)
    assert len(log.read_bytes()) <= TERMINATION_MESSAGE_LIMIT
    back = AgentReport.from_message(log.read_text())
    assert back.outcome == "Failed"  # the algorithm wrote a failure file
    assert back.model_artifacts == report.model_artifacts
    assert back.failure_reason is not None and back.failure_reason.startswith("Traceback: xxx")
    assert back.bytes_uploaded == report.bytes_uploaded
    wire = json.loads(message)
    assert wire["failureReason"] == back.failure_reason  # camelCase wire
    assert "modelArtifacts" not in wire  # the algorithm failed: no model
    assert json.loads(message)["version"] == back.version == REPORT_VERSION


def test_only_the_first_host_uploads(s3_client: Any, s3_bucket: str, tmp_path: Path) -> None:
    paths = Paths(tmp_path / "ml")
    agent = Agent(config(f"s3://{s3_bucket}/out", hosts=2), host_index=1, paths=paths)
    agent.prepare()
    (paths.model_dir / "shard.bin").write_bytes(b"1")
    report = agent.finish()
    assert report.outcome == "Completed" and report.model_artifacts is None
    assert "Contents" not in s3_client.list_objects_v2(Bucket=s3_bucket)


def test_upload_to_a_missing_bucket_fails_the_agent_as_a_user_error(
    tmp_path: Path, s3_endpoint: str
) -> None:
    paths = Paths(tmp_path / "ml")
    agent = Agent(config("s3://kubemaker-no-such-bucket/out"), paths=paths)
    agent.prepare()
    report = agent.finish()
    assert report.outcome == "Failed"
    assert report.agent_error_kind == "user"
    assert report.agent_error is not None and "kubemaker-no-such-bucket" in report.agent_error
    assert report.model_artifacts is None


def test_a_failed_prepare_is_reported_without_uploading(s3_bucket: str, tmp_path: Path) -> None:
    paths = Paths(tmp_path / "ml")
    agent = Agent(
        config(
            f"s3://{s3_bucket}/out",
            channels=[ChannelConfig(name="train", uri=f"s3://{s3_bucket}/missing/")],
        ),
        paths=paths,
    )
    with pytest.raises(AgentError):
        agent.prepare()
    report = agent.finish()
    assert report.outcome == "Failed" and report.agent_error_kind == "user"
    assert report.agent_error is not None and "'train'" in report.agent_error
    assert report.model_artifacts is None


def test_outputs_to_a_local_directory(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "ml")
    out = tmp_path / "artifacts" / "report-job"
    agent = Agent(config(f"file://{out}"), paths=paths)
    agent.prepare()
    (paths.model_dir / "m.txt").write_text("model")
    report = agent.finish()
    assert report.model_artifacts == f"file://{out}/model.tar.gz"
    assert tar_members((out / "model.tar.gz").read_bytes()) == {"m.txt": b"model"}
