"""What the TuningJob planner reads of its trials: a small view of each child TrainingJob.

The controller keeps one :class:`TrialView` per TrainingJob labelled
``kubemaker.io/tuning-job`` in a kopf index (local mode builds them from its runs); the
planner turns them into search trials.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubemaker.builders import tuning as tb

#: Set on a trial the search stopped early (the median rule or Hyperband): why.
ANNOTATION_STOPPED_EARLY = "kubemaker.io/stopped-early"

Series = Sequence[tuple[int, float]]


@dataclass(frozen=True)
class TrialView:
    name: str
    index: int
    training_job_status: str | None  # the child's trainingJobStatus (None: not started)
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    final_metrics: Mapping[str, float] = field(default_factory=dict)
    # Intermediate values by metric (the child's status.metricSeries), (step, value).
    series: Mapping[str, Series] = field(default_factory=dict)
    stopped_early: str | None = None  # why the search stopped it early
    definition: str | None = None  # its kubemaker.io/definition (trainingJobDefinitions)
    failure_reason: str | None = None
    stop_requested: bool = False
    creation_time: str | None = None
    training_start_time: str | None = None
    training_end_time: str | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> TrialView | None:
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        owner = labels.get(tb.LABEL_TUNING_JOB)
        index = tb.trial_index(str(owner), str(meta.get("name"))) if owner else None
        if index is None:
            return None
        spec = body.get("spec") or {}
        status = body.get("status") or {}
        metrics: dict[str, float] = {}
        for item in status.get("finalMetricDataList") or ():
            try:
                metrics[str(item["metricName"])] = float(item["value"])
            except (KeyError, TypeError, ValueError):
                continue
        series: dict[str, Series] = {}
        for item in status.get("metricSeries") or ():
            try:
                steps, values = item["steps"], item["values"]
                series[str(item["metricName"])] = tuple(
                    (int(s), float(v)) for s, v in zip(steps, values, strict=False)
                )
            except (KeyError, TypeError, ValueError):
                continue
        return cls(
            name=str(meta.get("name")),
            index=index,
            training_job_status=status.get("trainingJobStatus"),
            hyperparameters={
                str(k): str(v) for k, v in (spec.get("hyperParameters") or {}).items()
            },
            final_metrics=metrics,
            series=series,
            stopped_early=(meta.get("annotations") or {}).get(ANNOTATION_STOPPED_EARLY),
            definition=labels.get(tb.LABEL_DEFINITION),
            failure_reason=status.get("failureReason"),
            stop_requested=bool(spec.get("stop")),
            creation_time=meta.get("creationTimestamp"),
            training_start_time=status.get("trainingStartTime"),
            training_end_time=status.get("trainingEndTime"),
        )

    @property
    def running(self) -> bool:
        return self.training_job_status in (None, "InProgress", "Stopping")
