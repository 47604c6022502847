"""The TuningJob controller: kopf handlers feeding a work queue, and the reconcile.

As the other controllers: a kopf index keeps a :class:`TrialView` of every TrainingJob
labelled ``kubemaker.io/tuning-job`` (the trials), ``on.event`` handlers only enqueue,
a fixed pool of workers reconciles with the pure :func:`plan_tuning`, and kopf writes
nothing to the objects. Trials carry ownerReferences: deleting a TuningJob deletes its
trials, and theirs their Jobs and pods.

A trial the search stops early gets ``spec.stop`` and the ``kubemaker.io/stopped-early``
annotation (why) in one patch. A warm start's parents are read from the cached
TuningJobs and the trials index; a parent's change wakes its children.

A trial created in one reconcile may not be in the index yet at the next: it is kept
here for a while (:data:`EXPECTATION_SECONDS`) so that the planner counts it as running
instead of suggesting its index again (a create of that name would only find it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from pydantic import ValidationError

from kubemaker import metrics
from kubemaker.api.common import GROUP, VERSION
from kubemaker.api.tuning import TuningJob, TuningJobSpec, TuningJobStatus
from kubemaker.builders import tuning as tb
from kubemaker.builders.errors import validation_message
from kubemaker.config import OperatorConfig
from kubemaker.failures import FailureKind, failure
from kubemaker.kube import ApiError, Kube, Resource
from kubemaker.planners.tuning import TERMINAL, Observation, Parent, plan_tuning
from kubemaker.planners.tuning_views import ANNOTATION_STOPPED_EARLY, TrialView
from kubemaker.reconcile.bodies import parse_object
from kubemaker.reconcile.controller import Key, KindController

logger = logging.getLogger(__name__)

KIND = "TuningJob"
TUNINGJOBS = Resource(GROUP, VERSION, "tuningjobs")
TRAININGJOBS = Resource(GROUP, VERSION, "trainingjobs")
TRIALS_INDEX = "tuningjob_trials"
EXPECTATION_SECONDS = 60.0
CHILD_EVENT_DELAY = 0.5
DEADLINE_SLACK = 0.2
STATUS_FIELDS = frozenset(f.alias or name for name, f in TuningJobStatus.model_fields.items())


class TuningController(KindController):
    """Caches, work queue and reconcile of TuningJobs."""

    kind = KIND
    resource = TUNINGJOBS
    status_fields = STATUS_FIELDS

    def __init__(
        self, kube: Kube, config: OperatorConfig, *, workers: int = 8, post_events: bool = True
    ) -> None:
        super().__init__(kube, workers=workers, post_events=post_events)
        self.config = config
        self.recent: dict[Key, dict[str, tuple[TrialView, float]]] = {}
        self.trials_index: kopf.Index[Key, TrialView] | None = None

    def start(self, trials: kopf.Index[Key, TrialView]) -> None:
        self.trials_index = trials
        self.start_workers(
            settled=lambda body: (
                (body.get("status") or {}).get("hyperParameterTuningJobStatus") in TERMINAL
            )
        )

    # --- what the watches tell us ---

    def observe_tuning_job(self, event_type: str | None, body: kopf.Body) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or "default"), str(meta.get("name", "")))
        self.observe(key, event_type, body)
        for child in self._children_of(key):
            self.queue.add_after(child, CHILD_EVENT_DELAY)

    def forget(self, key: Key, body: kopf.Body) -> None:
        self.recent.pop(key, None)
        _forget_gauge(metrics.TUNING_BEST_OBJECTIVE, key, "metric")
        _forget_gauge(metrics.TUNING_TRIALS, key, "status")

    def observe_trial(self, namespace: str | None, labels: kopf.Labels) -> None:
        owner = labels.get(tb.LABEL_TUNING_JOB)
        key = (namespace or "default", str(owner))
        if owner and key in self.bodies:
            self.queue.add_after(key, CHILD_EVENT_DELAY)

    # --- reconcile ---

    async def _reconcile(self, key: Key, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        name, namespace = key[1], key[0]
        stored = TuningJobStatus.model_validate(body.get("status") or {})
        now = datetime.now(UTC)
        try:
            spec = parse_object(TuningJob, body).spec
        except ValidationError as exc:
            if stored.hyper_parameter_tuning_job_status is None:
                message = failure(FailureKind.VALIDATION, validation_message(exc, prefix="")).reason
                status = stored.model_copy(
                    update={
                        "hyper_parameter_tuning_job_status": "Failed",
                        "failure_reason": message,
                    }
                )
                if await self._write_status(key, body, status):
                    self.events.post(body, "Warning", "Failed", message)
            return
        plan = plan_tuning(
            Observation(
                name=name,
                namespace=namespace,
                uid=str(meta.get("uid") or ""),
                generation=meta.get("generation"),
                spec=spec,
                status=stored,
                trials=self._trials(key),
                now=now,
                creation_timestamp=meta.get("creationTimestamp"),
                parents=await self._parents(namespace, spec),
            )
        )
        # Status first; trials are named deterministically, so a crash before they are
        # created only delays them.
        await self._write_status(key, body, plan.status)
        for trial in plan.create:
            created, new = await self.kube.get_or_create(TRAININGJOBS, namespace, trial)
            view = TrialView.from_body(created)
            if view is not None:
                self.recent.setdefault(key, {})[view.name] = (view, time.monotonic())
            if new:
                logger.info("Created trial %s/%s", namespace, trial["metadata"]["name"])
        for trial_name in plan.stop:
            patch: dict[str, Any] = {"spec": {"stop": True}}
            why = plan.stop_early.get(trial_name)
            if why is not None:
                patch["metadata"] = {"annotations": {ANNOTATION_STOPPED_EARLY: why}}
            try:
                await self.kube.merge_patch(TRAININGJOBS, namespace, trial_name, patch)
            except ApiError as exc:
                if not exc.not_found:
                    raise
        for event in plan.events:
            self.events.post(body, event.type, event.reason, event.message)
        self.tally.set(key, str(plan.status.hyper_parameter_tuning_job_status))
        counters = plan.status.training_job_status_counters
        if counters is not None:
            for state, count in counters.model_dump(by_alias=True).items():
                metrics.TUNING_TRIALS.labels(namespace, name, state).set(count)
        best = plan.status.best_training_job
        objective = best.final_hyper_parameter_tuning_job_objective_metric if best else None
        if objective is not None:
            metrics.TUNING_BEST_OBJECTIVE.labels(namespace, name, objective.metric_name).set(
                objective.value
            )
        if plan.requeue_after is not None:
            self.queue.add_after(key, plan.requeue_after + DEADLINE_SLACK)

    async def _parents(self, namespace: str, spec: TuningJobSpec) -> dict[str, Parent]:
        """The warm start's parents, with their trials. One missing from the cache is
        looked up (the watch may not have delivered it yet, just after a start)."""
        parents: dict[str, Parent] = {}
        refs = (
            spec.warm_start_config.parent_hyper_parameter_tuning_jobs
            if spec.warm_start_config
            else ()
        )
        for ref in refs:
            name = ref.hyper_parameter_tuning_job_name
            body = self.bodies.get((namespace, name))
            if body is None:
                body = await self.kube.get(TUNINGJOBS, namespace, name)
            if body is None:
                continue
            try:
                parent_spec = parse_object(TuningJob, body).spec
            except ValidationError:
                continue  # as missing: its own status says what is wrong with it
            state = (body.get("status") or {}).get("hyperParameterTuningJobStatus")
            parents[name] = Parent(name, parent_spec, state, self._trials((namespace, name)))
        return parents

    def _children_of(self, key: Key) -> list[Key]:
        """The cached TuningJobs that warm-start from ``key``."""
        children = []
        for other, body in self.bodies.items():
            warm = (body.get("spec") or {}).get("warmStartConfig") or {}
            parents = warm.get("parentHyperParameterTuningJobs") or ()
            if other[0] == key[0] and any(
                p.get("hyperParameterTuningJobName") == key[1] for p in parents
            ):
                children.append(other)
        return children

    def _trials(self, key: Key) -> list[TrialView]:
        indexed: dict[str, TrialView] = {}
        if self.trials_index is not None and key in self.trials_index:
            indexed = {t.name: t for t in cast(Iterable[TrialView], self.trials_index[key])}
        recent = self.recent.get(key, {})
        cutoff = time.monotonic() - EXPECTATION_SECONDS
        for trial_name, (view, since) in list(recent.items()):
            if trial_name in indexed or since < cutoff:
                del recent[trial_name]
            else:
                indexed[trial_name] = view
        return list(indexed.values())

    async def _write_status(self, key: Key, body: dict[str, Any], status: TuningJobStatus) -> bool:
        new = status.model_dump(by_alias=True, mode="json", exclude_none=True)
        return await self.write_status(key, body, new)


def _forget_gauge(gauge: Any, key: Key, label: str) -> None:
    """Remove the series of one TuningJob (whatever its third label)."""
    for labels in [s.labels for m in gauge.collect() for s in m.samples]:
        if (labels.get("namespace"), labels.get("tuningjob")) == key:
            gauge.remove(labels["namespace"], labels["tuningjob"], labels[label])


# --- kopf handlers ------------------------------------------------------------------------


def controller(memo: kopf.Memo) -> TuningController:
    return cast(TuningController, memo["tuning"])


async def index_trials(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[Key, TrialView] | None:
    view = TrialView.from_body(body)
    if view is None:
        return None
    owner = str((body.get("metadata", {}).get("labels") or {}).get(tb.LABEL_TUNING_JOB))
    return {(namespace or "default", owner): view}


async def on_tuning_job(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    controller(memo).observe_tuning_job(type, body)


async def on_trial(namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    controller(memo).observe_trial(namespace, labels)


async def on_startup(memo: kopf.Memo, **kwargs: Any) -> None:
    controller(memo).start(kwargs[TRIALS_INDEX])


async def on_cleanup(memo: kopf.Memo, **_: Any) -> None:
    await controller(memo).stop()


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the TuningJob handlers with ``registry``."""
    selector = {tb.LABEL_TUNING_JOB: kopf.PRESENT}
    kopf.on.startup(registry=registry, id="tuningjob_startup")(on_startup)
    kopf.on.cleanup(registry=registry, id="tuningjob_cleanup")(on_cleanup)
    kopf.index(GROUP, VERSION, "trainingjobs", labels=selector, id=TRIALS_INDEX, registry=registry)(
        index_trials
    )
    kopf.on.event(GROUP, VERSION, "tuningjobs", registry=registry, id="tuningjob_event")(
        on_tuning_job
    )
    kopf.on.event(
        GROUP, VERSION, "trainingjobs", labels=selector, registry=registry, id="tuningjob_trial"
    )(on_trial)
