"""A model source resolved: ``modelDataUrl`` + image, or a job's model once it is done.

Shared by the Endpoint and BatchTransform controllers. A ``trainingJobRef`` is read
from the API; a ``tuningJobRef`` is its best trial's TrainingJob once the TuningJob has
ended. What is read is named through ``wait`` (a TrainingJob's name, or
``tuningjob/<name>``), so that the caller can enqueue its object when that one changes
(:class:`Waiters`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubemaker.api.common import GROUP, VERSION, ModelSource
from kubemaker.builders import endpoint as eb
from kubemaker.config import OperatorConfig
from kubemaker.kube import Kube, Resource
from kubemaker_runtime import contract

Key = tuple[str, str]  # (namespace, name) of the object that waits
TRAININGJOBS = Resource(GROUP, VERSION, "trainingjobs")
TUNINGJOBS = Resource(GROUP, VERSION, "tuningjobs")


@dataclass(frozen=True)
class ModelState:
    """A model source, resolved by the controller (job references read)."""

    model: eb.ServedModel | None = None
    waiting: str | None = None  # e.g. "TrainingJob bank is InProgress"
    error: str | None = None  # the reference cannot work: names the job and why


class Waiters:
    """Which objects read which jobs: a change of the job wakes them."""

    def __init__(self) -> None:
        self._by_job: dict[tuple[str, str], set[Key]] = {}

    def wait(self, key: Key) -> Callable[[str], None]:
        """The ``wait`` of :func:`resolve_source` for the object ``key``."""
        return lambda job: self._by_job.setdefault((key[0], job), set()).add(key)

    def of(self, namespace: str | None, job: str) -> set[Key]:
        return self._by_job.get((namespace or "default", job), set())

    def forget(self, key: Key) -> None:
        for waiting in self._by_job.values():
            waiting.discard(key)


async def resolve_source(
    kube: Kube,
    namespace: str,
    source: ModelSource,
    config: OperatorConfig,
    *,
    where: str,
    wait: Callable[[str], None],
    field: str | None = None,
) -> ModelState:
    """The model of ``source``; ``where`` names it in a job reference's errors (e.g.
    ``variant AllTraffic``), ``field`` (default ``where``) in a catalog name's."""
    if source.tuning_job_ref is not None:
        tuning_name = source.tuning_job_ref.name
        wait(f"tuningjob/{tuning_name}")
        best, state = best_trial(await kube.get(TUNINGJOBS, namespace, tuning_name), tuning_name)
        if best is None:
            return state
        wait(best)
        return job_model(await kube.get(TRAININGJOBS, namespace, best), best, source, config, where)
    if source.training_job_ref is not None:
        job_name = source.training_job_ref.name
        wait(job_name)
        job = await kube.get(TRAININGJOBS, namespace, job_name)
        return job_model(job, job_name, source, config, where)
    try:
        return ModelState(model=eb.resolve_model(source, config, field=field or where))
    except Exception as exc:  # SpecError: an unknown catalog name
        return ModelState(error=str(exc))


def job_model(
    job: dict[str, Any] | None, name: str, source: ModelSource, config: OperatorConfig, where: str
) -> ModelState:
    """The model a Completed TrainingJob trained, served by its own image unless
    ``source`` names another; or why there is none (yet)."""
    if job is None:
        return ModelState(error=f"trainingJobRef: TrainingJob {name} does not exist")
    status = job.get("status") or {}
    state = status.get("trainingJobStatus")
    if state in ("Failed", "Stopped"):
        reason = status.get("failureReason") or state
        return ModelState(error=f"trainingJobRef: TrainingJob {name} is {state}: {reason}")
    artifacts = (status.get("modelArtifacts") or {}).get("s3ModelArtifacts")
    if state != "Completed" or not artifacts:
        return ModelState(waiting=f"TrainingJob {name} is {state or 'not started'}")
    spec = job.get("spec") or {}
    algo = spec.get("algorithmSpecification") or {}
    environment = dict(spec.get("environment") or {})
    if algo.get("entryPoint"):
        environment.setdefault(contract.SERVING_PROGRAM_ENV, algo["entryPoint"])
    if algo.get("sourceDir"):
        environment.setdefault(contract.SERVING_SUBMIT_DIRECTORY_ENV, algo["sourceDir"])
    image = status.get("trainingImage") or algo.get("trainingImage") or ""
    trained = eb.ServedModel(str(artifacts), str(image), environment)
    try:
        return ModelState(model=eb.resolve_model(source, config, field=where, job_model=trained))
    except Exception as exc:
        return ModelState(error=str(exc))


def best_trial(tuning: dict[str, Any] | None, name: str) -> tuple[str | None, ModelState]:
    """The best trial of a finished TuningJob, or why there is none (yet)."""
    if tuning is None:
        return None, ModelState(error=f"tuningJobRef: TuningJob {name} does not exist")
    status = tuning.get("status") or {}
    state = status.get("hyperParameterTuningJobStatus")
    best = (status.get("bestTrainingJob") or {}).get("trainingJobName")
    if state == "Failed":
        reason = status.get("failureReason") or state
        return None, ModelState(error=f"tuningJobRef: TuningJob {name} is Failed: {reason}")
    if state not in ("Completed", "Stopped"):
        return None, ModelState(waiting=f"TuningJob {name} is {state or 'not started'}")
    if not best:
        return None, ModelState(
            error=f"tuningJobRef: TuningJob {name} is {state} with no trial that has an objective"
        )
    return str(best), ModelState()
