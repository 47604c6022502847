"""``HyperparameterTuner``: a TuningJob from an estimator and ranges, as SageMaker's."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kubemaker.sdk import _args, _manifests
from kubemaker.sdk.analytics import HyperparameterTuningJobAnalytics
from kubemaker.sdk.estimator import (
    EstimatorBase,
    check_object,
    raise_for_status,
    tag_labels,
)
from kubemaker.sdk.parameter import (
    CategoricalParameter,
    ContinuousParameter,
    IntegerParameter,
    ParameterRange,
)
from kubemaker.sdk.utils import name_from_base

if TYPE_CHECKING:
    from kubemaker.sdk._cluster import ClusterClient
    from kubemaker.sdk._localrun import LocalRunner
    from kubemaker.sdk.deserializers import BaseDeserializer
    from kubemaker.sdk.predictor import Predictor
    from kubemaker.sdk.serializers import BaseSerializer
    from kubemaker.sdk.session import Session

__all__ = [
    "CategoricalParameter",
    "ContinuousParameter",
    "HyperbandStrategyConfig",
    "HyperparameterTuner",
    "IntegerParameter",
    "StrategyConfig",
    "TuningJobCompletionCriteriaConfig",
    "WarmStartConfig",
    "WarmStartTypes",
]

JSON = dict[str, Any]
# A TuningJob's name leaves room for its trials' <name>-NNN (SageMaker's limit too).
MAX_TUNING_NAME = 32


class WarmStartTypes(enum.Enum):
    IDENTICAL_DATA_AND_ALGORITHM = "IdenticalDataAndAlgorithm"
    TRANSFER_LEARNING = "TransferLearning"


class WarmStartConfig:
    def __init__(
        self,
        warm_start_type: WarmStartTypes | str = WarmStartTypes.IDENTICAL_DATA_AND_ALGORITHM,
        parents: Iterable[str] | None = None,
    ) -> None:
        self.type = WarmStartTypes(warm_start_type)
        self.parents = sorted(set(parents or []))
        if not self.parents:
            raise ValueError("WarmStartConfig needs at least one parent tuning job")

    def to_input_req(self) -> JSON:
        return {
            "parentHyperParameterTuningJobs": [
                {"hyperParameterTuningJobName": p} for p in self.parents
            ],
            "warmStartType": self.type.value,
        }


class HyperbandStrategyConfig:
    def __init__(self, number_of_resources: int | None = None, **kwargs: Any) -> None:
        self.min_resource = kwargs.pop("min_resource", None)
        self.max_resource = kwargs.pop("max_resource", number_of_resources)
        _args.merge("HyperbandStrategyConfig", {}, kwargs)


class StrategyConfig:
    def __init__(self, hyperband_strategy_config: HyperbandStrategyConfig) -> None:
        self.hyperband_strategy_config = hyperband_strategy_config

    def to_input_req(self) -> JSON:
        config = self.hyperband_strategy_config
        hyperband: JSON = {}
        if config.min_resource is not None:
            hyperband["minResource"] = int(config.min_resource)
        if config.max_resource is not None:
            hyperband["maxResource"] = int(config.max_resource)
        return {"hyperbandStrategyConfig": hyperband}


class TuningJobCompletionCriteriaConfig:
    def __init__(
        self,
        max_number_of_training_jobs_not_improving: int | None = None,
        complete_on_convergence: bool | None = None,
        target_objective_metric_value: float | None = None,
    ) -> None:
        self.max_not_improving = max_number_of_training_jobs_not_improving
        self.complete_on_convergence = complete_on_convergence
        self.target = target_objective_metric_value

    def to_input_req(self) -> JSON:
        criteria: JSON = {}
        if self.target is not None:
            criteria["targetObjectiveMetricValue"] = float(self.target)
        if self.max_not_improving is not None:
            criteria["bestObjectiveNotImproving"] = {
                "maxNumberOfTrainingJobsNotImproving": int(self.max_not_improving)
            }
        if self.complete_on_convergence is not None:
            state = "Enabled" if self.complete_on_convergence else "Disabled"
            criteria["convergenceDetected"] = {"completeOnConvergence": state}
        return criteria


class HyperparameterTuner:
    """Search ``hyperparameter_ranges`` of ``estimator`` for the best
    ``objective_metric_name``, ``max_parallel_jobs`` trials at a time."""

    def __init__(
        self,
        estimator: EstimatorBase,
        objective_metric_name: str,
        hyperparameter_ranges: Mapping[str, ParameterRange],
        metric_definitions: Sequence[Mapping[str, str]] | None = None,
        strategy: str = "Bayesian",
        objective_type: str = "Maximize",
        max_jobs: int | None = None,
        max_parallel_jobs: int = 1,
        max_runtime_in_seconds: int | None = None,
        tags: Sequence[Mapping[str, str]] | None = None,
        base_tuning_job_name: str | None = None,
        warm_start_config: WarmStartConfig | None = None,
        strategy_config: StrategyConfig | None = None,
        completion_criteria_config: TuningJobCompletionCriteriaConfig | None = None,
        early_stopping_type: str = "Off",
        random_seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        _args.merge("HyperparameterTuner", {}, kwargs)
        if not hyperparameter_ranges:
            raise ValueError("HyperparameterTuner: hyperparameter_ranges is empty")
        self.estimator = estimator
        self.objective_metric_name = objective_metric_name
        self._hyperparameter_ranges = dict(hyperparameter_ranges)
        self.metric_definitions = list(metric_definitions or [])
        self.strategy = strategy
        self.objective_type = objective_type
        # SageMaker's default: one trial unless told (Grid counts its own).
        self.max_jobs = max_jobs if max_jobs is not None or strategy == "Grid" else 1
        self.max_parallel_jobs = max_parallel_jobs
        self.max_runtime_in_seconds = max_runtime_in_seconds
        self.tags = list(tags or [])
        self.base_tuning_job_name = base_tuning_job_name
        self.warm_start_config = warm_start_config
        self.strategy_config = strategy_config
        self.completion_criteria_config = completion_criteria_config
        self.early_stopping_type = early_stopping_type
        self.random_seed = random_seed
        self.latest_tuning_job: str | None = None

    @property
    def sagemaker_session(self) -> Session:
        return self.estimator.sagemaker_session

    def hyperparameter_ranges(self) -> JSON:
        ranges: JSON = {}
        for name, value in self._hyperparameter_ranges.items():
            if not isinstance(value, ParameterRange):
                raise TypeError(
                    f"hyperparameter_ranges[{name!r}] must be an IntegerParameter, "
                    f"ContinuousParameter or CategoricalParameter, not {type(value).__name__}"
                )
            ranges.setdefault(value.field, []).append(value.as_range(name))
        return ranges

    def tuning_spec(self, job_name: str, inputs: Any = None) -> JSON:
        """The TuningJob spec: the estimator's TrainingJob as the trials' definition."""
        definition = self.estimator.training_spec(job_name, inputs)
        hyperparameters = definition.pop("hyperParameters", {})
        static = {k: v for k, v in hyperparameters.items() if k not in self._hyperparameter_ranges}
        if static:
            definition["staticHyperParameters"] = static
        if self.metric_definitions:
            definition["algorithmSpecification"]["metricDefinitions"] = [
                {"name": d["Name"], "regex": d["Regex"]} for d in self.metric_definitions
            ]
        limits: JSON = {"maxParallelTrainingJobs": self.max_parallel_jobs}
        if self.max_jobs is not None:
            limits["maxNumberOfTrainingJobs"] = self.max_jobs
        if self.max_runtime_in_seconds is not None:
            limits["maxRuntimeInSeconds"] = self.max_runtime_in_seconds
        config: JSON = {
            "strategy": self.strategy,
            "hyperParameterTuningJobObjective": {
                "type": self.objective_type,
                "metricName": self.objective_metric_name,
            },
            "resourceLimits": limits,
            "parameterRanges": self.hyperparameter_ranges(),
            "trainingJobEarlyStoppingType": self.early_stopping_type,
        }
        if self.strategy_config is not None:
            config["strategyConfig"] = self.strategy_config.to_input_req()
        if self.completion_criteria_config is not None:
            config["tuningJobCompletionCriteria"] = self.completion_criteria_config.to_input_req()
        if self.random_seed is not None:
            config["randomSeed"] = self.random_seed
        spec: JSON = {"hyperParameterTuningJobConfig": config, "trainingJobDefinition": definition}
        if self.warm_start_config is not None:
            spec["warmStartConfig"] = self.warm_start_config.to_input_req()
        return spec

    def fit(
        self,
        inputs: Any = None,
        job_name: str | None = None,
        include_cls_metadata: bool = False,
        estimator_kwargs: Mapping[str, Any] | None = None,
        wait: bool = True,
        **kwargs: Any,
    ) -> None:
        """Create the TuningJob; with ``wait``, follow it to its end."""
        _args.merge("HyperparameterTuner.fit", {}, kwargs)
        if estimator_kwargs:
            raise _args.UnsupportedArgument(
                "HyperparameterTuner.fit: estimator_kwargs (several estimators) is not "
                "supported by the SDK; write a TuningJob with trainingJobDefinitions"
            )
        del include_cls_metadata  # SageMaker's own bookkeeping hyperparameters
        base = self.base_tuning_job_name or self.estimator.default_base_name()
        name = job_name or name_from_base(base, max_length=MAX_TUNING_NAME, short=True)
        manifest = _manifests.resource(
            "TuningJob", name, self.tuning_spec(name, inputs), tag_labels(self.tags)
        )
        check_object(manifest)
        self._runner().create(manifest)
        self.latest_tuning_job = name
        if wait:
            self.wait()

    def _runner(self) -> ClusterClient | LocalRunner:
        return self.sagemaker_session.runner_for(self.estimator.instance_type)

    def _name(self) -> str:
        if self.latest_tuning_job is None:
            raise ValueError("no tuning job yet: call fit() first, or attach() to one")
        return self.latest_tuning_job

    def wait(self) -> JSON:
        obj = self._runner().wait_for("TuningJob", self._name(), logs=True)
        raise_for_status(
            "TuningJob", obj, "hyperParameterTuningJobStatus", ("Completed", "Stopped")
        )
        return obj

    def describe(self) -> JSON:
        return self._runner().get("TuningJob", self._name())

    def stop_tuning_job(self) -> None:
        self._runner().stop("TuningJob", self._name())

    def best_training_job(self) -> str:
        best = self.describe().get("status", {}).get("bestTrainingJob", {})
        if not best.get("trainingJobName"):
            raise ValueError(f"TuningJob {self._name()} has no best training job yet")
        return str(best["trainingJobName"])

    def best_estimator(self) -> EstimatorBase:
        """An estimator attached to the best trial (to deploy it, or read its model)."""
        obj = self._runner().get("TrainingJob", self.best_training_job())
        best = type(self.estimator).from_job(obj, self.sagemaker_session)
        # The TuningJob names its best trial's model wherever the trial lives (local
        # mode keeps trials inside the tuning job's directory).
        best.model_source = {"tuningJobRef": {"name": self._name()}}
        return best

    def deploy(
        self,
        initial_instance_count: int,
        instance_type: str,
        serializer: BaseSerializer | None = None,
        deserializer: BaseDeserializer | None = None,
        endpoint_name: str | None = None,
        wait: bool = True,
        **kwargs: Any,
    ) -> Predictor:
        """Serve the best trial's model from an Endpoint."""
        return self.best_estimator().deploy(
            initial_instance_count,
            instance_type,
            serializer=serializer,
            deserializer=deserializer,
            endpoint_name=endpoint_name,
            wait=wait,
            **kwargs,
        )

    def analytics(self) -> HyperparameterTuningJobAnalytics:
        """The trials as a table: ``tuner.analytics().dataframe()``."""
        return HyperparameterTuningJobAnalytics(
            self._name(), self.sagemaker_session, runner=self._runner()
        )

    @classmethod
    def attach(
        cls,
        tuning_job_name: str,
        sagemaker_session: Any = None,
        estimator_cls: type[EstimatorBase] | None = None,
    ) -> HyperparameterTuner:
        """A tuner for an existing TuningJob, its estimator rebuilt from the definition."""
        from kubemaker.sdk.estimator import Estimator, framework_class
        from kubemaker.sdk.session import Session

        session = sagemaker_session or Session()
        runner = session.local() if session.local_mode else session.cluster()
        obj = runner.get("TuningJob", tuning_job_name)
        definition = dict(obj["spec"]["trainingJobDefinition"])
        definition["hyperParameters"] = definition.pop("staticHyperParameters", {})
        algorithm = definition["algorithmSpecification"]
        if estimator_cls is None:
            estimator_cls = (
                framework_class(algorithm["framework"]) if algorithm.get("framework") else Estimator
            )
        estimator = estimator_cls.from_job({"spec": definition}, session)
        config = obj["spec"]["hyperParameterTuningJobConfig"]
        ranges: dict[str, ParameterRange] = {}
        for item in config["parameterRanges"].get("integerParameterRanges", []):
            ranges[item["name"]] = IntegerParameter(
                item["minValue"], item["maxValue"], item.get("scalingType", "Auto")
            )
        for item in config["parameterRanges"].get("continuousParameterRanges", []):
            ranges[item["name"]] = ContinuousParameter(
                item["minValue"], item["maxValue"], item.get("scalingType", "Auto")
            )
        for item in config["parameterRanges"].get("categoricalParameterRanges", []):
            ranges[item["name"]] = CategoricalParameter(item["values"])
        limits = config.get("resourceLimits", {})
        tuner = cls(
            estimator,
            config["hyperParameterTuningJobObjective"]["metricName"],
            ranges,
            strategy=config.get("strategy", "Bayesian"),
            objective_type=config["hyperParameterTuningJobObjective"].get("type", "Maximize"),
            max_jobs=limits.get("maxNumberOfTrainingJobs"),
            max_parallel_jobs=limits.get("maxParallelTrainingJobs", 1),
        )
        tuner.latest_tuning_job = tuning_job_name
        return tuner
