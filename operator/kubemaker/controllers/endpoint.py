"""The Endpoint controller: kopf handlers feeding a work queue, and the reconcile.

As the TrainingJob controller: kopf indexes keep small views of the children
(Deployments labelled ``kubemaker.io/endpoint``, model-server pods that cannot start),
``on.event`` handlers only enqueue, a fixed pool of workers reconciles with the pure
:func:`plan_endpoint`, and kopf writes nothing to the objects (no finalizer: children
go with their ownerReferences).

What the planner cannot see in the children it is given here:

- the model of a ``trainingJobRef`` (the TrainingJob is read; an event of a referenced
  TrainingJob enqueues the Endpoints that wait for it);
- the data plane's metrics, sampled at most every ``endpoints.metricsIntervalSeconds``
  from the router's (or, without one, the model servers') ``/metrics``, or from
  Prometheus when the chart names one: the autoscaler's demand, the alarms of an
  update, and the routing-table version each router replica applies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
import kopf
from pydantic import ValidationError

from kubemaker import metrics
from kubemaker.api.common import GROUP, VERSION
from kubemaker.api.endpoint import Endpoint, EndpointSpec, EndpointStatus
from kubemaker.builders import endpoint as eb
from kubemaker.builders import naming
from kubemaker.builders.errors import validation_message
from kubemaker.config import OperatorConfig
from kubemaker.failures import FailureKind, failure
from kubemaker.kube import SERVICES, Kube, Resource
from kubemaker.planners import endpoint_metrics as em
from kubemaker.planners.endpoint import Observation, Plan, Traffic, plan_endpoint
from kubemaker.planners.endpoint_views import FleetView, PodProblem
from kubemaker.reconcile import models, scrape
from kubemaker.reconcile.bodies import parse_object
from kubemaker.reconcile.controller import RESYNC_SECONDS, Key, KindController
from kubemaker.reconcile.models import ModelState
from kubemaker_runtime.routing import ROUTES_FILE, RoutingTable

logger = logging.getLogger(__name__)

KIND = "Endpoint"
ENDPOINTS = Resource(GROUP, VERSION, "endpoints")
DEPLOYMENTS = Resource("apps", "v1", "deployments")
CONFIGMAPS = Resource("", "v1", "configmaps")
PDBS = Resource("policy", "v1", "poddisruptionbudgets")
HPAS = Resource("autoscaling", "v2", "horizontalpodautoscalers")
RESOURCES = {
    "Deployment": DEPLOYMENTS,
    "Service": SERVICES,
    "ConfigMap": CONFIGMAPS,
    "PodDisruptionBudget": PDBS,
    "HorizontalPodAutoscaler": HPAS,
}
FLEETS_INDEX = "endpoint_fleets"
PODS_INDEX = "endpoint_pods"
CHILD_EVENT_DELAY = 0.5
DEADLINE_SLACK = 0.2
# Snapshots kept per endpoint: enough for the longest alarm window at the sampling rate.
HISTORY = 400
STATUS_FIELDS = frozenset(f.alias or name for name, f in EndpointStatus.model_fields.items())


def _key(namespace: str | None, name: str) -> Key:
    return (namespace or "default", eb.base_name(name))


class EndpointController(KindController):
    """Caches, work queue and reconcile of Endpoints."""

    kind = KIND
    resource = ENDPOINTS
    status_fields = STATUS_FIELDS

    def __init__(
        self, kube: Kube, config: OperatorConfig, *, workers: int = 8, post_events: bool = True
    ) -> None:
        super().__init__(kube, workers=workers, post_events=post_events)
        self.config = config
        # (namespace, plural, name) -> (hash of the manifest applied, when): a child is
        # compared with the API again after RESYNC_SECONDS, so one deleted or edited by
        # hand is put back.
        self.applied: dict[tuple[str, str, str], tuple[str, float]] = {}
        self.tables: dict[Key, RoutingTable] = {}
        self.history: dict[Key, deque[em.Snapshot]] = {}
        self.waiters = models.Waiters()  # the TrainingJobs and TuningJobs of model refs
        self.fleets_index: kopf.Index[Key, FleetView] | None = None
        self.pods_index: kopf.Index[Key, PodProblem | scrape.ScrapeTarget] | None = None
        self.series = metrics.EndpointSeries()
        self._session: aiohttp.ClientSession | None = None

    # --- lifecycle ---

    def start(self, fleets: kopf.Index[Key, FleetView], pods: kopf.Index[Key, Any]) -> None:
        self.fleets_index = fleets
        self.pods_index = pods
        self.start_workers()

    async def stop(self) -> None:
        await super().stop()
        if self._session is not None:
            await self._session.close()

    # --- what the watches tell us ---

    def observe_endpoint(self, event_type: str | None, body: kopf.Body) -> None:
        meta = body.get("metadata") or {}
        self.observe(_key(meta.get("namespace"), str(meta.get("name", ""))), event_type, body)

    def forget(self, key: Key, body: kopf.Body) -> None:
        self.series.forget(key, str((body.get("metadata") or {}).get("name", "")))
        self.tables.pop(key, None)
        self.history.pop(key, None)
        self.waiters.forget(key)
        namespace, base = key
        for child in [k for k in self.applied if k[0] == namespace]:
            if child[2] == base or child[2].startswith(f"{base}-"):
                del self.applied[child]  # at worst another Endpoint's, looked up again

    def observe_child(self, namespace: str | None, labels: kopf.Labels) -> None:
        owner = labels.get(eb.LABEL_ENDPOINT)
        if owner:
            key = (namespace or "default", owner)
            if key in self.bodies:
                self.queue.add_after(key, CHILD_EVENT_DELAY)

    def observe_training_job(self, namespace: str | None, name: str) -> None:
        for key in self.waiters.of(namespace, name):
            self.queue.add(key)

    # --- reconcile ---

    async def _reconcile(self, key: Key, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        name, namespace = str(meta.get("name")), str(meta.get("namespace") or "default")
        stored = EndpointStatus.model_validate(body.get("status") or {})
        try:
            spec = parse_object(Endpoint, body).spec
        except ValidationError as exc:
            message = failure(FailureKind.VALIDATION, validation_message(exc, prefix="")).reason
            status = stored.model_copy(
                update={"endpoint_status": "Failed", "failure_reason": message}
            )
            if await self._write_status(key, body, status):
                self.events.post(body, "Warning", "Failed", message)
            return
        fleets = list(self.children(self.fleets_index, key))
        pod_entries = list(self.children(self.pods_index, key))
        problems = [p for p in pod_entries if isinstance(p, PodProblem)]
        targets = [t for t in pod_entries if isinstance(t, scrape.ScrapeTarget)]
        table = await self._written_table(key, namespace, name)
        history = await self._sample(key, namespace, name, spec, targets)
        obs = Observation(
            name=name,
            namespace=namespace,
            generation=meta.get("generation"),
            spec=spec,
            status=stored,
            models=await self._models(key, namespace, spec),
            fleets=fleets,
            problems=problems,
            written_table=table,
            router_versions=history[-1].config_versions if history else None,
            traffic=_traffic(history, spec),
            alarms=_alarms(history, spec, stored),
            config=self.config,
            now=datetime.now(UTC),
            uid=str(meta.get("uid") or ""),
        )
        plan = plan_endpoint(obs)
        # Status first: it records the step (the intent) before children change.
        await self._write_status(key, body, plan.status)
        await self._apply(key, namespace, plan)
        for event in plan.events:
            self.events.post(body, event.type, event.reason, event.message)
            if event.variant is not None and event.reason in ("ScaledOut", "ScaledIn"):
                direction = "out" if event.reason == "ScaledOut" else "in"
                self.series.count_scaling(key, name, event.variant, direction)
            else:
                self.series.count_event(key, name, event.reason)
        self.tally.set(key, str(plan.status.endpoint_status))
        summaries = [
            *(plan.status.production_variants or []),
            *(plan.status.shadow_production_variants or []),
        ]
        self.series.set(
            key,
            name,
            {
                s.variant_name: (s.desired_instance_count or 0, s.current_instance_count or 0)
                for s in summaries
            },
        )
        wake = plan.requeue_after
        if _needs_metrics(spec):
            interval = self.config.endpoints.metrics_interval_seconds
            wake = interval if wake is None else min(wake, interval)
        if wake is not None:
            self.queue.add_after(key, wake + DEADLINE_SLACK)

    async def _apply(self, key: Key, namespace: str, plan: Plan) -> None:
        for manifest in plan.create:
            _, created = await self.kube.get_or_create(DEPLOYMENTS, namespace, manifest)
            if created:
                logger.info("Created fleet %s/%s", namespace, manifest["metadata"]["name"])
        for manifest in plan.apply:
            await self._create_or_replace(namespace, manifest)
        if plan.table is not None:
            self.tables[key] = plan.table
        for fleet, (replicas, count) in plan.scale.items():
            patch: dict[str, Any] = {"spec": {"replicas": replicas}}
            if count is not None:
                patch["metadata"] = {"annotations": {eb.ANNOTATION_SPEC_COUNT: str(count)}}
            await self.kube.merge_patch(DEPLOYMENTS, namespace, fleet, patch)
        for kind, name in plan.delete:
            kinds = (DEPLOYMENTS, SERVICES, PDBS, HPAS) if kind == "fleet" else (RESOURCES[kind],)
            for resource in kinds:
                await self.kube.delete(resource, namespace, name)
                self.applied.pop((namespace, resource.plural, name), None)

    async def _create_or_replace(self, namespace: str, manifest: dict[str, Any]) -> None:
        """POST, or merge-patch the spec / data when it differs from what was applied."""
        resource = RESOURCES[manifest["kind"]]
        name = manifest["metadata"]["name"]
        digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
        cache_key = (namespace, resource.plural, name)
        digest_then, then = self.applied.get(cache_key, ("", 0.0))
        if digest_then == digest and time.monotonic() - then < RESYNC_SECONDS:
            return
        existing, created = await self.kube.get_or_create(resource, namespace, manifest)
        if not created:
            patch: dict[str, Any] = {k: manifest[k] for k in ("spec", "data") if k in manifest}
            if any(existing.get(k) != v for k, v in patch.items()):
                await self.kube.merge_patch(resource, namespace, name, patch)
        self.applied[cache_key] = (digest, time.monotonic())

    async def _write_status(self, key: Key, body: dict[str, Any], status: EndpointStatus) -> bool:
        new = status.model_dump(by_alias=True, mode="json", exclude_none=True)
        return await self.write_status(key, body, new)

    # --- what the children do not tell ---

    async def _models(self, key: Key, namespace: str, spec: EndpointSpec) -> dict[str, ModelState]:
        variants = [*spec.production_variants, *(spec.shadow_production_variants or [])]
        return {
            variant.variant_name: await models.resolve_source(
                self.kube,
                namespace,
                variant.model,
                self.config,
                where=f"variant {variant.variant_name}",
                field=f"variant {index}",
                wait=self.waiters.wait(key),
            )
            for index, variant in enumerate(variants)
        }

    async def _written_table(self, key: Key, namespace: str, name: str) -> RoutingTable | None:
        table = self.tables.get(key)
        if table is not None:
            return table
        found = await self.kube.get(CONFIGMAPS, namespace, eb.router_name(name))
        text = ((found or {}).get("data") or {}).get(ROUTES_FILE)
        if not text:
            return None
        try:
            table = RoutingTable.model_validate_json(text)
        except ValidationError:
            return None
        self.tables[key] = table
        return table

    async def _sample(
        self,
        key: Key,
        namespace: str,
        name: str,
        spec: EndpointSpec,
        targets: list[scrape.ScrapeTarget],
    ) -> list[em.Snapshot]:
        """The metric history, with a new snapshot when the last is old enough."""
        history = self.history.setdefault(key, deque(maxlen=HISTORY))
        settings = self.config.endpoints
        if not _needs_metrics(spec):
            return list(history)
        now = time.time()
        if history and now - history[-1].taken_at < min(settings.metrics_interval_seconds, 1.0):
            return list(history)
        session = await self._http()
        try:
            if settings.prometheus_url:
                snapshot = await scrape.query_prometheus(
                    session,
                    settings.prometheus_url,
                    namespace,
                    name,
                    timeout=settings.scrape_timeout_seconds,
                )
            else:
                snapshot, errors = await scrape.scrape_pods(
                    session, targets, timeout=settings.scrape_timeout_seconds
                )
                for error in errors:
                    logger.debug("Endpoint %s/%s: %s", namespace, name, error)
        except scrape.ScrapeError as exc:
            logger.warning("Endpoint %s/%s: no metrics: %s", namespace, name, exc)
            return list(history)
        history.append(snapshot)
        return list(history)

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session


# --- pure helpers ---------------------------------------------------------------------------


def _needs_metrics(spec: EndpointSpec) -> bool:
    """Metrics serve the routers (versions, alarms) and the autoscaler, which needs one."""
    return eb.needs_router(spec)


def _traffic(history: list[em.Snapshot], spec: EndpointSpec) -> dict[str, Traffic]:
    if len(history) < 2:
        held = history[-1].held if history else {}
        return {v: Traffic(None, n) for v, n in held.items()}
    names = {v.variant_name for v in spec.production_variants}
    rates = em.rates(history[-2], history[-1], variants=sorted(names))
    return {
        variant: Traffic(
            rates[variant].invocations_per_minute if variant in rates else 0.0,
            history[-1].held.get(variant, 0),
        )
        for variant in names
    }


def _alarms(
    history: list[em.Snapshot], spec: EndpointSpec, status: EndpointStatus
) -> dict[str, str]:
    progress = status.deployment
    config = spec.deployment_config
    rollback = config.auto_rollback_configuration if config else None
    if progress is None or rollback is None or not history:
        return {}
    for alarm in rollback.alarms:
        state = em.evaluate_alarm(alarm, history, progress.new_fleet)
        if state.fired:
            return {progress.new_fleet: state.message}
    return {}


# --- kopf handlers ------------------------------------------------------------------------


def controller(memo: kopf.Memo) -> EndpointController:
    return cast(EndpointController, memo["endpoints"])


async def index_fleets(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Key, FleetView]:
    return {(namespace or "default", labels[eb.LABEL_ENDPOINT]): FleetView.from_body(body)}


async def index_pods(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Key, Any] | None:
    owner = labels.get(eb.LABEL_ENDPOINT)
    if not owner:
        return None
    key = (namespace or "default", owner)
    problem = PodProblem.from_body(body)
    if problem is not None:
        return {key: problem}
    target = scrape_target(body)
    return {key: target} if target is not None else None


def scrape_target(body: kopf.Body) -> scrape.ScrapeTarget | None:
    """A ready router pod, whose /metrics the controller reads (the routers count every
    request; the model servers' own counters would count them twice)."""
    labels = body.get("metadata", {}).get("labels") or {}
    status = body.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
    )
    ip = status.get("podIP")
    if labels.get(naming.LABEL_COMPONENT) != eb.COMPONENT_ROUTER or not ready or not ip:
        return None
    return scrape.ScrapeTarget(ip=str(ip), port=eb.PORT, kind="router")


async def on_endpoint(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    controller(memo).observe_endpoint(type, body)


async def on_child(namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    controller(memo).observe_child(namespace, labels)


async def on_training_job(
    namespace: str | None, name: str | None, memo: kopf.Memo, **_: Any
) -> None:
    controller(memo).observe_training_job(namespace, str(name))


async def on_tuning_job(namespace: str | None, name: str | None, memo: kopf.Memo, **_: Any) -> None:
    controller(memo).observe_training_job(namespace, f"tuningjob/{name}")


async def on_startup(memo: kopf.Memo, settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    settings.watching.label_selectors["apps", "v1", "deployments"] = eb.LABEL_ENDPOINT
    controller(memo).start(kwargs[FLEETS_INDEX], kwargs[PODS_INDEX])


async def on_cleanup(memo: kopf.Memo, **_: Any) -> None:
    await controller(memo).stop()


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the Endpoint handlers with ``registry``."""
    selector = {eb.LABEL_ENDPOINT: kopf.PRESENT}
    kopf.on.startup(registry=registry, id="endpoint_startup")(on_startup)
    kopf.on.cleanup(registry=registry, id="endpoint_cleanup")(on_cleanup)
    kopf.index("apps", "v1", "deployments", labels=selector, id=FLEETS_INDEX, registry=registry)(
        index_fleets
    )
    kopf.index("v1", "pods", labels=selector, id=PODS_INDEX, registry=registry)(index_pods)
    kopf.on.event(GROUP, VERSION, "endpoints", registry=registry, id="endpoint_event")(on_endpoint)
    kopf.on.event(
        "apps", "v1", "deployments", labels=selector, registry=registry, id="endpoint_deployment"
    )(on_child)
    kopf.on.event("v1", "pods", labels=selector, registry=registry, id="endpoint_pod")(on_child)
    kopf.on.event(GROUP, VERSION, "trainingjobs", registry=registry, id="endpoint_trainingjob")(
        on_training_job
    )
    kopf.on.event(GROUP, VERSION, "tuningjobs", registry=registry, id="endpoint_tuningjob")(
        on_tuning_job
    )
