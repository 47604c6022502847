"""``kubemaker-agent sidecar`` and ``probe`` as real processes, as the training pod runs them.

The pod's sequence, played with processes: the sidecar starts, the startup probe
passes once inputs are staged, the algorithm runs (the BYOC program, reading a
Pipe-mode channel the sidecar feeds), the algorithm ends, the sidecar gets SIGTERM,
uploads the model and writes its report to the termination log.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
from process_support import wait_for

from kubemaker_runtime import contract
from kubemaker_runtime.agent.configfiles import build_config_files
from kubemaker_runtime.contract import Paths
from kubemaker_runtime.protocol import AGENT_CONFIG_ENV, AgentConfig, AgentReport, ChannelConfig

BYOC_TRAIN = Path(__file__).parent / "byoc" / "train"
AGENT = Path(sys.executable).parent / "kubemaker-agent"


class Pod:
    """The directories one training pod's containers share, and its agent's command."""

    def __init__(self, root: Path) -> None:
        self.paths = Paths(root / "ml")
        self.state_dir = root / "agent-state"
        self.termination_log = root / "termination-log"

    def sidecar(self, config: AgentConfig | str, index: int = 0) -> subprocess.Popen[str]:
        text = config if isinstance(config, str) else config.model_dump_json(by_alias=True)
        env = {**os.environ, AGENT_CONFIG_ENV: text, "JOB_COMPLETION_INDEX": str(index)}
        return subprocess.Popen(
            [
                str(AGENT),
                "--state-dir",
                str(self.state_dir),
                "sidecar",
                "--base-dir",
                str(self.paths.base),
                "--termination-log",
                str(self.termination_log),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def probe(self) -> int:
        return subprocess.run(
            [str(AGENT), "--state-dir", str(self.state_dir), "probe"], timeout=30
        ).returncode

    def report(self) -> AgentReport:
        return AgentReport.from_message(self.termination_log.read_text())


def finish(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def test_sidecar_lifecycle_with_a_pipe_mode_byoc_algorithm(
    s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    rng = np.random.default_rng(7)
    features = rng.normal(size=(300, 2))
    labels = features @ np.array([1.5, -2.0]) + 0.25
    rows = np.column_stack([labels, features])
    for index, chunk in enumerate(np.array_split(rows, 3)):
        body = io.StringIO()
        np.savetxt(body, chunk, delimiter=",", fmt="%.10f")
        s3_client.put_object(Bucket=s3_bucket, Key=f"cli/train/{index}.csv", Body=body.getvalue())
    config = AgentConfig(
        job_name="cli-job",
        hosts=["cli-job-0"],
        hyper_parameters={"l2": "0"},
        channels=[
            ChannelConfig(name="train", uri=f"s3://{s3_bucket}/cli/train/", input_mode="Pipe")
        ],
        output_path=f"s3://{s3_bucket}/cli/cli-job/output",
    )
    pod = Pod(tmp_path)
    assert pod.probe() == 1  # nothing started: not ready

    sidecar = pod.sidecar(config)
    try:
        wait_for(lambda: pod.probe() == 0 or sidecar.poll() is not None, 60, "the probe")
        assert sidecar.poll() is None, sidecar.communicate()[0]
        assert pod.paths.pipe_fifo("train", 0).is_fifo()
        # Writable by an algorithm running as another user.
        for shared in (pod.paths.model_dir, pod.paths.output_data_dir, pod.paths.checkpoints_dir):
            assert shared.stat().st_mode & 0o777 == 0o777, shared

        files = build_config_files(config, 0)
        env = {
            **os.environ,
            **contract.build_training_env(
                pod.paths,
                hyperparameters=files[contract.HYPERPARAMETERS_FILE],
                input_data_config=files[contract.INPUT_DATA_CONFIG_FILE],
                resource_config=files[contract.RESOURCE_CONFIG_FILE],
                num_cpus=2,
            ),
            "SAGEMAKER_BASE_DIR": str(pod.paths.base),
        }
        algorithm = subprocess.run(
            [sys.executable, str(BYOC_TRAIN), "train"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert algorithm.returncode == 0, algorithm.stderr
        sidecar.send_signal(signal.SIGTERM)  # what the kubelet does once "algorithm" ended
        code, log = finish(sidecar)
    finally:
        if sidecar.poll() is None:
            sidecar.kill()
            sidecar.wait()

    assert code == 0, log
    assert "received SIGTERM" in log and "ready: the algorithm may start" in log
    assert len(pod.termination_log.read_bytes()) <= 4096
    report = pod.report()
    assert report.outcome == "Completed"
    assert report.model_artifacts == f"s3://{s3_bucket}/cli/cli-job/output/model.tar.gz"
    assert report.bytes_downloaded > 0 and report.bytes_uploaded > 0
    assert report.final_metrics["train:mse"] < 1e-12
    body = s3_client.get_object(Bucket=s3_bucket, Key="cli/cli-job/output/model.tar.gz")["Body"]
    with tarfile.open(fileobj=io.BytesIO(body.read()), mode="r:gz") as tar:
        model = json.load(tar.extractfile("model.json"))  # type: ignore[arg-type]
    np.testing.assert_allclose(model["weights"], [1.5, -2.0, 0.25], atol=1e-8)


def test_sidecar_reports_a_user_error_and_never_becomes_ready(
    s3_bucket: str, tmp_path: Path
) -> None:
    config = AgentConfig(
        job_name="bad-input",
        hosts=["a", "b"],
        channels=[ChannelConfig(name="train", uri=f"s3://{s3_bucket}/does/not/exist/")],
        output_path=f"s3://{s3_bucket}/out",
    )
    pod = Pod(tmp_path)
    code, log = finish(pod.sidecar(config, index=1))
    assert code == 1, log
    assert pod.probe() == 1
    report = pod.report()
    assert report.outcome == "Failed" and report.agent_error_kind == "user"
    assert report.agent_error is not None
    assert f"s3://{s3_bucket}/does/not/exist/" in report.agent_error
    # Host index 1 was honoured: its resourceconfig names the second host.
    assert json.loads(pod.paths.resourceconfig_file.read_text())["current_host"] == "b"


def test_sidecar_rejects_a_bad_config_with_a_report(tmp_path: Path) -> None:
    pod = Pod(tmp_path)
    code, _ = finish(pod.sidecar('{"jobName": "x"}'))
    assert code == 1
    report = pod.report()
    assert report.outcome == "Failed" and report.agent_error_kind == "platform"
    assert report.agent_error is not None and "hosts" in report.agent_error


def test_the_probe_loads_only_the_standard_library() -> None:
    # The kubelet runs the probe every few seconds: no pydantic, no boto3.
    code = (
        "import sys; from kubemaker_runtime.agent.cli import main;"
        "print(sorted(m for m in ('pydantic', 'boto3', 'botocore') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
