"""``HyperparameterTuningJobAnalytics``: a tuning job's trials as a table."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubemaker.sdk._cluster import ClusterClient
    from kubemaker.sdk._localrun import LocalRunner
    from kubemaker.sdk.session import Session

JSON = dict[str, Any]
RANGE_FIELDS = ("integerParameterRanges", "continuousParameterRanges", "categoricalParameterRanges")


class HyperparameterTuningJobAnalytics:
    """SageMaker's columns: each tuned hyperparameter, ``TrainingJobName``,
    ``TrainingJobStatus``, ``FinalObjectiveValue``, ``TrainingStartTime``,
    ``TrainingEndTime``, ``TrainingElapsedTimeSeconds``."""

    def __init__(
        self,
        hyperparameter_tuning_job_name: str,
        sagemaker_session: Session | None = None,
        runner: ClusterClient | LocalRunner | None = None,
    ) -> None:
        from kubemaker.sdk.session import Session

        self.name = hyperparameter_tuning_job_name
        session = sagemaker_session or Session()
        if runner is None:
            runner = session.local() if session.local_mode else session.cluster()
        self._runner = runner

    def description(self) -> JSON:
        return self._runner.get("TuningJob", self.name)

    def training_job_summaries(self) -> list[JSON]:
        return self._runner.trials(self.name)

    def rows(self) -> list[JSON]:
        """One dict per trial, in trial order (what ``dataframe()`` tabulates)."""
        spec = self.description()["spec"]
        config = spec["hyperParameterTuningJobConfig"]
        objective = config["hyperParameterTuningJobObjective"]["metricName"]
        tuned = [r["name"] for f in RANGE_FIELDS for r in config["parameterRanges"].get(f, [])]
        rows = []
        for trial in sorted(self.training_job_summaries(), key=lambda t: t["metadata"]["name"]):
            hyperparameters = trial["spec"].get("hyperParameters", {})
            status = trial.get("status", {})
            row: JSON = {name: _number(hyperparameters.get(name)) for name in tuned}
            row["TrainingJobName"] = trial["metadata"]["name"]
            row["TrainingJobStatus"] = status.get("trainingJobStatus")
            row["FinalObjectiveValue"] = next(
                (
                    m["value"]
                    for m in status.get("finalMetricDataList", [])
                    if m.get("metricName") == objective
                ),
                None,
            )
            start, end = status.get("trainingStartTime"), status.get("trainingEndTime")
            row["TrainingStartTime"] = start
            row["TrainingEndTime"] = end
            row["TrainingElapsedTimeSeconds"] = _seconds(start, end)
            rows.append(row)
        return rows

    def dataframe(self, force_refresh: bool = False) -> Any:
        """The rows as a pandas DataFrame (pandas must be installed)."""
        del force_refresh  # always read afresh: the cluster is the source of truth
        try:
            import pandas
        except ImportError:
            raise ImportError(
                "dataframe() needs pandas (pip install pandas); rows() gives the same as dicts"
            ) from None
        return pandas.DataFrame(self.rows())


def _number(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    begun = datetime.fromisoformat(start.replace("Z", "+00:00"))
    ended = datetime.fromisoformat(end.replace("Z", "+00:00"))
    return (ended - begun).total_seconds()
