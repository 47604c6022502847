"""The BatchTransform controller: kopf handlers feeding a work queue, and the reconcile.

As the other controllers: kopf indexes keep small views of the children (the Job and
pods labelled ``kubemaker.io/batch-transform``), ``on.event`` handlers only enqueue, a
fixed pool of workers reconciles with the pure :func:`plan_transform`, and kopf writes
nothing to the objects (children go with their ownerReferences).

What the planner cannot see in the children it is given here:

- the model of a ``trainingJobRef`` / ``tuningJobRef`` (read while there is no Job; an
  event of the referenced job enqueues the BatchTransforms that wait for it);
- the progress of the running transformers, read from their ``/metrics`` at most every
  :data:`~kubemaker.planners.transform.PROGRESS_SECONDS` (a pod that cannot be read is
  skipped: its report gives the final count when it ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
import kopf
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from kubemaker import metrics
from kubemaker.api.common import GROUP, VERSION
from kubemaker.api.transform import BatchTransform, BatchTransformStatus
from kubemaker.builders import transform as tb
from kubemaker.builders.errors import validation_message
from kubemaker.config import OperatorConfig
from kubemaker.failures import FailureKind, failure
from kubemaker.kube import JOBS, ApiError, Kube, Resource
from kubemaker.planners.training_views import JobView
from kubemaker.planners.transform import (
    PROGRESS_SECONDS,
    TERMINAL,
    Observation,
    Progress,
    plan_transform,
)
from kubemaker.planners.transform_views import TransformPodView, owner_key
from kubemaker.reconcile import models
from kubemaker.reconcile.bodies import parse_object
from kubemaker.reconcile.controller import Key, KindController

logger = logging.getLogger(__name__)

KIND = "BatchTransform"
BATCHTRANSFORMS = Resource(GROUP, VERSION, "batchtransforms")
JOBS_INDEX = "batchtransform_jobs"
PODS_INDEX = "batchtransform_pods"
CHILD_EVENT_DELAY = 0.5
DEADLINE_SLACK = 0.2
SCRAPE_TIMEOUT_SECONDS = 5.0
MAX_METRICS_BYTES = 1024 * 1024
STATUS_FIELDS = frozenset(f.alias or name for name, f in BatchTransformStatus.model_fields.items())


class TransformController(KindController):
    """Caches, work queue and reconcile of BatchTransforms."""

    kind = KIND
    resource = BATCHTRANSFORMS
    status_fields = STATUS_FIELDS

    def __init__(
        self, kube: Kube, config: OperatorConfig, *, workers: int = 8, post_events: bool = True
    ) -> None:
        super().__init__(kube, workers=workers, post_events=post_events)
        self.config = config
        self.waiters = models.Waiters()  # the TrainingJobs and TuningJobs of model refs
        self.live: dict[Key, tuple[float, dict[int, Progress]]] = {}
        self.jobs_index: kopf.Index[Key, JobView] | None = None
        self.pods_index: kopf.Index[Key, TransformPodView] | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self, jobs: kopf.Index[Key, JobView], pods: kopf.Index[Key, Any]) -> None:
        self.jobs_index = jobs
        self.pods_index = pods
        self.start_workers(
            settled=lambda body: (body.get("status") or {}).get("transformJobStatus") in TERMINAL
        )

    async def stop(self) -> None:
        await super().stop()
        if self._session is not None:
            await self._session.close()

    # --- what the watches tell us ---

    def observe_transform(self, event_type: str | None, body: kopf.Body) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or "default"), str(meta.get("name", "")))
        self.observe(key, event_type, body)

    def forget(self, key: Key, body: kopf.Body) -> None:
        self.live.pop(key, None)
        self.waiters.forget(key)
        for state in ("total", "completed", "failed"):
            _remove(metrics.TRANSFORM_OBJECTS, *key, state)
        _remove(metrics.TRANSFORM_RECORDS, *key)

    def observe_child(self, namespace: str | None, body: kopf.Body) -> None:
        owner = owner_key(body)
        key = (namespace or "default", str(owner))
        if owner and key in self.bodies:
            self.queue.add_after(key, CHILD_EVENT_DELAY)

    def observe_model_job(self, namespace: str | None, name: str) -> None:
        for key in self.waiters.of(namespace, name):
            self.queue.add(key)

    # --- reconcile ---

    async def _reconcile(self, key: Key, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        namespace, name = key
        stored = BatchTransformStatus.model_validate(body.get("status") or {})
        try:
            spec = parse_object(BatchTransform, body).spec
        except ValidationError as exc:
            if stored.transform_job_status is None:
                message = failure(FailureKind.VALIDATION, validation_message(exc, prefix="")).reason
                status = stored.model_copy(
                    update={"transform_job_status": "Failed", "failure_reason": message}
                )
                if await self._write_status(key, body, status):
                    self.events.post(body, "Warning", "Failed", message)
            return
        job = next(
            (j for j in self.children(self.jobs_index, key) if j.name == tb.job_name(name)), None
        )
        pods = list(self.children(self.pods_index, key))
        running = stored.transform_job_status not in TERMINAL
        model = None
        if job is None and running and not spec.stop:
            model = await models.resolve_source(
                self.kube, namespace, spec.model, self.config, where="spec",
                wait=self.waiters.wait(key),
            )  # fmt: skip
        obs = Observation(
            name=name,
            namespace=namespace,
            uid=str(meta.get("uid") or ""),
            generation=meta.get("generation"),
            spec=spec,
            status=stored,
            job=job,
            pods=pods,
            config=self.config,
            now=datetime.now(UTC),
            model=model,
            progress=await self._progress(key, pods) if running and job else {},
        )
        plan = plan_transform(obs)
        # Status first: the Job's name is deterministic, so a crash before it is
        # created only delays it.
        await self._write_status(key, body, plan.status)
        if (manifest := plan.create) is not None:
            try:
                _, created = await self.kube.get_or_create(JOBS, namespace, manifest)
            except ApiError as exc:
                # Invalid, or refused by an admission policy: the spec must change. (A
                # full ResourceQuota is also a 403, but it frees up: that one is retried.)
                if not (exc.invalid or (exc.status == 403 and "admission webhook" in exc.message)):
                    raise
                rejected = models.ModelState(error=f"the Job was rejected: {exc.message}")
                plan = plan_transform(replace(obs, model=rejected))
                await self._write_status(key, self.bodies.get(key, body), plan.status)
            else:
                if created and plan.created_event is not None:
                    logger.info("Created Job %s/%s", namespace, manifest["metadata"]["name"])
                    event = plan.created_event
                    self.events.post(body, event.type, event.reason, event.message)
        if plan.suspend and job is not None:
            await self.kube.merge_patch(JOBS, namespace, job.name, {"spec": {"suspend": True}})
        if plan.delete_job and job is not None:
            await self.kube.delete(JOBS, namespace, job.name, uid=job.uid, propagation="Foreground")
        for event in plan.events:
            self.events.post(body, event.type, event.reason, event.message)
        self.tally.set(key, str(plan.status.transform_job_status))
        counters = plan.status.object_counters
        if counters is not None:
            for state in ("total", "completed", "failed"):
                metrics.TRANSFORM_OBJECTS.labels(namespace, name, state).set(
                    getattr(counters, state)
                )
        metrics.TRANSFORM_RECORDS.labels(namespace, name).set(plan.status.records_transformed or 0)
        if plan.requeue_after is not None:
            self.queue.add_after(key, plan.requeue_after + DEADLINE_SLACK)

    async def _progress(self, key: Key, pods: list[TransformPodView]) -> dict[int, Progress]:
        """The running transformers' progress, read again when the last read is old."""
        read_at, progress = self.live.get(key, (0.0, {}))
        if time.monotonic() - read_at < PROGRESS_SECONDS * 0.9:
            return progress
        targets = {p.index: str(p.ip) for p in pods if p.running and p.ip and p.index is not None}
        fresh = await read_progress(await self._http(), targets, timeout=SCRAPE_TIMEOUT_SECONDS)
        # An instance not read this time keeps what it last said.
        progress = {**progress, **fresh}
        self.live[key] = (time.monotonic(), progress)
        return progress

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _write_status(
        self, key: Key, body: dict[str, Any], status: BatchTransformStatus
    ) -> bool:
        new = status.model_dump(by_alias=True, mode="json", exclude_none=True)
        return await self.write_status(key, body, new)


async def read_progress(
    session: aiohttp.ClientSession,
    targets: dict[int, str],
    *,
    timeout: float,  # noqa: ASYNC109 (per request: aiohttp's own timeout)
    port: int = tb.METRICS_PORT,
) -> dict[int, Progress]:
    """GET every transformer's ``/metrics`` at once (completion index -> pod IP); an
    instance that cannot be read is left out, and logged at debug level."""
    client_timeout = aiohttp.ClientTimeout(total=timeout)

    async def one(ip: str) -> Progress:
        host = f"[{ip}]" if ":" in ip else ip
        url = f"http://{host}:{port}/metrics"
        async with session.get(url, timeout=client_timeout) as response:
            if response.status != 200:
                raise ValueError(f"HTTP {response.status}")
            body = bytearray()
            async for chunk in response.content.iter_any():
                body += chunk
                if len(body) > MAX_METRICS_BYTES:
                    raise ValueError(f"more than {MAX_METRICS_BYTES} bytes")
        return parse_progress(body.decode("utf-8", "replace"))

    indexes = sorted(targets)
    answers = await asyncio.gather(*(one(targets[i]) for i in indexes), return_exceptions=True)
    result: dict[int, Progress] = {}
    for index, answer in zip(indexes, answers, strict=True):
        if isinstance(answer, Progress):
            result[index] = answer
        elif isinstance(answer, aiohttp.ClientError | TimeoutError | ValueError):
            logger.debug("transformer %d at %s: no progress: %r", index, targets[index], answer)
        else:
            raise answer
    return result


def parse_progress(text: str) -> Progress:
    """A transformer's Prometheus text -> its :class:`Progress`; ValueError when the
    text is not a transformer's."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "kubemaker_transform_objects":
                values[sample.labels.get("state", "")] = sample.value
            elif sample.name == "kubemaker_transform_records_total":
                values["records"] = sample.value
    if not values:
        raise ValueError("no kubemaker_transform_* metrics")
    if not all(math.isfinite(v) and v >= 0 for v in values.values()):
        raise ValueError(f"a count that is not one: {values}")
    return Progress(
        objects_found=int(values.get("found", 0)),
        objects_total=int(values.get("total", 0)),
        objects_done=int(values.get("done", 0)),
        records=int(values.get("records", 0)),
    )


def _remove(gauge: Any, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never set
        gauge.remove(*labels)


# --- kopf handlers ------------------------------------------------------------------------


def controller(memo: kopf.Memo) -> TransformController:
    return cast(TransformController, memo["transforms"])


async def index_jobs(namespace: str | None, body: kopf.Body, **_: Any) -> dict[Key, JobView] | None:
    owner = owner_key(body)
    return {(namespace or "default", owner): JobView.from_body(body)} if owner else None


async def index_pods(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[Key, TransformPodView] | None:
    owner = owner_key(body)
    return {(namespace or "default", owner): TransformPodView.from_body(body)} if owner else None


async def on_transform(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    controller(memo).observe_transform(type, body)


async def on_child(namespace: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    controller(memo).observe_child(namespace, body)


async def on_training_job(
    namespace: str | None, name: str | None, memo: kopf.Memo, **_: Any
) -> None:
    controller(memo).observe_model_job(namespace, str(name))


async def on_tuning_job(namespace: str | None, name: str | None, memo: kopf.Memo, **_: Any) -> None:
    controller(memo).observe_model_job(namespace, f"tuningjob/{name}")


async def on_startup(memo: kopf.Memo, **kwargs: Any) -> None:
    controller(memo).start(kwargs[JOBS_INDEX], kwargs[PODS_INDEX])


async def on_cleanup(memo: kopf.Memo, **_: Any) -> None:
    await controller(memo).stop()


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the BatchTransform handlers with ``registry``."""
    selector = {tb.LABEL_BATCH_TRANSFORM: kopf.PRESENT}
    kopf.on.startup(registry=registry, id="batchtransform_startup")(on_startup)
    kopf.on.cleanup(registry=registry, id="batchtransform_cleanup")(on_cleanup)
    kopf.index("batch", "v1", "jobs", labels=selector, id=JOBS_INDEX, registry=registry)(index_jobs)
    kopf.index("v1", "pods", labels=selector, id=PODS_INDEX, registry=registry)(index_pods)
    kopf.on.event(GROUP, VERSION, "batchtransforms", registry=registry, id="batchtransform_event")(
        on_transform
    )
    kopf.on.event(
        "batch", "v1", "jobs", labels=selector, registry=registry, id="batchtransform_job"
    )(on_child)
    kopf.on.event("v1", "pods", labels=selector, registry=registry, id="batchtransform_pod")(
        on_child
    )
    kopf.on.event(
        GROUP, VERSION, "trainingjobs", registry=registry, id="batchtransform_trainingjob"
    )(on_training_job)
    kopf.on.event(GROUP, VERSION, "tuningjobs", registry=registry, id="batchtransform_tuningjob")(
        on_tuning_job
    )
