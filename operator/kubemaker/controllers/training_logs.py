"""Training metrics from the algorithm's log, read through the API (``pods/log``).

The log of the first host's ``algorithm`` container is searched with the job's
``metricDefinitions`` (:mod:`kubemaker.metric_definitions`):

- while it runs, every :data:`LIVE_SECONDS` (the lines written since the previous
  read), for the live ``kubemaker_training_metric`` gauges; every :data:`SERIES_SECONDS`
  for a job whose ``kubemaker.io/metric-series`` annotation asks for the series of some
  metrics in its status (a TuningJob's trials: early stopping judges them by it);
- once more when it has ended (the end of its log): the last values go into
  ``status.finalMetricDataList`` (the agent's reported final metrics override them).

Lines are read with the kubelet's timestamps and each is fed to the parser once (reads
overlap so that none falls in between), so a metric's n-th value is its step n.

Reads run in the background, on the API client's log threads, and requeue the job when
done, so a reconcile never waits for a kubelet. A read that fails (a cluster without
kubelets, such as the KWOK control plane of the tests; a pod already gone) is logged at
debug level and not retried: the job's metrics then come from the reads that worked and
the agent's report. Only jobs with metricDefinitions are read, and only while they run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from kubemaker.api.training import TERMINAL_TRAINING_STATUSES, TrainingJobSpec, TrainingJobStatus
from kubemaker.builders.errors import SpecError
from kubemaker.builders.training import ALGORITHM_CONTAINER
from kubemaker.kube import ApiError, Kube
from kubemaker.metric_definitions import MetricParser
from kubemaker.planners.training_views import PodView

logger = logging.getLogger(__name__)

Key = tuple[str, str]

# Bounds of one read: the kubelet keeps the last lines, cut at limitBytes.
LOG_TAIL_LINES = 1000
LOG_LIMIT_BYTES = 256 * 1024
# Live reads of a running job: CloudWatch's resolution in SageMaker. A read asks for
# the lines since the previous one, with some overlap so that none falls in between.
LIVE_SECONDS = 60.0
SERIES_SECONDS = 10.0
SINCE_OVERLAP_SECONDS = 5


@dataclass(frozen=True)
class LogRead:
    """One read of the algorithm's log: its pod and how much of the log."""

    pod: str
    final: bool
    since_seconds: int | None = None


@dataclass
class JobLog:
    """What has been read of one TrainingJob's log (the current attempt's)."""

    parser: MetricParser
    attempt: int = 0
    final_pod: str | None = None  # the pod whose ended log has been read
    last_read: float | None = None  # monotonic time of the last live read
    last_stamp: tuple[str, str] | None = None  # the newest line fed: (seconds, nanoseconds)
    reading: bool = False
    interval: float = LIVE_SECONDS


def plan_log_read(
    pods: Sequence[PodView], attempt: int, job: JobLog, *, now: float, live: bool = True
) -> tuple[LogRead | None, float | None]:
    """The read due now for ``attempt`` (if any), and in how long the next live one is."""
    first = next(
        (p for p in pods if p.attempt == attempt and p.index == 0 and p.algorithm is not None),
        None,
    )
    if first is None or first.algorithm is None:
        return None, None
    if first.algorithm.state == "terminated":
        if job.final_pod == first.name and job.attempt == attempt:
            return None, None
        return LogRead(first.name, final=True), None
    if not live or first.algorithm.state != "running":
        return None, None
    since = None
    if job.attempt == attempt and job.last_read is not None:
        wait = job.last_read + job.interval - now
        if wait > 0:
            return None, wait
        since = math.ceil(now - job.last_read) + SINCE_OVERLAP_SECONDS
    return LogRead(first.name, final=False, since_seconds=since), job.interval


def split_stamp(line: str) -> tuple[tuple[str, str] | None, str]:
    """A line read with ``timestamps=true``: its RFC 3339 time as a sortable key, and the
    text. The kubelet trims trailing zeros of the nanoseconds, so they are padded back."""
    stamp, sep, text = line.partition(" ")
    if not sep or not stamp.endswith("Z") or "T" not in stamp:
        return None, line
    seconds, _, fraction = stamp[:-1].partition(".")
    return (seconds, fraction.ljust(9, "0")), text


def new_lines(text: str, job: JobLog) -> list[str]:
    """The lines of a read not fed before (the newest fed line's time is kept in ``job``)."""
    lines = []
    for line in text.splitlines():
        stamp, content = split_stamp(line)
        if stamp is not None:
            if job.last_stamp is not None and stamp <= job.last_stamp:
                continue
            job.last_stamp = stamp
        lines.append(content)
    return lines


class TrainingLogMetrics:
    """Reads the logs of running TrainingJobs that have metricDefinitions."""

    def __init__(
        self,
        kube: Kube,
        *,
        requeue: Callable[[Key], None],
        requeue_after: Callable[[Key, float], None],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self._kube = kube
        self._requeue = requeue
        self._requeue_after = requeue_after
        self._spawn = spawn
        self._jobs: dict[Key, JobLog] = {}

    def __len__(self) -> int:
        return len(self._jobs)

    def latest(self, key: Key) -> dict[str, float]:
        """The last value of each metric found in the current attempt's log."""
        job = self._jobs.get(key)
        return dict(job.parser.latest) if job is not None else {}

    def series(self, key: Key) -> dict[int, dict[str, list[tuple[int, float]]]]:
        """Each metric's values so far, by attempt (for :attr:`Observation.log_series`)."""
        job = self._jobs.get(key)
        if job is None or not job.parser.series:
            return {}
        return {job.attempt: {k: list(v) for k, v in job.parser.series.items()}}

    def final(self, key: Key) -> dict[int, dict[str, float]]:
        """The last values, by attempt, once the algorithm has ended (for
        :attr:`Observation.log_metrics`: the status gets no live values)."""
        job = self._jobs.get(key)
        if job is None or job.final_pod is None:
            return {}
        return {job.attempt: self.latest(key)}

    def forget(self, key: Key) -> None:
        self._jobs.pop(key, None)

    def schedule(
        self,
        key: Key,
        spec: TrainingJobSpec,
        status: TrainingJobStatus,
        pods: Sequence[PodView],
        *,
        series: bool = False,
    ) -> None:
        """Start the read that is due (after a reconcile wrote ``status``); ``series``:
        the job's status records metric series, so its log is read more often."""
        definitions = spec.algorithm_specification.metric_definitions
        job = self._jobs.get(key)
        terminal = status.training_job_status in TERMINAL_TRAINING_STATUSES
        if not definitions or (terminal and job is None):
            return  # a finished job's metrics are in its status (also after a restart)
        if job is None:
            try:
                job = self._jobs[key] = JobLog(MetricParser(definitions))
            except SpecError:
                return  # the status says why (plan_training fails the job)
        job.interval = SERIES_SECONDS if series else LIVE_SECONDS
        if job.reading:
            return
        now = time.monotonic()
        attempt = status.retry_count or 0
        read, wake = plan_log_read(pods, attempt, job, now=now, live=not terminal)
        if wake is not None:
            self._requeue_after(key, wake)
        if read is None:
            if terminal:
                del self._jobs[key]  # the last values are in finalMetricDataList now
            return
        if job.attempt != attempt:
            job.attempt, job.final_pod, job.last_read, job.last_stamp = attempt, None, None, None
            job.parser.clear()
        if read.final:
            job.final_pod = read.pod
        else:
            job.last_read = now
        job.reading = True
        self._spawn(self._read(key, job, read))

    async def _read(self, key: Key, job: JobLog, read: LogRead) -> None:
        namespace = key[0]
        try:
            text = await self._kube.read_log(
                namespace,
                read.pod,
                container=ALGORITHM_CONTAINER,
                tail_lines=LOG_TAIL_LINES,
                limit_bytes=LOG_LIMIT_BYTES,
                since_seconds=read.since_seconds,
                timestamps=True,
            )
        except ApiError as exc:
            logger.debug(
                "Could not read the log of %s/%s for training metrics: %s", namespace, read.pod, exc
            )
            text = ""
        finally:
            job.reading = False
        if self._jobs.get(key) is not job:
            return  # deleted meanwhile
        job.parser.feed_lines(new_lines(text, job))
        # The reconcile puts the values in the gauges (and, when final, the status).
        self._requeue(key)
