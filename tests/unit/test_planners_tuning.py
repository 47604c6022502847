"""The TuningJob planner over a small world of trials: parallelism, budget, completion,
stop, the best trial, a spec the search cannot run, and restarts (same trials, same
suggestions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kubemaker.api.tuning import TuningJob, TuningJobStatus
from kubemaker.planners.tuning import Observation, Plan, plan_tuning
from kubemaker.planners.tuning_views import TrialView

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def spec(**config: Any) -> Any:
    body = {
        "apiVersion": "kubemaker.io/v1alpha1",
        "kind": "TuningJob",
        "metadata": {"name": "tune"},
        "spec": {
            "hyperParameterTuningJobConfig": {
                "strategy": "Random",
                "randomSeed": 3,
                "hyperParameterTuningJobObjective": {
                    "type": "Maximize",
                    "metricName": "validation:auc",
                },
                "resourceLimits": {"maxNumberOfTrainingJobs": 5, "maxParallelTrainingJobs": 2},
                "parameterRanges": {
                    "continuousParameterRanges": [{"name": "eta", "minValue": 0.1, "maxValue": 0.5}]
                },
                **config,
            },
            "trainingJobDefinition": {
                "algorithmSpecification": {"algorithmName": "xgboost"},
                "staticHyperParameters": {"num_round": "10"},
                "inputDataConfig": [{"channelName": "train", "uri": "s3://bucket/train"}],
                "outputDataConfig": {"s3OutputPath": "s3://bucket/models"},
                "resourceConfig": {"instanceType": "ml.m5.large"},
            },
        },
    }
    return TuningJob.model_validate(body).spec


class World:
    def __init__(self, tuning_spec: Any) -> None:
        self.spec = tuning_spec
        self.status = TuningJobStatus()
        self.trials: dict[str, TrialView] = {}
        self.now = T0

    def reconcile(self, seconds: float = 1.0) -> Plan:
        self.now += timedelta(seconds=seconds)
        plan = plan_tuning(
            Observation(
                name="tune",
                namespace="ml",
                uid="uid-1",
                generation=1,
                spec=self.spec,
                status=self.status,
                trials=list(self.trials.values()),
                now=self.now,
            )
        )
        self.status = plan.status
        for body in plan.create:
            view = TrialView.from_body(body)
            assert view is not None
            self.trials[view.name] = view
        for name in plan.stop:
            self.trials[name] = TrialView(**{**self.trials[name].__dict__, "stop_requested": True})
        return plan

    def finish(self, name: str, state: str = "Completed", auc: float | None = 0.8) -> None:
        metrics = {"validation:auc": auc} if auc is not None else {}
        self.trials[name] = TrialView(
            **{**self.trials[name].__dict__, "training_job_status": state, "final_metrics": metrics}
        )


def running(world: World) -> int:
    return sum(t.running for t in world.trials.values())


def test_a_search_keeps_two_trials_running_until_its_budget_then_completes() -> None:
    world = World(spec())
    plan = world.reconcile()
    assert [b["metadata"]["name"] for b in plan.create] == ["tune-001", "tune-002"]
    assert world.status.hyper_parameter_tuning_job_status == "InProgress"
    assert not world.reconcile().create  # two running: nothing more
    for value, name in enumerate(["tune-001", "tune-002", "tune-003", "tune-004", "tune-005"]):
        world.finish(name, auc=0.7 + value / 100)
        world.reconcile()
        assert running(world) <= 2
    assert sorted(world.trials) == [f"tune-00{i}" for i in range(1, 6)]
    world.reconcile()
    status = world.status
    assert status.hyper_parameter_tuning_job_status == "Completed"
    assert status.completion_reason == "all 5 training jobs of the budget have ended"
    assert status.best_training_job is not None
    assert status.best_training_job.training_job_name == "tune-005"
    assert status.training_job_status_counters is not None
    assert status.training_job_status_counters.completed == 5


def test_the_same_trials_give_the_same_suggestions_after_a_restart() -> None:
    first, again = World(spec()), World(spec())
    a = first.reconcile().create
    b = again.reconcile().create
    assert [x["spec"]["hyperParameters"] for x in a] == [y["spec"]["hyperParameters"] for y in b]


def test_a_trial_without_an_objective_counts_as_failed_and_the_search_goes_on() -> None:
    world = World(spec())
    world.reconcile()
    world.finish("tune-001", auc=None)
    plan = world.reconcile()
    assert [b["metadata"]["name"] for b in plan.create] == ["tune-003"]
    counters = world.status.objective_status_counters
    assert counters is not None and counters.failed == 1


def test_the_target_objective_ends_the_search_and_stops_running_trials() -> None:
    world = World(spec(tuningJobCompletionCriteria={"targetObjectiveMetricValue": 0.9}))
    world.reconcile()
    world.finish("tune-001", auc=0.95)
    plan = world.reconcile()
    assert plan.stop == ["tune-002"] and not plan.create
    world.finish("tune-002", state="Stopped", auc=None)
    world.reconcile()
    assert world.status.hyper_parameter_tuning_job_status == "Completed"
    assert "0.9" in (world.status.completion_reason or "")


def test_stop_stops_every_running_trial_then_ends_stopped() -> None:
    world = World(spec())
    world.reconcile()
    world.spec = world.spec.model_copy(update={"stop": True})
    plan = world.reconcile()
    assert sorted(plan.stop) == ["tune-001", "tune-002"]
    assert world.status.hyper_parameter_tuning_job_status == "Stopping"
    for name in ("tune-001", "tune-002"):
        world.finish(name, state="Stopped", auc=None)
    world.reconcile()
    assert world.status.hyper_parameter_tuning_job_status == "Stopped"
    counters = world.status.training_job_status_counters
    assert counters is not None and counters.stopped == 2


def test_a_range_the_algorithm_refuses_fails_before_any_trial() -> None:
    world = World(
        spec(
            parameterRanges={
                "continuousParameterRanges": [{"name": "eta", "minValue": 0.1, "maxValue": 2.0}]
            }
        )
    )
    plan = world.reconcile()
    assert not plan.create
    assert world.status.hyper_parameter_tuning_job_status == "Failed"
    reason = world.status.failure_reason or ""
    ranges = "spec.hyperParameterTuningJobConfig.parameterRanges"
    assert reason.startswith(f"ClientError: {ranges}.continuousParameterRanges[0]")
    assert "xgboost" in reason


def test_what_this_operator_does_not_run_yet_is_refused_by_name() -> None:
    world = World(spec(trainingJobEarlyStoppingType="Auto"))
    assert not world.reconcile().create
    assert world.status.failure_reason == (
        "ClientError: spec.hyperParameterTuningJobConfig.trainingJobEarlyStoppingType: "
        "early stopping (Auto) is not run by this operator yet; set Off"
    )
