"""Prometheus metrics of the model server: what an Endpoint's autoscaling and alerts read.

The names mirror SageMaker's endpoint metrics (Invocations, ModelLatency,
OverheadLatency, Invocation4XXErrors / 5XXErrors) in Prometheus' conventions.

With several worker processes, ``PROMETHEUS_MULTIPROC_DIR`` must name an empty
directory before any worker starts (the runner in :mod:`.server` does this); every
worker then writes its samples there and ``/metrics`` on any worker adds them all up.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client import values as prometheus_values

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# From 100 us (a one-row tree-model prediction) to 60 s (SageMaker's invocation timeout).
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


class ServerMetrics:
    """The server's metrics, registered in a registry of their own."""

    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = bool(os.environ.get(MULTIPROC_DIR_ENV))
        if self.multiprocess:
            # prometheus-client picks its value store when first imported; the runner
            # imported it before it set the directory, so pick again in this worker.
            prometheus_values.ValueClass = prometheus_values.get_value_class()  # type: ignore[no-untyped-call]
        invocations = Counter(
            "kubemaker_invocations",
            "Prediction requests received (/invocations and v2 infer)",
            ["model"],
            registry=self.registry,
        )
        self._errors = Counter(
            "kubemaker_invocation_errors",
            "Prediction requests answered with an error, by HTTP status code",
            ["model", "code"],
            registry=self.registry,
        )
        model_latency = Histogram(
            "kubemaker_model_latency_seconds",
            "Time spent in the model's predict()",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        overhead_latency = Histogram(
            "kubemaker_overhead_latency_seconds",
            "Time spent in the server around predict(): reading, decoding, encoding",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_name = model_name
        # Label lookups cost more than the observation itself: bind the children once.
        self._invocations = invocations.labels(model_name)
        self._model_latency = model_latency.labels(model_name)
        self._overhead_latency = overhead_latency.labels(model_name)

    def observe(self, model_seconds: float, total_seconds: float) -> None:
        self._invocations.inc()
        self._model_latency.observe(model_seconds)
        self._overhead_latency.observe(max(0.0, total_seconds - model_seconds))

    def observe_error(self, status: int) -> None:
        self._invocations.inc()
        self._errors.labels(self.model_name, str(status)).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text (of all workers, in multiprocess mode) and its type."""
        if self.multiprocess:
            registry = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
