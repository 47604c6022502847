"""The TuningJob planner over a small world of trials: parallelism, budget (raised while
running), completion, stop, the best trial, early stopping and Hyperband on given
intermediate series, warm start, a spec the search cannot run, and restarts (same trials,
same suggestions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kubemaker.api.tuning import TuningJob, TuningJobStatus, WarmStartConfig
from kubemaker.planners.tuning import Observation, Parent, Plan, plan_tuning
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
        self.parents: dict[str, Parent] = {}
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
                parents=self.parents,
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

    def update(self, name: str, **fields: Any) -> None:
        self.trials[name] = TrialView(**{**self.trials[name].__dict__, **fields})

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


def series(*values: float) -> dict[str, tuple[tuple[int, float], ...]]:
    return {"validation:auc": tuple((step, v) for step, v in enumerate(values, start=1))}


def test_early_stopping_auto_stops_a_running_trial_below_the_median_through_spec_stop() -> None:
    world = World(
        spec(
            trainingJobEarlyStoppingType="Auto",
            resourceLimits={"maxNumberOfTrainingJobs": 6, "maxParallelTrainingJobs": 3},
        )
    )
    world.reconcile()
    for name in ("tune-001", "tune-002", "tune-003"):
        world.update(name, series=series(0.8, 0.85, 0.9))
        world.finish(name, auc=0.9)
        world.reconcile()
    # Three completed; tune-004 climbs like them, tune-005 lags at step 2.
    world.update("tune-004", series=series(0.8, 0.86))
    world.update("tune-005", series=series(0.6, 0.62))
    plan = world.reconcile()
    assert list(plan.stop_early) == ["tune-005"]
    assert plan.stop == ["tune-005"]
    assert "median" in plan.stop_early["tune-005"]
    assert not world.reconcile().stop_early  # asked once: its spec.stop is set
    world.update("tune-005", stopped_early=plan.stop_early["tune-005"])
    world.finish("tune-005", state="Stopped", auc=None)
    world.reconcile()
    counters = world.status.training_job_status_counters
    objectives = world.status.objective_status_counters
    assert counters is not None and objectives is not None
    assert (counters.stopped, counters.non_retryable_error) == (1, 0)
    assert objectives.failed == 0  # judged by its intermediate values: not a failure


def test_without_early_stopping_a_lagging_trial_runs_on() -> None:
    world = World(spec(resourceLimits={"maxNumberOfTrainingJobs": 6, "maxParallelTrainingJobs": 4}))
    world.reconcile()
    for name in ("tune-001", "tune-002", "tune-003"):
        world.update(name, series=series(0.8, 0.9))
        world.finish(name, auc=0.9)
    world.reconcile()
    world.update("tune-004", series=series(0.1, 0.1))
    assert not world.reconcile().stop_early


def test_hyperband_stops_a_trial_that_loses_at_a_rung() -> None:
    hyperband = {"hyperbandStrategyConfig": {"minResource": 1, "maxResource": 9}}
    world = World(
        spec(
            strategy="Hyperband",
            strategyConfig=hyperband,
            resourceLimits={"maxNumberOfTrainingJobs": 30, "maxParallelTrainingJobs": 30},
        )
    )
    world.reconcile()
    assert len(world.trials) == 30
    for i, name in enumerate(sorted(world.trials)[:29]):
        world.update(name, series=series(*[0.5 + i / 100] * 9))
        world.finish(name, auc=0.5 + i / 100)
    world.update("tune-030", series=series(0.1, 0.1, 0.1))
    at_the_end = World(world.spec)
    at_the_end.trials = dict(world.trials)
    at_the_end.update("tune-030", series=series(*[0.1] * 9))  # maxResource reached
    assert not at_the_end.reconcile().stop_early  # it has trained all it will
    plan = world.reconcile()
    assert list(plan.stop_early) == ["tune-030"]
    assert plan.stop_early["tune-030"].startswith("Hyperband stopped it at step")


def test_hyperband_without_max_resource_takes_num_round_or_names_the_field() -> None:
    world = World(spec(strategy="Hyperband"))
    world.reconcile()
    assert world.status.hyper_parameter_tuning_job_status == "InProgress"  # num_round: 10
    bare = spec(strategy="Hyperband")
    bare.training_job_definition.static_hyper_parameters = {}
    world = World(bare)
    world.reconcile()
    assert world.status.failure_reason == (
        "ClientError: spec.hyperParameterTuningJobConfig.strategyConfig."
        "hyperbandStrategyConfig.maxResource: set it, or give the epochs as a static "
        "hyperparameter (epochs, max_epochs, n_epochs, num_epochs, num_round)"
    )


def test_a_raised_budget_and_parallelism_take_effect_and_a_lower_one_stops_nothing() -> None:
    world = World(spec(resourceLimits={"maxNumberOfTrainingJobs": 2, "maxParallelTrainingJobs": 1}))
    world.reconcile()
    assert sorted(world.trials) == ["tune-001"]
    world.spec = spec(resourceLimits={"maxNumberOfTrainingJobs": 6, "maxParallelTrainingJobs": 3})
    assert len(world.reconcile().create) == 2
    world.spec = spec(resourceLimits={"maxNumberOfTrainingJobs": 6, "maxParallelTrainingJobs": 1})
    plan = world.reconcile()
    assert not plan.create and not plan.stop and running(world) == 3
    for name in ("tune-001", "tune-002", "tune-003"):
        world.finish(name)
    assert len(world.reconcile().create) == 1


def warm(kind: str = "IdenticalDataAndAlgorithm", **config: Any) -> Any:
    child = spec(strategy="Bayesian", **config)
    return child.model_copy(
        update={
            "warm_start_config": WarmStartConfig.model_validate(
                {
                    "parentHyperParameterTuningJobs": [{"hyperParameterTuningJobName": "old"}],
                    "warmStartType": kind,
                }
            )
        }
    )


def parent_trials(count: int) -> list[TrialView]:
    return [
        TrialView(
            name=f"old-{i + 1:03d}",
            index=i,
            training_job_status="Completed",
            hyperparameters={"num_round": "10", "eta": str(0.1 + i * 0.03)},
            final_metrics={"validation:auc": 0.7 + i / 100},
        )
        for i in range(count)
    ]


def test_a_warm_start_waits_for_its_parent_then_seeds_the_search_and_reports_the_overall_best() -> (
    None
):
    world = World(warm())
    world.parents = {"old": Parent("old", spec(), "InProgress", parent_trials(12))}
    plan = world.reconcile()
    assert not plan.create and world.status.hyper_parameter_tuning_job_status is None
    ready = {c.type: c for c in world.status.conditions or ()}["Ready"]
    assert ready.reason == "WaitingForParents" and "old" in (ready.message or "")
    world.parents = {"old": Parent("old", spec(), "Completed", parent_trials(12))}
    seeded = world.reconcile().create
    assert len(seeded) == 2
    cold = World(spec(strategy="Bayesian")).reconcile().create
    # The parents' trials change Bayesian's first suggestions (TPE starts from history).
    assert [b["spec"]["hyperParameters"] for b in seeded] != [
        b["spec"]["hyperParameters"] for b in cold
    ]
    world.finish("tune-001", auc=0.72)
    world.reconcile()
    best, overall = world.status.best_training_job, world.status.overall_best_training_job
    assert best is not None and overall is not None
    assert best.training_job_name == "tune-001"
    assert overall.training_job_name == "old-012"  # 0.81


def test_a_warm_start_refuses_a_missing_parent_or_one_its_type_forbids() -> None:
    world = World(warm())
    world.reconcile()
    parents = "spec.warmStartConfig.parentHyperParameterTuningJobs[0]"
    assert world.status.failure_reason == (
        f"ClientError: {parents}: TuningJob 'old' not found in namespace ml"
    )
    other = spec()
    other.training_job_definition.static_hyper_parameters = {"num_round": "50"}
    world = World(warm())
    world.parents = {"old": Parent("old", other, "Completed", parent_trials(2))}
    world.reconcile()
    assert "has other static hyperparameters" in (world.status.failure_reason or "")
    world = World(warm("TransferLearning"))
    world.parents = {"old": Parent("old", other, "Completed", parent_trials(2))}
    assert len(world.reconcile().create) == 2


def two_definitions(**config: Any) -> Any:
    """Definition "a" tunes eta (objective validation:auc), "b" the booster (train:auc)."""
    single = spec(**config).model_dump(by_alias=True, exclude_none=True, mode="json")
    ranges = single["hyperParameterTuningJobConfig"].pop("parameterRanges")
    template = single.pop("trainingJobDefinition")
    single["trainingJobDefinitions"] = [
        {**template, "definitionName": "a", "hyperParameterRanges": ranges},
        {
            **template,
            "definitionName": "b",
            "hyperParameterRanges": {
                "categoricalParameterRanges": [{"name": "booster", "values": ["gbtree", "dart"]}]
            },
            "tuningObjective": {"type": "Maximize", "metricName": "train:auc"},
        },
    ]
    return TuningJob.model_validate(
        {"kind": "TuningJob", "metadata": {"name": "tune"}, "spec": single}
    ).spec


def test_several_definitions_share_one_search_each_with_its_ranges_and_objective() -> None:
    for strategy in ("Random", "Bayesian"):
        world = World(
            two_definitions(
                strategy=strategy,
                resourceLimits={"maxNumberOfTrainingJobs": 8, "maxParallelTrainingJobs": 8},
            )
        )
        world.reconcile()
        assert len(world.trials) == 8
        by_definition: dict[str | None, list[TrialView]] = {}
        for trial in world.trials.values():
            by_definition.setdefault(trial.definition, []).append(trial)
        assert set(by_definition) == {"a", "b"}, strategy
        for trial in by_definition["a"]:
            assert 0.1 <= float(trial.hyperparameters["eta"]) <= 0.5
            assert "booster" not in trial.hyperparameters
        for trial in by_definition["b"]:
            assert trial.hyperparameters["booster"] in ("gbtree", "dart")
            assert "eta" not in trial.hyperparameters
        # Each trial's objective is its own definition's metric.
        (b_trial, *_) = by_definition["b"]
        for trial in world.trials.values():
            metric = "train:auc" if trial.definition == "b" else "validation:auc"
            value = 0.95 if trial.name == b_trial.name else 0.7
            world.update(trial.name, training_job_status="Completed", final_metrics={metric: value})
        world.reconcile()
        best = world.status.best_training_job
        assert best is not None and best.training_job_name == b_trial.name
        assert best.training_job_definition_name == "b"
        assert best.tuned_hyper_parameters == {"booster": b_trial.hyperparameters["booster"]}
        objective = best.final_hyper_parameter_tuning_job_objective_metric
        assert objective is not None and objective.metric_name == "train:auc"


def test_grid_over_several_definitions_tries_each_definitions_combinations() -> None:
    body = two_definitions().model_dump(by_alias=True, exclude_none=True, mode="json")
    body["hyperParameterTuningJobConfig"]["strategy"] = "Grid"
    body["hyperParameterTuningJobConfig"]["resourceLimits"] = {"maxParallelTrainingJobs": 10}
    body["trainingJobDefinitions"][0]["hyperParameterRanges"] = {
        "categoricalParameterRanges": [{"name": "eta", "values": ["0.1", "0.2", "0.3"]}]
    }
    world = World(
        TuningJob.model_validate(
            {"kind": "TuningJob", "metadata": {"name": "tune"}, "spec": body}
        ).spec
    )
    world.reconcile()
    tried = sorted(
        (t.definition, t.hyperparameters.get("eta") or t.hyperparameters["booster"])
        for t in world.trials.values()
    )
    assert tried == [("a", "0.1"), ("a", "0.2"), ("a", "0.3"), ("b", "dart"), ("b", "gbtree")]
