"""The operator's Prometheus metrics: training metrics as gauges, bounded, and removed."""

from __future__ import annotations

from prometheus_client import REGISTRY

from kubemaker.metrics import TrainingMetricSeries


def samples(trainingjob: str) -> dict[str, float]:
    return {
        sample.labels["metric"]: sample.value
        for family in REGISTRY.collect()
        if family.name == "kubemaker_training_metric"
        for sample in family.samples
        if sample.labels["trainingjob"] == trainingjob and sample.labels["namespace"] == "ml"
    }


def test_training_metrics_follow_the_job_and_leave_with_it() -> None:
    series = TrainingMetricSeries()
    key = ("ml", "gauged")
    series.set(key, "gauged", {"validation:auc": 0.8, "train:auc": 0.85})
    assert samples("gauged") == {"validation:auc": 0.8, "train:auc": 0.85}
    series.set(key, "gauged", {"validation:auc": 0.9, "epoch": 3.0})
    assert samples("gauged") == {"validation:auc": 0.9, "epoch": 3.0}
    series.forget(key)
    assert samples("gauged") == {}
    series.forget(key)  # twice is fine


def test_the_series_of_one_job_are_capped() -> None:
    series = TrainingMetricSeries(limit=3)
    series.set(("ml", "chatty"), "chatty", {f"m{i:02d}": float(i) for i in range(10)})
    assert samples("chatty") == {"m00": 0.0, "m01": 1.0, "m02": 2.0}
    series.set(("ml", "chatty"), "chatty", {})
    assert samples("chatty") == {}
