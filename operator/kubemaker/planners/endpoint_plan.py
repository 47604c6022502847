"""The Endpoint planner's types and the checks its steps share.

:class:`Observation` (what the controller saw) and :class:`Plan` (what to do), the
per-reconcile :class:`VariantState` of a variant, and the questions every step asks of
the routing table: does every router replica apply the table written last, and what
share of a variant's traffic does it give a fleet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubemaker.api.endpoint import (
    DeployedImage,
    DeploymentProgress,
    EndpointSpec,
    EndpointStatus,
    ProductionVariant,
    ProductionVariantSummary,
)
from kubemaker.builders import endpoint as eb
from kubemaker.config import OperatorConfig
from kubemaker.planners.endpoint_views import FleetView, PodProblem
from kubemaker.reconcile.models import ModelState
from kubemaker_runtime.routing import RoutingTable

JSON = dict[str, Any]

# How often to look again while something moves (fleets starting, steps waiting).
POLL_SECONDS = 5.0
WAITING_FOR_JOB_SECONDS = 30.0


@dataclass(frozen=True)
class Traffic:
    """A variant's demand, from the router's or model servers' metrics."""

    invocations_per_minute: float | None
    held: int = 0


@dataclass(frozen=True)
class Observation:
    name: str
    namespace: str
    generation: int | None
    spec: EndpointSpec
    status: EndpointStatus
    models: Mapping[str, ModelState]
    fleets: Sequence[FleetView]
    problems: Sequence[PodProblem]
    written_table: RoutingTable | None  # the routing table in the router's ConfigMap
    router_versions: frozenset[str] | None  # versions the router replicas report applying
    traffic: Mapping[str, Traffic]
    alarms: Mapping[str, str]  # fleet -> the message of an alarm that fired on it
    config: OperatorConfig
    now: datetime
    uid: str = ""


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str
    variant: str | None = None  # the variant it is about (scaling decisions)


@dataclass
class Plan:
    status: EndpointStatus
    create: list[JSON] = field(default_factory=list)  # get-or-create (fleets)
    apply: list[JSON] = field(default_factory=list)  # create, or replace when different
    scale: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # replicas, count
    delete: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    table: RoutingTable | None = None

    def again_in(self, seconds: float) -> None:
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = max(0.0, seconds)


@dataclass
class VariantState:
    """One variant's situation during a reconcile."""

    spec: ProductionVariant
    index: int
    shadow: bool
    model: eb.ServedModel
    desired: str  # the fleet its spec asks for
    serving: FleetView | None  # the fleet with its traffic
    fleets: list[tuple[FleetView, float]]  # (fleet, weight) the router sends to
    summary: ProductionVariantSummary

    @property
    def field(self) -> str:
        kind = "shadowProductionVariants" if self.shadow else "productionVariants"
        return f"spec.{kind}[{self.index}]"


def applied_table(obs: Observation) -> RoutingTable | None:
    """The written routing table, once every router replica applies it."""
    table = obs.written_table
    if table is None or obs.router_versions != frozenset({table.version}):
        return None
    return table


def share_of(table: RoutingTable, fleet: str) -> float | None:
    """The share (percent) of its variant's traffic a table gives ``fleet``, if it has one."""
    variants = list(table.variants) + ([table.shadow.variant] if table.shadow else [])
    for variant in variants:
        total = sum(f.weight for f in variant.fleets)
        for candidate in variant.fleets:
            if candidate.name == fleet:
                return 100.0 * candidate.weight / total if total else 0.0
    return None


def in_effect(obs: Observation, fleet: str, percent: float) -> bool:
    """The routers send ``percent`` of the variant's traffic to ``fleet``."""
    if not eb.needs_router(obs.spec):
        return True
    table = applied_table(obs)
    share = share_of(table, fleet) if table is not None else None
    return share is not None and abs(share - percent) < 0.05


def unrouted(obs: Observation, fleet: str) -> bool:
    """No router sends ``fleet`` anything: it may be deleted."""
    if not eb.needs_router(obs.spec):
        return True
    table = applied_table(obs)
    share = share_of(table, fleet) if table is not None else None
    return table is not None and (share is None or share == 0.0)


def split(variant: VariantState, old: FleetView, new: FleetView, percent: float) -> None:
    variant.fleets = [(old, 100 - percent), (new, percent)] if percent < 100 else [(new, 1.0)]


# --- helpers --------------------------------------------------------------------------------


def describe(variant: VariantState) -> None:
    summary = variant.summary
    weight = variant.spec.initial_variant_weight
    summary.desired_weight = weight
    summary.current_weight = weight
    summary.model_data_url = variant.model.model_data_url
    images = {f.image or variant.model.image for f, w in variant.fleets if w > 0}
    summary.deployed_images = [DeployedImage(specified_image=i) for i in sorted(images)] or None


def problem_of(obs: Observation, fleet: FleetView) -> str | None:
    return next((p.message for p in obs.problems if p.fleet == fleet.name), None)


def in_progress(progress: DeploymentProgress | None) -> bool:
    return progress is not None and progress.phase not in ("Completed", "RolledBack")


def placeholder(name: str, replicas: int = 1) -> FleetView:
    """A fleet created in this reconcile (its watch event has not come yet)."""
    return FleetView(
        name=name, uid="", variant=None, component=eb.COMPONENT_SERVER, replicas=replicas,
        ready=0, updated=0, spec_count=None, image=None, model_data_url=None,
        progress_failed=None, observed=False, deleting=False,
    )  # fmt: skip


def epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def from_epoch(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None
