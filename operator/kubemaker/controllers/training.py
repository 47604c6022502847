"""The TrainingJob controller: kopf handlers that feed a work queue, and the reconcile.

How children are watched, and why (1000 concurrent jobs within 250 MB):

- kopf *indexes* keep a small :class:`PodView` / :class:`JobView` of every pod and Job
  labelled ``kubemaker.io/training-job`` (server-side label selectors: nothing else is
  listed), keyed by the owning TrainingJob. kopf fills every index before it calls any
  other handler, so after a restart the controller sees all existing children before it
  decides anything, and creates nothing twice.
- ``on.event`` handlers for TrainingJobs, Jobs and pods only *enqueue* the key of the
  TrainingJob concerned. A fixed number of workers reconcile keys (one at a time per
  key, bursts collapsed), so API requests in flight are bounded whatever the number
  of objects; no per-object tasks, timers or threads.
- Only ``on.event`` handlers are used, so kopf writes nothing to the objects: no
  finalizer (deleting a TrainingJob never waits for the operator; ownerReferences
  cascade), no progress or last-handled-configuration annotations.
- The reconcile is level-based: :func:`plan_training` computes status and actions
  from the cached TrainingJob, its children and the clock; deadlines (max runtime,
  max wait, TTL) are delayed requeues.
- Training metrics: the algorithm's log is read in the background
  (:mod:`kubemaker.controllers.training_logs`) and what it finds feeds the next
  reconcile; the metrics of every job are Prometheus gauges.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from pydantic import ValidationError

from kubemaker import metrics
from kubemaker.api.common import GROUP, VERSION
from kubemaker.api.training import (
    ANNOTATION_METRIC_SERIES,
    TERMINAL_TRAINING_STATUSES,
    TrainingJob,
    TrainingJobSpec,
    TrainingJobStatus,
)
from kubemaker.builders import naming
from kubemaker.builders.errors import SpecError, validation_message
from kubemaker.builders.owner import Owner
from kubemaker.builders.training import build_job, build_service
from kubemaker.config import OperatorConfig
from kubemaker.controllers.training_logs import TrainingLogMetrics
from kubemaker.failures import FailureKind, failure
from kubemaker.kube import EVENTS, JOBS, PODS, SERVICES, ApiError, Kube, Resource
from kubemaker.planners.training import REFUSAL_CHECK_SECONDS, plan_training
from kubemaker.planners.training_status import (
    Observation,
    Plan,
    invalid_status,
    parse_time,
    status_body,
)
from kubemaker.planners.training_views import JobView, PodView
from kubemaker.reconcile.bodies import parse_object, resource_version, slim, status_patch
from kubemaker.reconcile.events import Background, EventPoster
from kubemaker.reconcile.queue import WorkQueue, run_workers
from kubemaker_runtime.protocol import AgentReport

logger = logging.getLogger(__name__)

KIND = "TrainingJob"
TRAININGJOBS = Resource(GROUP, VERSION, "trainingjobs")
JOBS_INDEX = "trainingjob_jobs"
PODS_INDEX = "trainingjob_pods"
# A Job this operator created but the watch has not shown yet is trusted to exist for
# this long (so a reconcile in between does not POST it again).
EXPECTATION_SECONDS = 60.0
# Requeue a little after a deadline, so the clock has certainly passed it.
DEADLINE_SLACK = 0.5
# A pod changes state several times in a second (scheduled, initialized, running...):
# events of children are gathered for this long into one reconcile.
CHILD_EVENT_DELAY = 0.5
# Every unfinished TrainingJob is reconciled at least this often, events or not (a
# safety net, as controller-runtime's resync; a reconcile with nothing to do costs no
# API request).
RESYNC_SECONDS = 300.0
STATUS_FIELDS = frozenset(f.alias or name for name, f in TrainingJobStatus.model_fields.items())

Key = tuple[str, str]  # (namespace, child base name)


def _key(namespace: str | None, name: str) -> Key:
    return (namespace or "default", naming.child_base(name))


def _now() -> datetime:
    return datetime.now(UTC)


def series_metrics(meta: Mapping[str, Any]) -> tuple[str, ...]:
    """The metrics whose series the job's annotation asks for."""
    text = str((meta.get("annotations") or {}).get(ANNOTATION_METRIC_SERIES) or "")
    return tuple(name.strip() for name in text.split(",") if name.strip())


class TrainingController:
    """Caches, work queue and reconcile of TrainingJobs."""

    def __init__(
        self,
        kube: Kube,
        config: OperatorConfig,
        *,
        workers: int = 8,
        post_events: bool = True,
    ) -> None:
        self.kube = kube
        self.config = config
        self.workers = workers
        self.queue: WorkQueue[Key] = WorkQueue()
        self.background = Background()
        self.events = EventPoster(kube, KIND, self.background, enabled=post_events)
        self.bodies: dict[Key, dict[str, Any]] = {}
        self.reports: dict[Key, dict[str, tuple[int, AgentReport]]] = {}
        self.expected: dict[Key, dict[str, float]] = {}
        self.jobs_index: kopf.Index[Key, JobView] | None = None
        self.pods_index: kopf.Index[Key, PodView] | None = None
        self.tally = metrics.StatusTally(KIND)
        self.training_metrics = metrics.TrainingMetricSeries()
        self.logs = TrainingLogMetrics(
            kube,
            requeue=self.queue.add,
            requeue_after=self.queue.add_after,
            spawn=self.background.spawn,
        )
        self._workers_task: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None

    # --- lifecycle ---

    def start(
        self, jobs_index: kopf.Index[Key, JobView], pods_index: kopf.Index[Key, PodView]
    ) -> None:
        self.jobs_index = jobs_index
        self.pods_index = pods_index
        self._workers_task = asyncio.create_task(
            run_workers(self.queue, self.workers, self.reconcile), name="trainingjob-workers"
        )
        self._resync_task = asyncio.create_task(self._resync(), name="trainingjob-resync")

    async def stop(self) -> None:
        self.queue.close()
        tasks = [
            t
            for t in (self._workers_task, self._resync_task, *self.background.tasks)
            if t is not None
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _resync(self) -> None:
        while not self.queue.closed:
            await asyncio.sleep(RESYNC_SECONDS)
            for key, body in list(self.bodies.items()):
                if (body.get("status") or {}).get(
                    "trainingJobStatus"
                ) not in TERMINAL_TRAINING_STATUSES:
                    self.queue.add(key)

    # --- what the watches tell us ---

    def observe_training_job(self, event_type: str | None, body: kopf.Body) -> None:
        meta = body.get("metadata") or {}
        key = _key(meta.get("namespace"), str(meta.get("name", "")))
        if event_type == "DELETED":
            self.bodies.pop(key, None)
            self.reports.pop(key, None)
            self.expected.pop(key, None)
            self.queue.discard(key)
            self.tally.forget(key)
            self.logs.forget(key)
            self.training_metrics.forget(key)
            return
        raw = slim(body)
        cached = self.bodies.get(key)
        if cached is not None:
            old, new = resource_version(cached), resource_version(raw)
            if old is not None and new is not None:
                if new < old:
                    return  # an older event than our own last write: nothing new
                if new == old:
                    return  # the echo of our own status patch
        self.bodies[key] = raw
        self.queue.add(key, urgent=True)
        metrics.QUEUE_DEPTH.labels(kind=KIND).set(len(self.queue))

    def observe_child(self, namespace: str | None, labels: kopf.Labels) -> None:
        owner = labels.get(naming.LABEL_TRAINING_JOB)
        if owner:
            key = (namespace or "default", owner)
            if key in self.bodies:
                self.queue.add_after(key, CHILD_EVENT_DELAY)

    def remember_report(self, key: Key, view: PodView) -> None:
        """Keep each agent's report: a stopped job's pods may be gone before a reconcile."""
        if view.agent_report is not None and key in self.bodies:
            self.reports.setdefault(key, {})[view.name] = (view.attempt, view.agent_report)

    # --- reconcile ---

    async def reconcile(self, key: Key) -> None:
        metrics.QUEUE_DEPTH.labels(kind=KIND).set(len(self.queue))
        body = self.bodies.get(key)
        if body is None:
            self.queue.discard(key)
            return
        metrics.RECONCILES.labels(kind=KIND).inc()
        started = time.monotonic()
        try:
            await self._reconcile(key, body)
        except ApiError as exc:
            if exc.not_found and key not in self.bodies:
                return  # deleted while we were reconciling it
            delay = self.queue.add_rate_limited(key)
            if exc.conflict:
                # Our cached copy was stale; the newer event is on its way.
                logger.debug("Conflict on %s/%s, retrying in %.1fs: %s", *key, delay, exc)
            elif exc.temporary:
                metrics.RECONCILE_ERRORS.labels(kind=KIND, error="platform").inc()
                logger.warning(
                    "Kubernetes API trouble on %s/%s, retrying in %.1fs: %s", *key, delay, exc
                )
            else:
                metrics.RECONCILE_ERRORS.labels(kind=KIND, error="internal").inc()
                logger.error(
                    "Kubernetes API refused a request for %s/%s (retrying in %.1fs): %s",
                    *key,
                    delay,
                    exc,
                )
        else:
            self.queue.forget(key)
        finally:
            metrics.RECONCILE_LATENCY.labels(kind=KIND).observe(time.monotonic() - started)

    async def _reconcile(self, key: Key, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        name = str(meta.get("name"))
        namespace = str(meta.get("namespace") or "default")
        generation = meta.get("generation")
        status = body.get("status") or {}
        now = _now()
        try:
            spec = parse_object(TrainingJob, body).spec
        except ValidationError as exc:
            # parse_object validates the whole object: locations already start with "spec".
            found = failure(FailureKind.VALIDATION, validation_message(exc, prefix=""))
            new_status = invalid_status(status, found, generation=generation, now=now)
            if await self._write_status(key, body, new_status):
                self.events.post(body, "Warning", "Failed", str(new_status.failure_reason))
            self.tally.set(key, str(status_body(new_status).get("trainingJobStatus")))
            return

        recorded = series_metrics(meta)
        jobs = list(self._children(self.jobs_index, key))
        pods = list(self._children(self.pods_index, key))
        obs = Observation(
            name=name,
            generation=generation,
            spec=spec,
            status=status,
            jobs=jobs,
            pods=pods,
            now=now,
            config=self.config,
            creation_timestamp=meta.get("creationTimestamp"),
            expected_jobs=self._expected_jobs(key, {j.name for j in jobs}),
            reports=dict(self.reports.get(key, {})),
            log_metrics=self.logs.final(key),
            # Copied only for the jobs whose status records series (a TuningJob's trials).
            log_series=self.logs.series(key) if recorded else {},
            series_metrics=recorded,
            pod_refusals=(
                {}
                if status.get("trainingJobStatus") in TERMINAL_TRAINING_STATUSES
                else await self._pod_refusals(namespace, jobs, pods, now)
            ),
        )
        plan = plan_training(obs)
        if plan.create_attempt == 0 and not status.get("trainingJobStatus"):
            # A new TrainingJob: its Job first (names are deterministic, so a crash in
            # between repeats nothing). The status follows with the Job's first events,
            # in one write with the first progress instead of two.
            await self._create_attempt(key, body, spec, plan)
            self.queue.add_after(key, CHILD_EVENT_DELAY)
        else:
            # Status first: it records the intent (a retry, a stop) before anything is
            # created or deleted, so a crash in between is resumed, not repeated.
            await self._write_status(key, body, plan.status)
            if plan.create_attempt is not None:
                await self._create_attempt(key, body, spec, plan)
        for job_name, uid in plan.delete_jobs:
            deleted = await self.kube.delete(JOBS, namespace, job_name, uid=uid)
            if deleted:
                logger.info("Deleted Job %s/%s", namespace, job_name)
        for pod_name, deadline in plan.expire_pods:
            await self._expire_pod(namespace, pod_name, deadline)
        if plan.delete_service:
            await self.kube.delete(SERVICES, namespace, naming.service_name(name))
        for event in plan.events:
            self.events.post(body, event.type, event.reason, event.message)
        if plan.requeue_after is not None:
            self.queue.add_after(key, plan.requeue_after + DEADLINE_SLACK)
        primary = plan.status.training_job_status
        assert primary is not None
        self.tally.set(key, primary.value)
        if primary in TERMINAL_TRAINING_STATUSES:
            # Whatever the agents reported is in the status now.
            self.reports.pop(key, None)
        self.logs.schedule(key, spec, plan.status, pods, series=bool(obs.series_metrics))
        final = {m.metric_name: m.value for m in plan.status.final_metric_data_list or ()}
        self.training_metrics.set(key, name, {**self.logs.latest(key), **final})

    async def _create_attempt(
        self, key: Key, body: dict[str, Any], spec: TrainingJobSpec, plan: Plan
    ) -> None:
        meta = body["metadata"]
        owner = Owner(meta["name"], meta["namespace"], meta["uid"], kind=KIND)
        attempt = plan.create_attempt
        assert attempt is not None
        try:
            job = build_job(
                spec,
                self.config,
                owner=owner,
                attempt=attempt,
                runtime_used=plan.runtime_used,
                image=plan.status.training_image,
            )
        except SpecError as exc:
            await self._fail_creation(key, body, str(exc))
            return
        if spec.resource_config.instance_count > 1:
            # Peers find each other by name; a single host resolves itself (/etc/hosts).
            await self.kube.get_or_create(SERVICES, owner.namespace, build_service(owner))
        try:
            created_job, created = await self.kube.get_or_create(JOBS, owner.namespace, job)
        except ApiError as exc:
            # Invalid, or refused by an admission policy: the spec must change. (A full
            # ResourceQuota is also a 403, but it frees up: that one is retried.)
            if exc.invalid or (exc.status == 403 and "admission webhook" in exc.message):
                await self._fail_creation(key, body, f"the Job was rejected: {exc.message}")
                return
            raise
        job_name = created_job["metadata"]["name"]
        self.expected.setdefault(key, {})[job_name] = time.monotonic() + EXPECTATION_SECONDS
        if created:
            # Attempts count from 0 everywhere: the pods' label, the log, this event.
            logger.info("Created Job %s/%s (attempt %d)", owner.namespace, job_name, attempt)
            self.events.post(
                body,
                "Normal",
                "JobCreated",
                f"Created Job {job_name} with {spec.resource_config.instance_count} "
                f"pod(s) of {spec.resource_config.instance_type} (attempt {attempt})",
            )

    async def _fail_creation(self, key: Key, body: dict[str, Any], message: str) -> None:
        current = self.bodies.get(key, body)
        meta = current.get("metadata") or {}
        new_status = invalid_status(
            current.get("status") or {},
            failure(FailureKind.CLIENT, message),
            generation=meta.get("generation"),
            now=_now(),
        )
        if await self._write_status(key, current, new_status):
            self.events.post(current, "Warning", "Failed", str(new_status.failure_reason))

    async def _expire_pod(self, namespace: str, name: str, deadline: int) -> None:
        """Stop a pod in place: past its activeDeadlineSeconds the kubelet ends it (as at
        a deletion, with the grace period) and the pod stays, with its logs."""
        patch = {"spec": {"activeDeadlineSeconds": deadline}}
        try:
            await self.kube.merge_patch(PODS, namespace, name, patch)
        except ApiError as exc:
            if exc.not_found:
                return  # gone already
            if exc.invalid:
                # Already has a shorter deadline (it may only be lowered): it is stopping.
                logger.debug("Pod %s/%s keeps its deadline: %s", namespace, name, exc)
                return
            raise
        logger.info("Stopping pod %s/%s (activeDeadlineSeconds %d)", namespace, name, deadline)

    async def _write_status(
        self, key: Key, body: dict[str, Any], status: TrainingJobStatus
    ) -> bool:
        """Patch the status if it changed; returns whether it did."""
        diff = status_patch(body.get("status") or {}, status_body(status), STATUS_FIELDS)
        if not diff:
            return False
        meta = body["metadata"]
        patch = {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "status": diff}
        updated = await self.kube.merge_patch(
            TRAININGJOBS, meta.get("namespace"), meta["name"], patch, subresource="status"
        )
        # Our own write is the freshest copy there is; its watch event will be ignored.
        if key in self.bodies:
            self.bodies[key] = slim(updated)
        return True

    # --- helpers ---

    async def _pod_refusals(
        self, namespace: str, jobs: list[JobView], pods: list[PodView], now: datetime
    ) -> dict[str, str]:
        """Why the cluster refused the pods of a Job that has none yet (its newest
        FailedCreate event): admission refusals are only ever told as events."""
        found: dict[str, str] = {}
        for job in jobs:
            created = parse_time(job.created)
            if (
                job.deleting
                or job.suspended
                or job.complete
                or job.failed_reason
                or created is None
                or (now - created).total_seconds() < REFUSAL_CHECK_SECONDS
                or any(p.attempt == job.attempt for p in pods)
            ):
                continue
            events = await self.kube.list(
                EVENTS,
                namespace,
                field_selector=f"involvedObject.uid={job.uid},reason=FailedCreate",
            )
            if events:
                newest = max(events, key=lambda e: str(e.get("lastTimestamp") or ""))
                found[job.name] = str(newest.get("message") or "FailedCreate")
        return found

    @staticmethod
    def _children(index: kopf.Index[Key, Any] | None, key: Key) -> Iterable[Any]:
        if index is None or key not in index:
            return ()
        return index[key]

    def _expected_jobs(self, key: Key, observed: set[str]) -> frozenset[str]:
        pending = self.expected.get(key)
        if not pending:
            return frozenset()
        now = time.monotonic()
        for job_name in [n for n, deadline in pending.items() if n in observed or deadline < now]:
            del pending[job_name]
        if not pending:
            self.expected.pop(key, None)
            return frozenset()
        return frozenset(pending)


# --- kopf handlers ------------------------------------------------------------------------


def controller(memo: kopf.Memo) -> TrainingController:
    return cast(TrainingController, memo["training"])


async def index_jobs(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Key, JobView]:
    return {(namespace or "default", labels[naming.LABEL_TRAINING_JOB]): JobView.from_body(body)}


async def index_pods(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> dict[Key, PodView]:
    key = (namespace or "default", labels[naming.LABEL_TRAINING_JOB])
    view = PodView.from_body(body)
    controller(memo).remember_report(key, view)
    return {key: view}


async def on_training_job(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    controller(memo).observe_training_job(type, body)


async def on_job(namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    controller(memo).observe_child(namespace, labels)


async def on_pod(
    type: str | None,
    namespace: str | None,
    labels: kopf.Labels,
    body: kopf.Body,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    ctl = controller(memo)
    if type == "DELETED":
        # The last state of a pod (indexes drop deleted objects): its report, if any.
        owner = labels.get(naming.LABEL_TRAINING_JOB)
        if owner:
            ctl.remember_report((namespace or "default", owner), PodView.from_body(body))
    ctl.observe_child(namespace, labels)


async def on_startup(memo: kopf.Memo, settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    # Server-side filtering: only the Jobs and pods this operator manages (a TrainingJob's
    # or a BatchTransform's; one selector per resource) are listed and watched.
    settings.watching.label_selectors["batch", "v1", "jobs"] = naming.MANAGED_PODS
    settings.watching.label_selectors["v1", "pods"] = naming.MANAGED_PODS
    controller(memo).start(kwargs[JOBS_INDEX], kwargs[PODS_INDEX])


async def on_cleanup(memo: kopf.Memo, **_: Any) -> None:
    await controller(memo).stop()


async def probe_queue(memo: kopf.Memo, **_: Any) -> dict[str, int]:
    ctl = controller(memo)
    return {"queued": len(ctl.queue), "tracked": len(ctl.bodies)}


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the TrainingJob handlers with ``registry``."""
    selector = {naming.LABEL_TRAINING_JOB: kopf.PRESENT}
    kopf.on.startup(registry=registry, id="trainingjob_startup")(on_startup)
    kopf.on.cleanup(registry=registry, id="trainingjob_cleanup")(on_cleanup)
    kopf.on.probe(registry=registry, id="trainingjobs")(probe_queue)
    kopf.index("batch", "v1", "jobs", labels=selector, id=JOBS_INDEX, registry=registry)(index_jobs)
    kopf.index("v1", "pods", labels=selector, id=PODS_INDEX, registry=registry)(index_pods)
    kopf.on.event(GROUP, VERSION, "trainingjobs", registry=registry, id="trainingjob_event")(
        on_training_job
    )
    kopf.on.event("batch", "v1", "jobs", labels=selector, registry=registry, id="trainingjob_job")(
        on_job
    )
    kopf.on.event("v1", "pods", labels=selector, registry=registry, id="trainingjob_pod")(on_pod)
