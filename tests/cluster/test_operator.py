"""The operator process: restarts, its metrics, and the permissions it runs with."""

from __future__ import annotations

import pytest

pytest.register_assert_rewrite("operator_harness")
from operator_harness import (  # noqa: E402
    BUCKET,
    ChartInstall,
    Kube,
    OperatorProcess,
    condition,
    transitions,
    wait_for,
)

pytestmark = pytest.mark.cluster
# Fixtures chart (session), operator and kube.
pytest_plugins = ("operator_harness",)


def test_a_restarted_operator_resumes_without_creating_anything_twice(
    chart: ChartInstall, namespace: str, kube: Kube
) -> None:
    operator = OperatorProcess(
        chart.operator_kubeconfig, config_file=chart.config_file, namespaces=[namespace]
    ).start()
    try:
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
    finally:
        operator.close()


def test_a_job_that_finishes_while_the_operator_is_down(
    chart: ChartInstall, namespace: str, kube: Kube
) -> None:
    operator = OperatorProcess(
        chart.operator_kubeconfig, config_file=chart.config_file, namespaces=[namespace]
    ).start()
    try:
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
    finally:
        operator.close()


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


def test_the_charts_service_account_has_what_the_operator_needs_and_no_more(
    chart: ChartInstall, namespace: str
) -> None:
    needed = [
        ("list", "trainingjobs.kubemaker.io"),
        ("watch", "trainingjobs.kubemaker.io"),
        ("patch", "trainingjobs.kubemaker.io/status"),
        ("create", "jobs.batch"),
        ("delete", "jobs.batch"),
        ("list", "jobs.batch"),
        ("watch", "jobs.batch"),
        ("create", "services"),
        ("get", "services"),
        ("delete", "services"),
        ("list", "pods"),
        ("watch", "pods"),
        ("create", "events"),
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
        ("create", "pods"),
        ("delete", "pods"),
        ("delete", "trainingjobs.kubemaker.io"),
        ("create", "roles.rbac.authorization.k8s.io"),
    ]
    granted = [
        f"{verb} {resource}" for verb, resource in refused if chart.can_i(verb, resource, namespace)
    ]
    assert granted == []
