"""Prometheus metrics of the router: what the operator's autoscaler and rollback alarms read.

The names mirror SageMaker's per-variant endpoint metrics (Invocations,
InvocationsPerInstance, Invocation4XXErrors / 5XXErrors, ModelLatency,
OverheadLatency), labelled by endpoint, variant and fleet (blue/green: the alarms
compare the new fleet with the old one).

With several workers, ``PROMETHEUS_MULTIPROC_DIR`` names a directory every worker
writes to (the runner in :mod:`.server` sets it); ``/metrics`` on any worker sums them.
The held-requests gauge is "livesum": a dead worker's held requests are not held.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client import values as prometheus_values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kubemaker_runtime.serving.metrics import LATENCY_BUCKETS, MULTIPROC_DIR_ENV

FLEET_LABELS = ["endpoint", "variant", "fleet"]


class _ConfigInfo(Collector):
    """``kubemaker_router_config_info{endpoint,version} 1`` for the table applied now.

    A collector, not a Gauge: a Gauge keeps every version it was ever set for (in
    multiprocess mode even after remove()), and the operator must see only the current.
    """

    def __init__(self, current: Callable[[], tuple[str, str] | None]) -> None:
        self._current = current

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "kubemaker_router_config_info",
            "The routing table this router applies (value always 1)",
            labels=["endpoint", "version"],
        )
        current = self._current()
        if current is not None:
            family.add_metric(list(current), 1)
        yield family


class RouterMetrics:
    def __init__(self, current_config: Callable[[], tuple[str, str] | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = bool(os.environ.get(MULTIPROC_DIR_ENV))
        if self.multiprocess:
            # See serving/metrics.py: pick the value store again in this worker.
            prometheus_values.ValueClass = prometheus_values.get_value_class()  # type: ignore[no-untyped-call]
        self._config_info = _ConfigInfo(current_config)
        self.registry.register(self._config_info)
        r = self.registry
        self._invocations = Counter(
            "kubemaker_router_invocations", "Requests routed (errors included)", FLEET_LABELS,
            registry=r,
        )  # fmt: skip
        self._errors_4xx = Counter(
            "kubemaker_router_invocation_4xx_errors", "Requests answered 4xx", FLEET_LABELS,
            registry=r,
        )  # fmt: skip
        self._errors_5xx = Counter(
            "kubemaker_router_invocation_5xx_errors",
            "Requests answered 5xx (the upstream's or the router's own 502/503/504)",
            FLEET_LABELS, registry=r,
        )  # fmt: skip
        self._model_latency = Histogram(
            "kubemaker_router_model_latency_seconds", "Upstream round trip", FLEET_LABELS,
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self._overhead_latency = Histogram(
            "kubemaker_router_overhead_latency_seconds",
            "Time in the router minus the upstream round trip (holding included)",
            FLEET_LABELS, buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self._per_instance = Counter(
            "kubemaker_router_invocations_per_instance",
            "Requests divided by the variant's ready instances (the autoscaler's target)",
            ["endpoint", "variant"], registry=r,
        )  # fmt: skip
        self.held = Gauge(
            "kubemaker_router_held_requests",
            "Requests held now, waiting for a variant to get a ready instance",
            ["endpoint", "variant"], multiprocess_mode="livesum", registry=r,
        )  # fmt: skip
        self.held_total = Counter(
            "kubemaker_router_held",
            "Requests that had to wait for a variant's instance (then answered or timed out)",
            ["endpoint", "variant"], registry=r,
        )  # fmt: skip
        self.hold_timeouts = Counter(
            "kubemaker_router_hold_timeouts", "Held requests answered 503 at the hold timeout",
            ["endpoint", "variant"], registry=r,
        )  # fmt: skip
        self.shadow = Counter(
            "kubemaker_router_shadow_requests", "Copies for the shadow variant, by outcome",
            ["endpoint", "variant", "outcome"], registry=r,
        )  # fmt: skip
        self.capture_records = Counter(
            "kubemaker_router_capture_records", "Capture records written",
            ["endpoint", "variant"], registry=r,
        )  # fmt: skip
        self.capture_failures = Counter(
            "kubemaker_router_capture_failures", "Capture records lost to a failed write",
            ["endpoint"], registry=r,
        )  # fmt: skip
        self.capture_dropped = Counter(
            "kubemaker_router_capture_dropped", "Capture records dropped: the buffer was full",
            ["endpoint"], registry=r,
        )  # fmt: skip
        self.upstream_retries = Counter(
            "kubemaker_router_upstream_retries",
            "Requests sent again on a new connection: a fleet closed the pooled keep-alive "
            "connection as they went out, unread",
            ["fleet"], registry=r,
        )  # fmt: skip
        self.rejected = Counter(
            "kubemaker_router_rejected",
            "Requests rejected before a variant was chosen (bad header, no weight, no table)",
            ["endpoint", "code"], registry=r,
        )  # fmt: skip
        # Label lookups cost more than the observations: bind the children once.
        self._children: dict[tuple[str, str, str], tuple[object, ...]] = {}

    def observe(
        self,
        endpoint: str,
        variant: str,
        fleet: str,
        status: int,
        model_seconds: float,
        total_seconds: float,
        instances: int,
    ) -> None:
        key = (endpoint, variant, fleet)
        children = self._children.get(key)
        if children is None:
            children = (
                self._invocations.labels(*key),
                self._errors_4xx.labels(*key),
                self._errors_5xx.labels(*key),
                self._model_latency.labels(*key),
                self._overhead_latency.labels(*key),
                self._per_instance.labels(endpoint, variant),
            )
            if len(self._children) > 1000:  # fleets come and go with updates
                self._children.clear()
            self._children[key] = children
        invocations, errors_4xx, errors_5xx, model, overhead, per_instance = children
        invocations.inc()  # type: ignore[attr-defined]
        if 400 <= status < 500:
            errors_4xx.inc()  # type: ignore[attr-defined]
        elif status >= 500:
            errors_5xx.inc()  # type: ignore[attr-defined]
        if model_seconds > 0:
            model.observe(model_seconds)  # type: ignore[attr-defined]
        overhead.observe(max(0.0, total_seconds - model_seconds))  # type: ignore[attr-defined]
        if instances > 0:
            per_instance.inc(1.0 / instances)  # type: ignore[attr-defined]

    def render(self) -> tuple[bytes, str]:
        if self.multiprocess:
            registry = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            registry.register(self._config_info)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
