"""One failure, one wording: the cluster's planner and local mode classify the same cases
through kubemaker.failures and must give the same failureReason."""

from __future__ import annotations

import io
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from training_support import container, job_body, observe, pod_body

from kubemaker.api.training import TrainingJob
from kubemaker.config import OperatorConfig
from kubemaker.failures import FailureKind, algorithm_failure, failure, prefix_of
from kubemaker.local.progress import Display
from kubemaker.local.training import LocalTrainingJob
from kubemaker.planners.training import plan_training
from kubemaker_runtime.agent.errors import AgentError
from kubemaker_runtime.protocol import AgentReport


@dataclass(frozen=True)
class Case:
    id: str
    expected: str
    agent_error: tuple[str, str] | None = None  # (kind, message)
    failure_file: str | None = None
    output: str | None = None
    exit_code: int = 1


CASES = [
    Case(
        "missing channel",
        "ClientError: channel 'train': file:///data/train does not exist",
        agent_error=("user", "channel 'train': file:///data/train does not exist"),
    ),
    Case(
        "object store outage",
        "PlatformError: the data-plane agent failed: could not reach the S3 endpoint",
        agent_error=("platform", "could not reach the S3 endpoint"),
    ),
    Case(
        "the algorithm's own ClientError",
        "ClientError: Hyperparameter max_depth: 'deep' is not an integer",
        failure_file="ClientError: Hyperparameter max_depth: 'deep' is not an integer",
        output="some log line",
    ),
    Case(
        "a failure file without a kind",
        "AlgorithmError: ZeroDivisionError: division by zero",
        failure_file="ZeroDivisionError: division by zero",
        exit_code=2,
    ),
    Case(
        "only the log's tail",
        "AlgorithmError: Traceback (most recent call last):\nValueError: bad row 7",
        output="Traceback (most recent call last):\nValueError: bad row 7",
    ),
    Case("nothing said", "AlgorithmError: the algorithm exited with code 3", exit_code=3),
]


def cluster_reason(case: Case) -> str:
    if case.agent_error is not None:
        kind, message = case.agent_error
        report = AgentReport(outcome="Failed", agent_error=message, agent_error_kind=kind)
        pod = pod_body(
            agent=container("agent", ("terminated", 1, "Error"), message=report.to_message()),
            algorithm=container("algorithm", "PodInitializing"),
        )
        jobs = [job_body()]
    else:
        report = AgentReport(outcome="Completed", failure_reason=case.failure_file)
        pod = pod_body(
            phase="Failed",
            agent=container("agent", ("terminated", 0, "Completed"), message=report.to_message()),
            algorithm=container(
                "algorithm", ("terminated", case.exit_code, "Error"), message=case.output
            ),
        )
        jobs = [job_body(failed=("BackoffLimitExceeded", "Job has reached the backoff limit"))]
    plan = plan_training(observe({"trainingJobStatus": "InProgress"}, jobs=jobs, pods=[pod]))
    assert plan.body["trainingJobStatus"] == "Failed", plan.body
    return str(plan.body["failureReason"])


class _FailingAgent:
    """Stands in for the agent of a local host only to raise the error of a case: an
    object store outage cannot be caused in a unit test. (A missing channel can, and
    tests/dataplane/test_local_training.py causes it for real.)"""

    def __init__(self, error: AgentError) -> None:
        self.error = error

    def prepare(self) -> None:
        raise self.error


def local_reason(case: Case, tmp_path: Path) -> str:
    manifest: dict[str, Any] = {
        "apiVersion": "kubemaker.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "bank"},
        "spec": {
            "algorithmSpecification": {"algorithmName": "xgboost"},
            "outputDataConfig": {"s3OutputPath": (tmp_path / "out").as_uri()},
            "resourceConfig": {"instanceType": "ml.m5.xlarge", "instanceCount": 1},
        },
    }
    job = LocalTrainingJob(
        TrainingJob.model_validate(manifest),
        workdir=tmp_path / "work",
        config=OperatorConfig(),
        display=Display(out=io.StringIO(), err=io.StringIO(), live=False),
    )
    job._set_up_hosts()
    host = job.hosts[0]
    if case.agent_error is not None:
        kind, message = case.agent_error
        host.agent = _FailingAgent(AgentError(message, kind))  # type: ignore[arg-type,assignment]
        result = job._result(job._prepare())
    else:
        # A real process that ended with the case's exit code; its output is the tail.
        host.process = subprocess.Popen([sys.executable, "-c", f"exit({case.exit_code})"])  # type: ignore[assignment]
        host.process.wait(30)
        host.tail.extend((case.output or "").splitlines())
        host.report = AgentReport(outcome="Completed", failure_reason=case.failure_file)
        result = job._result(None)
    assert result.outcome == "Failed", result
    return str(result.failure_reason)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_cluster_and_local_mode_word_a_failure_the_same(case: Case, tmp_path: Path) -> None:
    cluster = cluster_reason(case)
    assert cluster == case.expected
    assert local_reason(case, tmp_path) == cluster


def test_a_reason_keeps_the_kind_it_names() -> None:
    own = failure(FailureKind.ALGORITHM, "ClientError: bad data")
    assert (own.kind, own.message, own.reason) == (
        FailureKind.CLIENT,
        "bad data",
        "ClientError: bad data",
    )
    assert not own.retryable
    assert failure(FailureKind.PLATFORM, "node lost").retryable
    assert prefix_of("CapacityError: no GPUs") is FailureKind.CAPACITY
    assert prefix_of("Clienterror: no") is None


def test_reasons_fit_sagemakers_limit() -> None:
    found = algorithm_failure(failure_file="x" * 5000, output=None, exit_code=1)
    assert len(found.reason) == 1024 and found.reason.endswith("...")


def test_how_an_algorithm_ended_is_said_when_it_said_nothing() -> None:
    killed = algorithm_failure(failure_file=None, output="  ", exit_code=-9)
    assert killed.reason == "AlgorithmError: the algorithm was killed by SIGKILL"
    oom = algorithm_failure(failure_file=None, output=None, exit_code=137, out_of_memory=True)
    assert oom.reason == "AlgorithmError: the algorithm ran out of memory (OOMKilled)"
