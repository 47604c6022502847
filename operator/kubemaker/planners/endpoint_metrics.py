"""An Endpoint's data-plane metrics: samples of its counters and the arithmetic on them.

The operator reads an Endpoint's traffic from one of two places (see
:mod:`kubemaker.reconcile.scrape`): the router's ``/metrics`` (or Prometheus, which
scrapes the routers), or, for an endpoint served without a router, each model
server's own ``/metrics``. Either way the result is a :class:`Snapshot`: cumulative
counters per *series*, a series being one source (a pod, ``ip:port``; a Prometheus
``instance``) times one (variant, fleet). Rates come from two snapshots
(:func:`rates`), alarms from a history of them (:func:`evaluate_alarm`).

Counters are kept per source so that a restart of one of several router replicas is
handled as Prometheus' ``rate()`` handles it: only that replica's series went back,
and only its current value counts as its increase. Summing the replicas first would
make one restart look like a drop of the whole endpoint's total.

Metric names (the router labels its samples with ``endpoint``, ``variant``, ``fleet``;
a model server labels them with ``model`` only, and the caller says which variant and
fleet the pod belongs to):

=================================  ===============================================
router                             model server
=================================  ===============================================
kubemaker_router_invocations_total kubemaker_invocations_total
..._invocation_4xx_errors_total    kubemaker_invocation_errors_total{code}
..._invocation_5xx_errors_total    (code ``4xx``/``400``... by its first digit)
..._model_latency_seconds          kubemaker_model_latency_seconds (histograms:
..._overhead_latency_seconds       kubemaker_overhead_latency_seconds  _sum, _count)
..._held_requests{variant}         (gauge: requests held for a variant at 0 instances)
..._config_info{version}           (info gauge: the routing table a replica applies)
=================================  ===============================================

Pure: no I/O, no clock (times are parameters).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from kubemaker.api.endpoint import Alarm

ROUTER_INVOCATIONS = "kubemaker_router_invocations_total"
ROUTER_4XX = "kubemaker_router_invocation_4xx_errors_total"
ROUTER_5XX = "kubemaker_router_invocation_5xx_errors_total"
ROUTER_MODEL_LATENCY = "kubemaker_router_model_latency_seconds"
ROUTER_OVERHEAD_LATENCY = "kubemaker_router_overhead_latency_seconds"
ROUTER_HELD = "kubemaker_router_held_requests"
ROUTER_CONFIG_INFO = "kubemaker_router_config_info"
SERVER_INVOCATIONS = "kubemaker_invocations_total"
SERVER_ERRORS = "kubemaker_invocation_errors_total"
SERVER_MODEL_LATENCY = "kubemaker_model_latency_seconds"
SERVER_OVERHEAD_LATENCY = "kubemaker_overhead_latency_seconds"

# The FleetCounters field each counter sample adds to.
ROUTER_FIELDS: Mapping[str, str] = {
    ROUTER_INVOCATIONS: "invocations",
    ROUTER_4XX: "errors_4xx",
    ROUTER_5XX: "errors_5xx",
    f"{ROUTER_MODEL_LATENCY}_sum": "model_latency_sum",
    f"{ROUTER_MODEL_LATENCY}_count": "model_latency_count",
    f"{ROUTER_OVERHEAD_LATENCY}_sum": "overhead_latency_sum",
    f"{ROUTER_OVERHEAD_LATENCY}_count": "overhead_latency_count",
}
_SERVER_FIELDS: Mapping[str, str] = {
    SERVER_INVOCATIONS: "invocations",
    f"{SERVER_MODEL_LATENCY}_sum": "model_latency_sum",
    f"{SERVER_MODEL_LATENCY}_count": "model_latency_count",
    f"{SERVER_OVERHEAD_LATENCY}_sum": "overhead_latency_sum",
    f"{SERVER_OVERHEAD_LATENCY}_count": "overhead_latency_count",
}
_ERROR_FIELDS: Mapping[str, str] = {"4": "errors_4xx", "5": "errors_5xx"}

MICROSECONDS = 1_000_000.0

# (source, variant, fleet): one pod's (or Prometheus instance's) counters of one fleet.
SeriesKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class FleetCounters:
    """Cumulative counters of one fleet of a variant (or, as a difference, an increase)."""

    invocations: float = 0.0
    errors_4xx: float = 0.0
    errors_5xx: float = 0.0
    model_latency_sum: float = 0.0  # seconds
    model_latency_count: float = 0.0
    overhead_latency_sum: float = 0.0  # seconds
    overhead_latency_count: float = 0.0

    def __add__(self, other: FleetCounters) -> FleetCounters:
        return FleetCounters(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def increase_since(self, previous: FleetCounters) -> FleetCounters:
        """The increase from ``previous``; a counter that went back means the source
        restarted (Prometheus' rule): then the current values are the increase."""
        now, before = astuple(self), astuple(previous)
        if any(n < b for n, b in zip(now, before, strict=True)):
            return self
        return FleetCounters(*(n - b for n, b in zip(now, before, strict=True)))


ZERO = FleetCounters()


@dataclass(frozen=True)
class Snapshot:
    """What the data plane's counters were at ``taken_at`` (epoch seconds).

    ``series``: cumulative counters per (source, variant, fleet); ``held``: requests
    held now per variant (summed over router replicas); ``config_versions``: the
    routing-table versions the router replicas apply (one element once all agree).
    """

    taken_at: float
    series: Mapping[SeriesKey, FleetCounters] = field(default_factory=dict)
    held: Mapping[str, int] = field(default_factory=dict)
    config_versions: frozenset[str] = frozenset()

    @property
    def fleets(self) -> dict[tuple[str, str], FleetCounters]:
        """Counters per (variant, fleet), summed over the sources."""
        out: dict[tuple[str, str], FleetCounters] = {}
        for (_, variant, fleet), counters in self.series.items():
            out[variant, fleet] = out.get((variant, fleet), ZERO) + counters
        return out

    @property
    def variants(self) -> frozenset[str]:
        return frozenset(v for _, v, _ in self.series) | frozenset(self.held)

    def merge(self, others: Iterable[Snapshot]) -> Snapshot:
        """This snapshot plus ``others`` (other pods of the same scrape): counters of the
        same series and held requests of the same variant add up, versions unite; the
        time is the latest of them. Do not merge a router's and a model server's
        snapshot of the same fleet: each request would count twice."""
        series = dict(self.series)
        held = dict(self.held)
        versions = set(self.config_versions)
        taken_at = self.taken_at
        for other in others:
            for key, counters in other.series.items():
                series[key] = series.get(key, ZERO) + counters
            for variant, count in other.held.items():
                held[variant] = held.get(variant, 0) + count
            versions |= other.config_versions
            taken_at = max(taken_at, other.taken_at)
        return Snapshot(taken_at, series, held, frozenset(versions))


# --- parsing the exposition text ---------------------------------------------------------


def _samples(text: str) -> Iterable[tuple[str, Mapping[str, str], float]]:
    """(sample name, labels, value) of every finite sample. The parser names a counter's
    family without ``_total``; its samples keep it, so samples are matched by name."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if math.isfinite(sample.value):
                yield sample.name, sample.labels, float(sample.value)


def _add(
    sums: dict[SeriesKey, dict[str, float]], key: SeriesKey, field_name: str, value: float
) -> None:
    counters = sums.setdefault(key, {})
    counters[field_name] = counters.get(field_name, 0.0) + value


def _snapshot(
    taken_at: float,
    sums: Mapping[SeriesKey, Mapping[str, float]],
    held: Mapping[str, int] | None = None,
    versions: Iterable[str] = (),
) -> Snapshot:
    series = {key: FleetCounters(**values) for key, values in sums.items()}
    return Snapshot(taken_at, series, dict(held or {}), frozenset(versions))


def parse_router_text(text: str, *, taken_at: float, source: str = "") -> Snapshot:
    """A router replica's ``/metrics`` text as a snapshot; ``source`` names the replica
    (``ip:port``). Samples without a ``variant`` label are ignored.

    Raises ValueError when the text is not Prometheus' exposition format."""
    sums: dict[SeriesKey, dict[str, float]] = {}
    held: dict[str, int] = {}
    versions: set[str] = set()
    for name, labels, value in _samples(text):
        if name == ROUTER_CONFIG_INFO:
            if value > 0 and labels.get("version"):
                versions.add(labels["version"])
            continue
        variant = labels.get("variant")
        if not variant:
            continue
        if name == ROUTER_HELD:
            held[variant] = held.get(variant, 0) + round(value)
        elif name in ROUTER_FIELDS:
            _add(sums, (source, variant, labels.get("fleet", "")), ROUTER_FIELDS[name], value)
    return _snapshot(taken_at, sums, held, versions)


def parse_server_text(
    text: str, variant: str, fleet: str, *, taken_at: float, source: str = ""
) -> Snapshot:
    """A model server's ``/metrics`` text (no router in front) as a snapshot of the given
    variant and fleet, all ``model`` labels added up. An error's ``code`` label
    (``400``, ``503`` or ``4xx``/``5xx``) counts by its first digit.

    Raises ValueError when the text is not Prometheus' exposition format."""
    sums: dict[SeriesKey, dict[str, float]] = {}
    key = (source, variant, fleet)
    for name, labels, value in _samples(text):
        if name in _SERVER_FIELDS:
            _add(sums, key, _SERVER_FIELDS[name], value)
        elif name == SERVER_ERRORS:
            error_field = _ERROR_FIELDS.get(labels.get("code", "")[:1])
            if error_field is not None:
                _add(sums, key, error_field, value)
    return _snapshot(taken_at, sums)


# --- rates --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FleetRates:
    """Traffic of a fleet (or a whole variant) between two snapshots.

    ``invocations``, ``errors_4xx``, ``errors_5xx``: counts in the interval; the
    ``*_per_minute`` fields: the same per minute; latencies: mean over the interval in
    microseconds (SageMaker's ModelLatency / OverheadLatency unit), None without
    requests.
    """

    seconds: float
    invocations: float
    errors_4xx: float
    errors_5xx: float
    invocations_per_minute: float
    errors_4xx_per_minute: float
    errors_5xx_per_minute: float
    model_latency_us: float | None
    overhead_latency_us: float | None

    @staticmethod
    def of(increase: FleetCounters, seconds: float) -> FleetRates:
        per_minute = 60.0 / seconds
        return FleetRates(
            seconds=seconds,
            invocations=increase.invocations,
            errors_4xx=increase.errors_4xx,
            errors_5xx=increase.errors_5xx,
            invocations_per_minute=increase.invocations * per_minute,
            errors_4xx_per_minute=increase.errors_4xx * per_minute,
            errors_5xx_per_minute=increase.errors_5xx * per_minute,
            model_latency_us=_mean_us(increase.model_latency_sum, increase.model_latency_count),
            overhead_latency_us=_mean_us(
                increase.overhead_latency_sum, increase.overhead_latency_count
            ),
        )


@dataclass(frozen=True, slots=True)
class VariantRates:
    """A variant's traffic (``total``) and each of its fleets' (by fleet name)."""

    total: FleetRates
    fleets: Mapping[str, FleetRates]

    @property
    def invocations_per_minute(self) -> float:
        return self.total.invocations_per_minute


def _mean_us(total_seconds: float, count: float) -> float | None:
    return total_seconds / count * MICROSECONDS if count > 0 else None


def _increases(previous: Snapshot, current: Snapshot) -> dict[SeriesKey, FleetCounters]:
    """Each current series' increase since ``previous``. A series ``previous`` lacks is
    new (a pod started in the interval; its counters started at 0): all of it counts.
    A series that is gone (a pod that stopped) contributes nothing."""
    return {
        key: counters.increase_since(previous.series.get(key, ZERO))
        for key, counters in current.series.items()
    }


def rates(
    previous: Snapshot, current: Snapshot, *, variants: Iterable[str] = ()
) -> dict[str, VariantRates]:
    """Per variant, its traffic between two snapshots; empty when ``current`` is not
    later than ``previous``. ``variants`` named here appear with zero rates when no
    series of theirs exists yet (a router exports a variant's counters only once a
    request reached it: no series after a successful scrape means no traffic)."""
    seconds = current.taken_at - previous.taken_at
    if seconds <= 0:
        return {}
    per_fleet: dict[str, dict[str, FleetCounters]] = {v: {} for v in variants}
    for (_, variant, fleet), increase in _increases(previous, current).items():
        fleets = per_fleet.setdefault(variant, {})
        fleets[fleet] = fleets.get(fleet, ZERO) + increase
    out: dict[str, VariantRates] = {}
    for variant, fleets in per_fleet.items():
        total = sum(fleets.values(), ZERO)
        out[variant] = VariantRates(
            total=FleetRates.of(total, seconds),
            fleets={name: FleetRates.of(inc, seconds) for name, inc in fleets.items()},
        )
    return out


# --- alarms -------------------------------------------------------------------------------

_OPERATORS: Mapping[str, str] = {
    "GreaterThanThreshold": ">",
    "GreaterThanOrEqualToThreshold": ">=",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "<=",
}


@dataclass(frozen=True, slots=True)
class AlarmState:
    """An alarm's evaluation: ``value`` is the newest period's (None: no data);
    ``values`` every period's, oldest first; ``message`` one line for events/status."""

    fired: bool
    value: float | None
    message: str
    values: tuple[float | None, ...] = ()


def _breaches(operator: str, value: float, threshold: float) -> bool:
    if operator == "GreaterThanThreshold":
        return value > threshold
    if operator == "GreaterThanOrEqualToThreshold":
        return value >= threshold
    if operator == "LessThanThreshold":
        return value < threshold
    return value <= threshold


def _period_value(metric: str, increase: FleetCounters) -> float | None:
    """A period's value of ``metric``, None when the period has no data: no requests
    (SageMaker publishes no datapoint for an endpoint without traffic)."""
    if metric == "ModelLatency":
        return _mean_us(increase.model_latency_sum, increase.model_latency_count)
    if metric == "OverheadLatency":
        return _mean_us(increase.overhead_latency_sum, increase.overhead_latency_count)
    errors = increase.errors_4xx if metric == "Invocation4XXErrors" else increase.errors_5xx
    if increase.invocations <= 0 and errors <= 0:
        return None
    return errors


def _number(value: float | None) -> str:
    if value is None:
        return "no data"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def evaluate_alarm(
    alarm: Alarm, history: Sequence[Snapshot], fleet: str | None, *, variant: str | None = None
) -> AlarmState:
    """Whether ``alarm`` fires on ``history`` (snapshots of one endpoint, any order).

    The series evaluated: those of ``fleet`` (the new fleet of a blue/green update) or,
    with ``fleet`` None, all of them; ``variant`` narrows either to one variant.

    As CloudWatch with "N out of N" datapoints: the last ``evaluation_periods`` periods
    of ``period_in_seconds`` each, the newest ending at the newest snapshot, each one's
    value is its error count (Invocation4XXErrors, Invocation5XXErrors,
    InvocationModelErrors) or mean latency in microseconds (ModelLatency,
    OverheadLatency); the alarm fires when every period breaches. A period without
    data (no requests, or no snapshots in it) does not breach (CloudWatch's
    ``notBreaching`` treatment of missing data).

    Each interval between consecutive snapshots counts in the period its end falls in
    (scrape intervals are meant to be much shorter than a period). InvocationModelErrors
    is SageMaker's "the model container answered with an error"; the metrics here do
    not tell a model's 5xx from the platform's, so it counts the 5xx answers, as
    Invocation5XXErrors does.
    """
    periods = alarm.evaluation_periods
    period = float(alarm.period_in_seconds)
    ordered = sorted(history, key=lambda s: s.taken_at)
    buckets: list[FleetCounters] = [ZERO] * periods
    if ordered:
        newest = ordered[-1].taken_at
        for before, after in itertools.pairwise(ordered):
            if after.taken_at <= before.taken_at:
                continue
            index = int((newest - after.taken_at) // period)
            if index >= periods:
                continue
            for (_, v, f), increase in _increases(before, after).items():
                if (fleet is None or f == fleet) and (variant is None or v == variant):
                    buckets[index] = buckets[index] + increase
    # Oldest first, as the message reads.
    values = tuple(_period_value(alarm.metric_name, b) for b in reversed(buckets))
    symbol = _OPERATORS[alarm.comparison_operator]
    fired = all(
        v is not None and _breaches(alarm.comparison_operator, v, alarm.threshold) for v in values
    )
    shown = ", ".join(_number(v) for v in values)
    span = (
        f"the last period of {alarm.period_in_seconds} s"
        if periods == 1
        else f"the last {periods} periods of {alarm.period_in_seconds} s"
    )
    if fired:
        message = (
            f"alarm {alarm.alarm_name}: {alarm.metric_name} {shown} "
            f"{symbol} {_number(alarm.threshold)} in {'' if periods == 1 else 'each of '}{span}"
        )
    else:
        message = (
            f"alarm {alarm.alarm_name}: {alarm.metric_name} {shown} in {span}; "
            f"fires when {'it is' if periods == 1 else 'each is'} "
            f"{symbol} {_number(alarm.threshold)}"
        )
    return AlarmState(fired=fired, value=values[-1], message=message, values=values)


__all__ = [
    "ZERO",
    "AlarmState",
    "FleetCounters",
    "FleetRates",
    "Snapshot",
    "VariantRates",
    "evaluate_alarm",
    "parse_router_text",
    "parse_server_text",
    "rates",
]
