"""The operator process: restarts, its metrics, and the permissions it runs with."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import sys
import tempfile
from pathlib import Path

import pytest

pytest.register_assert_rewrite("operator_harness")
from operator_harness import (  # noqa: E402
    BUCKET,
    ChartInstall,
    Kube,
    OperatorProcess,
    condition,
    model_uri,
    transitions,
    wait_for,
)

pytestmark = pytest.mark.cluster
# Fixtures chart (session), operator and kube.
pytest_plugins = ("operator_harness",)


def test_a_restarted_operator_resumes_without_creating_anything_twice(
    operator: OperatorProcess, kube: Kube
) -> None:
    kube.create("resume", count=2, kwok={"duration": "8s"})
    kube.wait_status("resume", "InProgress", "Training")
    job = kube.jobs("resume")[0]
    service = kube.services("resume")[0]
    # A crash: no cleanup, no goodbye.
    operator.kill()
    operator.start()
    status = kube.wait_status("resume", "Completed")
    jobs = kube.jobs("resume")
    assert [(j.metadata.name, j.metadata.uid) for j in jobs] == [("resume", job.metadata.uid)]
    assert [s.metadata.uid for s in kube.services("resume")] == [service.metadata.uid]
    # Each step once, in order: nothing was replayed after the restart.
    order = ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    seen = transitions(status)
    assert seen == [step for step in order if step in seen]
    assert seen[0] == "Starting" and "Training" in seen and seen[-1] == "Completed"
    assert len(transitions(status)) == len(set(transitions(status)))
    assert sum(e.reason == "JobCreated" for e in kube.events("resume")) == 1


def test_a_job_that_finishes_while_the_operator_is_down(
    operator: OperatorProcess, kube: Kube
) -> None:
    kube.create("offline", kwok={"duration": "4s"})
    kube.wait_status("offline", "InProgress", "Training")
    assert operator.stop() == 0  # a clean shutdown on SIGTERM
    wait_for(
        "the Job to complete without the operator",
        lambda: any(
            c.type == "Complete" and c.status == "True"
            for j in kube.jobs("offline")
            for c in (j.status.conditions or ())
        ),
        timeout=60,
    )
    assert kube.status("offline")["trainingJobStatus"] == "InProgress"
    operator.start()
    status = kube.wait_status("offline", "Completed")
    assert status["modelArtifacts"] == {
        "s3ModelArtifacts": f"{BUCKET}/models/offline/output/model.tar.gz"
    }
    assert condition(status, "Ready") == ("True", "Completed")
    assert [j.metadata.name for j in kube.jobs("offline")] == ["offline"]


def test_metrics(operator: OperatorProcess, kube: Kube) -> None:
    kube.create("counted", kwok={"duration": "1s"})
    kube.create("broken", instance_type="ml.m5.nope")
    kube.wait_status("counted", "Completed")
    kube.wait_status("broken", "Failed")
    assert (operator.metric("kubemaker_reconciles_total", kind="TrainingJob") or 0) >= 2
    assert operator.metric("kubemaker_jobs", kind="TrainingJob", status="Completed") == 1
    assert operator.metric("kubemaker_jobs", kind="TrainingJob", status="Failed") == 1
    latency = operator.metric("kubemaker_reconcile_duration_seconds_count", kind="TrainingJob")
    assert latency is not None and latency >= 2
    assert operator.metric("kubemaker_api_requests_total", verb="POST", code="201")
    assert operator.metric("process_resident_memory_bytes")
    kube.delete("counted")
    wait_for(
        "the deleted job to leave the gauge",
        lambda: operator.metric("kubemaker_jobs", kind="TrainingJob", status="Completed") == 0,
    )


def test_training_metrics_in_status_and_gauges_without_a_kubelet(
    chart: ChartInstall, namespace: str, kube: Kube
) -> None:
    """KWOK runs no kubelet, so every read of the algorithm's log fails: the job goes
    on, its metrics come from the agent's report, and the failures are debug lines."""
    operator = OperatorProcess(
        chart.operator_kubeconfig,
        config_file=chart.config_file,
        namespaces=[namespace],
        extra_args=["--verbose"],
    ).start()
    try:
        report = {
            "version": 1,
            "outcome": "Completed",
            "modelArtifacts": model_uri("scored"),
            "finalMetrics": {"validation:auc": 0.91, "train:auc": 0.95},
        }
        kube.create(
            "scored",
            kwok={"duration": "4s", "agent-report": json.dumps(report)},
            algorithmSpecification={
                "algorithmName": "xgboost",
                "metricDefinitions": [
                    {"name": "validation:auc", "regex": r".*#011validation-auc:(\S+)"}
                ],
            },
        )
        status = kube.wait_status("scored", "Completed")
        assert {m["metricName"]: m["value"] for m in status["finalMetricDataList"]} == {
            "validation:auc": 0.91,
            "train:auc": 0.95,
        }
        labels = {"namespace": namespace, "trainingjob": "scored"}
        assert operator.metric("kubemaker_training_metric", metric="train:auc", **labels) == 0.95
        # Read while the algorithm ran and once more when it had ended.
        failed_reads = operator.log_text().count(f"Could not read the log of {namespace}/scored-0-")
        assert failed_reads >= 2, operator.log_tail()
        kube.delete("scored")
        wait_for(
            "the deleted job's metrics to leave",
            lambda: operator.metric("kubemaker_training_metric", **labels) is None,
        )
    finally:
        operator.close()


def test_the_charts_service_account_has_what_the_operator_needs_and_no_more(
    chart: ChartInstall, namespace: str
) -> None:
    needed = [
        ("get", "trainingjobs.kubemaker.io"),
        ("list", "trainingjobs.kubemaker.io"),
        ("watch", "trainingjobs.kubemaker.io"),
        ("patch", "trainingjobs.kubemaker.io/status"),
        ("create", "jobs.batch"),
        ("delete", "jobs.batch"),
        ("get", "jobs.batch"),
        ("list", "jobs.batch"),
        ("watch", "jobs.batch"),
        ("create", "services"),
        ("get", "services"),
        ("delete", "services"),
        ("list", "pods"),
        ("watch", "pods"),
        ("patch", "pods"),
        ("get", "pods/log"),
        ("create", "events"),
        ("watch", "endpoints.kubemaker.io"),
        ("patch", "endpoints.kubemaker.io/status"),
        ("watch", "tuningjobs.kubemaker.io"),
        ("patch", "tuningjobs.kubemaker.io/status"),
        ("watch", "batchtransforms.kubemaker.io"),
        ("patch", "batchtransforms.kubemaker.io/status"),
        ("patch", "jobs.batch"),
        ("create", "trainingjobs.kubemaker.io"),
        ("patch", "trainingjobs.kubemaker.io"),
        ("create", "deployments.apps"),
        ("patch", "deployments.apps"),
        ("patch", "configmaps"),
        ("create", "poddisruptionbudgets.policy"),
    ]
    missing = [
        f"{verb} {resource}"
        for verb, resource in needed
        if not chart.can_i(verb, resource, namespace)
    ]
    assert missing == []
    # Least privilege: nothing it does not use.
    refused = [
        ("get", "secrets"),
        ("get", "pods"),
        ("create", "pods"),
        ("delete", "pods"),
        ("create", "pods/exec"),
        ("delete", "trainingjobs.kubemaker.io"),
        ("update", "trainingjobs.kubemaker.io/status"),
        ("update", "jobs.batch"),
        ("list", "services"),
        ("patch", "batchtransforms.kubemaker.io"),
        ("patch", "endpoints.kubemaker.io"),
        ("list", "configmaps"),
        ("create", "roles.rbac.authorization.k8s.io"),
    ]
    granted = [
        f"{verb} {resource}" for verb, resource in refused if chart.can_i(verb, resource, namespace)
    ]
    assert granted == []


def test_the_operator_runs_as_a_user_without_a_passwd_entry(
    chart: ChartInstall, namespace: str, kube: Kube
) -> None:
    """The image and the chart run uid 65532, which has no passwd entry: kopf's default
    identity (getpass.getuser()) fails there, so the operator must not depend on it.

    As root, with an interpreter other users may run, the operator really runs as
    65532. Otherwise (this machine's Python lives under /root, mode 0700) it runs as
    the current uid with ``pwd.getpwuid`` raising the KeyError a missing entry raises:
    the one thing about that user the operator could trip on."""
    uid = 65532
    real = os.geteuid() == 0 and _executable_by_others(Path(sys.executable).resolve())
    if real:
        with pytest.raises(KeyError):
            pwd.getpwuid(uid)  # the premise: no such user on this machine either
    # Files the operator reads, readable by that uid (pytest's tmp dirs are private).
    shared = Path(tempfile.mkdtemp(prefix="kubemaker-nobody-"))
    shared.chmod(0o755)
    copies = []
    for source in (chart.operator_kubeconfig, chart.config_file):
        copy = shared / source.name
        shutil.copyfile(source, copy)
        copy.chmod(0o644)
        copies.append(copy)
    process = OperatorProcess(
        copies[0],
        config_file=copies[1],
        namespaces=[namespace],
        run_as=uid if real else None,
        without_passwd_entry=True,
    )
    try:
        process.start()
        if real:
            assert _process_uid(process.pid) == uid
        kube.create("nobody", kwok={"duration": "1s"})
        kube.wait_status("nobody", "Completed")
    finally:
        process.close()
        shutil.rmtree(shared, ignore_errors=True)


def _executable_by_others(path: Path) -> bool:
    """Whether a user other than the owner can reach and run ``path``."""
    parents_searchable = all(p.stat().st_mode & stat.S_IXOTH for p in path.parents)
    return parents_searchable and bool(path.stat().st_mode & stat.S_IXOTH)


def _process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")
