"""TuningJobs on the local control plane, by the operator under the chart's ServiceAccount.

Each trial is a TrainingJob whose pods KWOK plays: the template's pod annotations make
every trial run a few seconds and report the same objective through the agent's report
(tests/cluster/kwok/stages/pod.yaml). What the search suggests and how it learns is the
unit and data-plane tests' part; here: parallelism, the budget (raised while running),
stop, early stopping through ``spec.stop``, warm start, restarts, deletion.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes.client.exceptions import ApiException

pytest.register_assert_rewrite("operator_harness")
from operator_harness import (  # noqa: E402
    BUCKET,
    GROUP,
    KWOK,
    VERSION,
    Kube,
    OperatorProcess,
    condition,
    wait_for,
)

if TYPE_CHECKING:
    from conftest import LocalCluster

pytestmark = pytest.mark.cluster
pytest_plugins = ("operator_harness",)

PLURAL = "tuningjobs"
LABEL = "kubemaker.io/tuning-job"


def tuning_job(
    name: str, *, jobs: int = 4, parallel: int = 2, duration: str = "3s"
) -> dict[str, Any]:
    report = {
        "version": 2,
        "outcome": "Completed",
        "modelArtifacts": f"{BUCKET}/models/trial/output/model.tar.gz",
        "finalMetrics": {"validation:auc": 0.9},
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TuningJob",
        "metadata": {"name": name},
        "spec": {
            "hyperParameterTuningJobConfig": {
                "strategy": "Random",
                "randomSeed": 7,
                "hyperParameterTuningJobObjective": {
                    "type": "Maximize",
                    "metricName": "validation:auc",
                },
                "resourceLimits": {
                    "maxNumberOfTrainingJobs": jobs,
                    "maxParallelTrainingJobs": parallel,
                },
                "parameterRanges": {
                    "continuousParameterRanges": [
                        {"name": "eta", "minValue": 0.1, "maxValue": 0.5}
                    ],
                    "integerParameterRanges": [{"name": "max_depth", "minValue": 3, "maxValue": 9}],
                },
            },
            "trainingJobDefinition": {
                "algorithmSpecification": {"algorithmName": "xgboost"},
                "staticHyperParameters": {"num_round": "10", "objective": "binary:logistic"},
                "inputDataConfig": [{"channelName": "train", "uri": f"{BUCKET}/data/train"}],
                "outputDataConfig": {"s3OutputPath": f"{BUCKET}/models"},
                "resourceConfig": {"instanceType": "ml.m5.large", "instanceCount": 1},
                "podOverrides": {
                    "annotations": {
                        KWOK + "duration": duration,
                        KWOK + "agent-report": json.dumps(report),
                    }
                },
            },
        },
    }


class Tuning:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.kube.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.kube.namespace, PLURAL, body
        )
        return result

    def status(self, name: str) -> dict[str, Any]:
        body = self.kube.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.kube.namespace, PLURAL, name
        )
        return dict(body.get("status") or {})

    def wait(self, name: str, state: str, timeout: float = 120.0) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            status = self.status(name)
            return status if status.get("hyperParameterTuningJobStatus") == state else None

        try:
            return wait_for(f"{name} to be {state}", reached, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; status now: {json.dumps(self.status(name))}") from exc

    def trials(self, name: str) -> list[dict[str, Any]]:
        listed = self.kube.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.kube.namespace, "trainingjobs", label_selector=f"{LABEL}={name}"
        )
        return sorted(listed["items"], key=lambda t: t["metadata"]["name"])


def running(trials: list[dict[str, Any]]) -> int:
    done = {"Completed", "Failed", "Stopped"}
    return sum((t.get("status") or {}).get("trainingJobStatus") not in done for t in trials)


def test_a_search_runs_its_budget_at_most_parallel_trials_at_a_time(
    operator: OperatorProcess, kube: Kube, cluster: LocalCluster, tmp_path: Path
) -> None:
    tuning = Tuning(kube)
    created = tuning.create(tuning_job("search", jobs=4, parallel=2))
    most = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        trials = tuning.trials("search")
        most = max(most, running(trials))
        status = tuning.status("search")
        if status.get("hyperParameterTuningJobStatus") == "Completed":
            break
        time.sleep(0.2)  # sampling the running count: every state must be seen
    status = tuning.wait("search", "Completed", timeout=5)
    trials = tuning.trials("search")
    assert [t["metadata"]["name"] for t in trials] == [f"search-00{i}" for i in range(1, 5)]
    assert most <= 2
    owner = trials[0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"]) == ("TuningJob", created["metadata"]["uid"])
    tuned = {json.dumps(t["spec"]["hyperParameters"], sort_keys=True) for t in trials}
    assert len(tuned) == 4  # four different points
    for trial in trials:
        hyper = trial["spec"]["hyperParameters"]
        assert 0.1 <= float(hyper["eta"]) <= 0.5 and 3 <= int(hyper["max_depth"]) <= 9
        assert hyper["num_round"] == "10"
    assert status["trainingJobStatusCounters"]["completed"] == 4
    assert status["objectiveStatusCounters"]["succeeded"] == 4
    best = status["bestTrainingJob"]
    assert best["finalHyperParameterTuningJobObjectiveMetric"]["value"] == 0.9
    assert best["trainingJobName"] == "search-001"  # ties: the earliest
    assert "all 4 training jobs" in status["completionReason"]
    assert condition(status, "Ready") == ("True", "Completed")
    trials_metric = operator.metric(
        "kubemaker_tuning_trials", namespace=kube.namespace, tuningjob="search", status="completed"
    )
    assert trials_metric == 4
    # The picture of the search, read from the cluster as a user would.
    picture = tmp_path / "search.png"
    plotted = subprocess.run(
        [sys.executable, "-m", "kubemaker", "tuning", "plot", "search", "-n", kube.namespace,
         "--kubeconfig", str(cluster.kubeconfig), "-o", str(picture)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert plotted.returncode == 0, plotted.stderr
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stop_stops_the_running_trials(operator: OperatorProcess, kube: Kube) -> None:
    tuning = Tuning(kube)
    tuning.create(tuning_job("halted", jobs=6, parallel=2, duration="3600s"))
    wait_for("two running trials", lambda: running(tuning.trials("halted")) == 2)
    kube.custom.patch_namespaced_custom_object(
        GROUP, VERSION, kube.namespace, PLURAL, "halted", {"spec": {"stop": True}}
    )
    status = tuning.wait("halted", "Stopped")
    trials = tuning.trials("halted")
    assert len(trials) == 2
    assert all(t["spec"]["stop"] for t in trials)
    assert {t["status"]["trainingJobStatus"] for t in trials} == {"Stopped"}
    assert status["trainingJobStatusCounters"]["stopped"] == 2


def test_a_killed_operator_neither_repeats_nor_loses_a_trial(
    operator: OperatorProcess, kube: Kube
) -> None:
    tuning = Tuning(kube)
    tuning.create(tuning_job("restarted", jobs=4, parallel=2, duration="4s"))
    wait_for("the first trials", lambda: len(tuning.trials("restarted")) >= 1)
    operator.kill()
    operator.start()
    tuning.wait("restarted", "Completed")
    names = [t["metadata"]["name"] for t in tuning.trials("restarted")]
    assert names == [f"restarted-00{i}" for i in range(1, 5)]


def test_deleting_a_tuningjob_deletes_its_trials(operator: OperatorProcess, kube: Kube) -> None:
    tuning = Tuning(kube)
    tuning.create(tuning_job("gone", jobs=2, parallel=2, duration="3600s"))
    wait_for("the trials", lambda: len(tuning.trials("gone")) == 2)
    kube.custom.delete_namespaced_custom_object(GROUP, VERSION, kube.namespace, PLURAL, "gone")
    wait_for("the trials to go", lambda: tuning.trials("gone") == [], timeout=60)


def test_an_objective_no_metric_produces_fails_before_any_trial(
    operator: OperatorProcess, kube: Kube
) -> None:
    tuning = Tuning(kube)
    body = tuning_job("unknown")
    objective = body["spec"]["hyperParameterTuningJobConfig"]["hyperParameterTuningJobObjective"]
    objective["metricName"] = "validation:nothing"
    tuning.create(body)
    status = tuning.wait("unknown", "Failed")
    assert status["failureReason"].startswith(
        "ClientError: spec.hyperParameterTuningJobConfig.hyperParameterTuningJobObjective"
        ".metricName: no metric definition produces 'validation:nothing'"
    )
    assert tuning.trials("unknown") == []
    with pytest.raises(ApiException):
        kube.custom.get_namespaced_custom_object(
            GROUP, VERSION, kube.namespace, "trainingjobs", "unknown-001"
        )


def test_an_endpoint_deploys_the_best_trial_of_a_tuningjob(
    operator: OperatorProcess, kube: Kube
) -> None:
    tuning = Tuning(kube)
    tuning.create(tuning_job("best", jobs=2, parallel=2, duration="2s"))
    endpoint = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Endpoint",
        "metadata": {"name": "best-ep"},
        "spec": {
            "productionVariants": [
                {
                    "variantName": "AllTraffic",
                    "model": {"tuningJobRef": {"name": "best"}},
                    "instanceType": "ml.m5.large",
                }
            ]
        },
    }
    kube.custom.create_namespaced_custom_object(
        GROUP, VERSION, kube.namespace, "endpoints", endpoint
    )

    def in_service() -> dict[str, Any] | None:
        body = kube.custom.get_namespaced_custom_object(
            GROUP, VERSION, kube.namespace, "endpoints", "best-ep"
        )
        status = body.get("status") or {}
        return status if status.get("endpointStatus") == "InService" else None

    status = wait_for("the Endpoint of the best trial", in_service, timeout=120)
    best = tuning.status("best")["bestTrainingJob"]["trainingJobName"]
    trained = kube.custom.get_namespaced_custom_object(
        GROUP, VERSION, kube.namespace, "trainingjobs", best
    )["status"]["modelArtifacts"]["s3ModelArtifacts"]
    assert status["productionVariants"][0]["modelDataUrl"] == trained


def limits(name: str, kube: Kube, **values: int) -> None:
    kube.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        kube.namespace,
        PLURAL,
        name,
        {"spec": {"hyperParameterTuningJobConfig": {"resourceLimits": values}}},
    )


def test_a_running_search_takes_a_raised_budget_and_refuses_other_changes(
    operator: OperatorProcess, kube: Kube
) -> None:
    tuning = Tuning(kube)
    tuning.create(tuning_job("grown", jobs=2, parallel=1, duration="3600s"))
    wait_for("one running trial", lambda: running(tuning.trials("grown")) == 1)
    limits("grown", kube, maxNumberOfTrainingJobs=5, maxParallelTrainingJobs=3)
    wait_for("three running trials", lambda: running(tuning.trials("grown")) == 3)
    # Lowering the parallelism holds back new trials and stops none.
    limits("grown", kube, maxParallelTrainingJobs=1)
    with pytest.raises(ApiException) as lowered:
        limits("grown", kube, maxNumberOfTrainingJobs=4)
    assert lowered.value.status == 422
    assert "maxNumberOfTrainingJobs can be raised, not lowered" in str(lowered.value.body)
    with pytest.raises(ApiException) as changed:
        kube.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            kube.namespace,
            PLURAL,
            "grown",
            {"spec": {"hyperParameterTuningJobConfig": {"strategy": "Bayesian"}}},
        )
    assert "hyperParameterTuningJobConfig.strategy is immutable" in str(changed.value.body)
    # The status follows the trials a moment later (the trials' own status first).
    status = wait_for(
        "the status to count three running trials",
        lambda: (
            tuning.status("grown")
            if (tuning.status("grown").get("trainingJobStatusCounters") or {}).get("inProgress")
            == 3
            else None
        ),
    )
    assert status["trainingJobStatusCounters"] == {
        "completed": 0,
        "inProgress": 3,
        "retryableError": 0,
        "nonRetryableError": 0,
        "stopped": 0,
    }
    assert not any(t["spec"].get("stop") for t in tuning.trials("grown"))


def record_series(kube: Kube, trial: str, values: list[float]) -> None:
    """What the trial's TrainingJob records from its log (kubemaker.io/metric-series):
    written here because KWOK's pods have no container log for the operator to read. The
    log-to-series path is tested on its own (unit: overlapping reads; data plane: local
    tune reading live logs)."""
    kube.custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        kube.namespace,
        "trainingjobs",
        trial,
        {
            "status": {
                "metricSeries": [
                    {
                        "metricName": "validation:auc",
                        "attempt": 0,
                        "steps": list(range(1, len(values) + 1)),
                        "values": values,
                    }
                ]
            }
        },
    )


def test_early_stopping_stops_a_lagging_trial_through_spec_stop(
    operator: OperatorProcess, kube: Kube
) -> None:
    tuning = Tuning(kube)
    body = tuning_job("median", jobs=4, parallel=3, duration="8s")
    body["spec"]["hyperParameterTuningJobConfig"]["trainingJobEarlyStoppingType"] = "Auto"
    tuning.create(body)
    wait_for("three trials", lambda: len(tuning.trials("median")) == 3)
    trials = tuning.trials("median")
    assert all(
        t["metadata"]["annotations"]["kubemaker.io/metric-series"] == "validation:auc"
        for t in trials
    )
    for trial in trials:
        record_series(kube, trial["metadata"]["name"], [0.8, 0.85, 0.9])
    wait_for("the fourth trial", lambda: len(tuning.trials("median")) == 4, timeout=60)
    record_series(kube, "median-004", [0.1, 0.1])

    def stopped() -> dict[str, Any] | None:
        (trial,) = [t for t in tuning.trials("median") if t["metadata"]["name"] == "median-004"]
        return trial if (trial.get("status") or {}).get("trainingJobStatus") == "Stopped" else None

    trial = wait_for("median-004 to be stopped early", stopped, timeout=60)
    assert trial["spec"]["stop"] is True
    assert "median" in trial["metadata"]["annotations"]["kubemaker.io/stopped-early"]
    status = tuning.wait("median", "Completed")
    assert status["trainingJobStatusCounters"]["stopped"] == 1
    assert status["trainingJobStatusCounters"]["completed"] == 3
    assert status["bestTrainingJob"]["trainingJobName"] != "median-004"


def test_a_warm_start_waits_for_its_parent_and_reports_the_overall_best(
    operator: OperatorProcess, kube: Kube
) -> None:
    tuning = Tuning(kube)
    tuning.create(tuning_job("elder", jobs=2, parallel=2, duration="4s"))
    child = tuning_job("younger", jobs=2, parallel=2, duration="2s")
    child["spec"]["warmStartConfig"] = {
        "parentHyperParameterTuningJobs": [{"hyperParameterTuningJobName": "elder"}],
        "warmStartType": "IdenticalDataAndAlgorithm",
    }
    tuning.create(child)

    def waiting() -> dict[str, Any] | None:
        status = tuning.status("younger")
        reasons = {c["type"]: c.get("reason") for c in status.get("conditions") or ()}
        return status if reasons.get("Ready") == "WaitingForParents" else None

    wait_for("the child to wait for its parent", waiting)
    assert tuning.trials("younger") == []
    status = tuning.wait("younger", "Completed")
    assert tuning.status("elder")["hyperParameterTuningJobStatus"] == "Completed"
    # Every trial reports 0.9: ties go to the parents' trials, then the lower index.
    assert status["overallBestTrainingJob"]["trainingJobName"] == "elder-001"
    assert status["bestTrainingJob"]["trainingJobName"] == "younger-001"


def test_a_warm_start_from_a_missing_parent_fails_naming_it(
    operator: OperatorProcess, kube: Kube
) -> None:
    tuning = Tuning(kube)
    body = tuning_job("orphan")
    body["spec"]["warmStartConfig"] = {
        "parentHyperParameterTuningJobs": [{"hyperParameterTuningJobName": "nobody"}],
        "warmStartType": "TransferLearning",
    }
    tuning.create(body)
    status = tuning.wait("orphan", "Failed")
    assert status["failureReason"] == (
        "ClientError: spec.warmStartConfig.parentHyperParameterTuningJobs[0]: "
        f"TuningJob 'nobody' not found in namespace {kube.namespace}"
    )
