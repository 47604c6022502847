"""Prometheus metrics of the operator, served over HTTP on a port of their own.

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` histograms);
``kind`` is the custom resource kind (``TrainingJob``, ...). The process collector of
the default registry adds ``process_resident_memory_bytes`` and friends.
"""

from __future__ import annotations

import logging
from collections import Counter as _Tally
from collections.abc import Mapping

from prometheus_client import Counter, Gauge, Histogram, start_http_server

logger = logging.getLogger(__name__)

RECONCILES = Counter(
    "kubemaker_reconciles_total",
    "Reconciles run, by kind.",
    ["kind"],
)
RECONCILE_ERRORS = Counter(
    "kubemaker_reconcile_errors_total",
    "Reconciles that ended in an error, by kind and class of error "
    "(user: the spec is wrong; platform: the cluster failed, retried; internal: a bug).",
    ["kind", "error"],
)
RECONCILE_LATENCY = Histogram(
    "kubemaker_reconcile_duration_seconds",
    "Time one reconcile takes, API calls included, by kind.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
QUEUE_DEPTH = Gauge(
    "kubemaker_workqueue_depth",
    "Objects waiting to be reconciled, by kind.",
    ["kind"],
)
JOBS = Gauge(
    "kubemaker_jobs",
    "Objects the operator tracks, by kind and status "
    "(a TrainingJob's trainingJobStatus: InProgress, Completed, Failed, Stopping, Stopped).",
    ["kind", "status"],
)
API_REQUESTS = Counter(
    "kubemaker_api_requests_total",
    "Requests the controllers sent to the Kubernetes API, by verb and HTTP code.",
    ["verb", "code"],
)


TRAINING_METRIC = Gauge(
    "kubemaker_training_metric",
    "Last value of a TrainingJob's training metric: found in the algorithm's log by the "
    "job's metricDefinitions, or reported by the algorithm (metrics.json) at the end.",
    ["namespace", "trainingjob", "metric"],
)
# Series per TrainingJob: SageMaker's limit on metricDefinitions. Metric names come from
# users (definitions, metrics.json), so their number is capped; the series of a job
# leave with it.
MAX_METRICS_PER_JOB = 40


class TrainingMetricSeries:
    """Keeps ``kubemaker_training_metric`` equal to the metrics of the tracked jobs."""

    def __init__(self, limit: int = MAX_METRICS_PER_JOB) -> None:
        self.limit = limit
        self._exported: dict[tuple[str, str], tuple[str, dict[str, float]]] = {}

    def set(self, key: tuple[str, str], name: str, values: Mapping[str, float]) -> None:
        """Export ``values`` (at most ``limit``, by name) of the TrainingJob ``name``."""
        kept = {metric: values[metric] for metric in sorted(values)[: self.limit]}
        old = self._exported.get(key, (name, {}))[1]
        if old == kept:
            return
        for metric in old.keys() - kept.keys():
            TRAINING_METRIC.remove(key[0], name, metric)
        for metric, value in kept.items():
            TRAINING_METRIC.labels(namespace=key[0], trainingjob=name, metric=metric).set(value)
        if kept:
            self._exported[key] = (name, kept)
        else:
            self._exported.pop(key, None)

    def forget(self, key: tuple[str, str]) -> None:
        name, old = self._exported.pop(key, ("", {}))
        for metric in old:
            TRAINING_METRIC.remove(key[0], name, metric)


VARIANT_INSTANCES = Gauge(
    "kubemaker_endpoint_variant_instances",
    "An Endpoint variant's instances: desired (spec or autoscaler) and current (ready).",
    ["namespace", "endpoint", "variant", "state"],
)
SCALING_DECISIONS = Counter(
    "kubemaker_endpoint_scaling_decisions_total",
    "The autoscaler's decisions that changed a variant's instance count, by direction.",
    ["namespace", "endpoint", "variant", "direction"],
)
UPDATE_STEPS = Counter(
    "kubemaker_endpoint_update_steps_total",
    "Steps of Endpoint updates (UpdateStarted, TrafficShifted, UpdateCompleted, "
    "RollingBack, RolledBack).",
    ["namespace", "endpoint", "step"],
)
UPDATE_STEP_REASONS = frozenset(
    {"UpdateStarted", "TrafficShifted", "UpdateCompleted", "RollingBack", "RolledBack"}
)


class EndpointSeries:
    """Keeps the variant-instance gauges equal to the tracked Endpoints' variants."""

    def __init__(self) -> None:
        self._variants: dict[tuple[str, str], set[str]] = {}

    def set(self, key: tuple[str, str], name: str, counts: Mapping[str, tuple[int, int]]) -> None:
        """``counts``: variant -> (desired, current)."""
        for variant in self._variants.get(key, set()) - counts.keys():
            for state in ("desired", "current"):
                VARIANT_INSTANCES.remove(key[0], name, variant, state)
        for variant, (desired, current) in counts.items():
            VARIANT_INSTANCES.labels(key[0], name, variant, "desired").set(desired)
            VARIANT_INSTANCES.labels(key[0], name, variant, "current").set(current)
        self._variants[key] = set(counts)

    def count_event(self, key: tuple[str, str], name: str, reason: str) -> None:
        if reason in UPDATE_STEP_REASONS:
            UPDATE_STEPS.labels(key[0], name, reason).inc()

    def count_scaling(self, key: tuple[str, str], name: str, variant: str, direction: str) -> None:
        SCALING_DECISIONS.labels(key[0], name, variant, direction).inc()

    def forget(self, key: tuple[str, str], name: str) -> None:
        for variant in self._variants.pop(key, set()):
            for state in ("desired", "current"):
                VARIANT_INSTANCES.remove(key[0], name, variant, state)


TUNING_BEST_OBJECTIVE = Gauge(
    "kubemaker_tuning_best_objective",
    "A TuningJob's best final objective value so far (its bestTrainingJob's).",
    ["namespace", "tuningjob", "metric"],
)
TUNING_TRIALS = Gauge(
    "kubemaker_tuning_trials",
    "A TuningJob's trials by state (its trainingJobStatusCounters).",
    ["namespace", "tuningjob", "status"],
)

TRANSFORM_OBJECTS = Gauge(
    "kubemaker_batchtransform_objects",
    "A BatchTransform's input objects: total, completed, failed (its objectCounters).",
    ["namespace", "batchtransform", "state"],
)
TRANSFORM_RECORDS = Gauge(
    "kubemaker_batchtransform_records",
    "Records a BatchTransform has transformed so far; deriv() gives records per second.",
    ["namespace", "batchtransform"],
)


class StatusTally:
    """Keeps the ``kubemaker_jobs`` gauge equal to the statuses of the tracked objects."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._status: dict[tuple[str, str], str] = {}
        self._counts: _Tally[str] = _Tally()

    def set(self, key: tuple[str, str], status: str) -> None:
        old = self._status.get(key)
        if old == status:
            return
        if old is not None:
            self._counts[old] -= 1
            JOBS.labels(kind=self.kind, status=old).set(self._counts[old])
        self._status[key] = status
        self._counts[status] += 1
        JOBS.labels(kind=self.kind, status=status).set(self._counts[status])

    def forget(self, key: tuple[str, str]) -> None:
        old = self._status.pop(key, None)
        if old is not None:
            self._counts[old] -= 1
            JOBS.labels(kind=self.kind, status=old).set(self._counts[old])

    def counts(self) -> dict[str, int]:
        return {status: n for status, n in self._counts.items() if n}


def serve(port: int, address: str = "0.0.0.0") -> int:
    """Serve ``/metrics`` on ``address:port`` from one background thread; returns the port.

    Port 0 picks a free port (tests); the bound port is logged and returned.
    """
    server, _thread = start_http_server(port, addr=address)
    bound = int(server.server_port)
    logger.info("Serving Prometheus metrics on %s:%d/metrics", address, bound)
    return bound
