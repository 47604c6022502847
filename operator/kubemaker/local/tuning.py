"""``kubemaker local tune``: a TuningJob's search on this machine, with real trials.

The search is the operator's. At every step each trial becomes the TrainingJob body the
cluster would show (its manifest, its status, ``status.metricSeries`` read from its log
so far, ``spec.stop`` once it is being stopped, the stopped-early annotation), then a
:class:`~kubemaker.planners.tuning_views.TrialView` through the controller's own
``TrialView.from_body``, and the planner the controller calls,
:func:`kubemaker.planners.tuning.plan_tuning`, says what to do:

- each TrainingJob in ``plan.create`` runs as ``kubemaker local train`` in a process of
  its own (in a session of its own: Ctrl-C reaches this command, which stops them);
- each trial in ``plan.stop`` and ``plan.stop_early`` (the median rule, Hyperband) gets
  SIGINT, which stops ``local train`` as Ctrl-C does: the algorithm gets SIGTERM and its
  grace period, and the trial ends ``Stopped``;
- ``plan.status`` is the search's status, until it is Completed, Failed or Stopped.

The loop wakes as soon as a trial ends, when a trial logs a new metric value (at most
every :data:`REPLAN_SECONDS`) and at least every :data:`POLL_SECONDS`. Ctrl-C asks the
planner to stop (``spec.stop``): every running trial is stopped and the search ends
``Stopped``; a second Ctrl-C is passed on to the trials, which then kill their algorithm.

Under ``<workdir>/<tuning job>/``, rewritten as the search goes:

    tuning.json        a List: the TuningJob with its status, then every trial's
                       TrainingJob with its status and metric series (what
                       ``kubemaker tuning plot --dir`` reads)
    <trial>.yaml       the trial's TrainingJob manifest, as the planner built it
    <trial>.log        the output of its ``kubemaker local train``
    <trial>/           its job directory (trainingjob.json, the hosts' files and logs)

Why one module of this size: one search is one loop over its trial processes, their
reader threads, Ctrl-C and the record, which share its state; its decisions are the
planner's, and each trial is ``kubemaker local train``'s.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from kubemaker.api import API_VERSION, MetricDefinition, TrainingJob, TrainingJobSpec, TuningJob
from kubemaker.api.training import ANNOTATION_METRIC_SERIES
from kubemaker.api.tuning import TrainingJobTemplate, TuningJobSpec, TuningJobStatus
from kubemaker.builders import tuning as tb
from kubemaker.config import OperatorConfig
from kubemaker.local import record
from kubemaker.local.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    LocalError,
    ManifestError,
)
from kubemaker.local.manifest import parse_resource
from kubemaker.local.progress import Display, format_duration
from kubemaker.local.signals import signals_handled
from kubemaker.metric_definitions import MetricParser
from kubemaker.planners.tuning import TERMINAL, Observation, Parent, Plan, plan_tuning
from kubemaker.planners.tuning_views import ANNOTATION_STOPPED_EARLY, TrialView

logger = logging.getLogger(__name__)

JSON = dict[str, Any]
TUNING_RECORD = record.TUNING_RECORD
NAMESPACE = "default"
POLL_SECONDS = 1.0
# A new metric value wakes the loop at most this often, and never sooner than
# PLAN_SHARE times what the last plan took (a Hyperband plan replays every trial's
# series: planning must not take the CPU the trials train with).
REPLAN_SECONDS = 0.25
PLAN_SHARE = 4.0
# A trial asked to stop twice (SIGINT, then SIGINT again: its algorithm is killed), then
# killed outright, when this command itself must end (an error in the loop).
STOP_WAIT_SECONDS = (10.0, 20.0)
LOG_TAIL_LINES = 20
# What `kubemaker local train --no-progress` prints to stderr once its Ctrl-C handler is
# in place (kubemaker.local.progress.Display, at the first phase): a SIGINT before that
# would interrupt its start-up with a traceback rather than stop it. A stop asked for
# earlier waits for this line.
READY_LINE = b"kubemaker: Downloading ("


@dataclass
class Trial:
    """One trial's ``kubemaker local train`` process and what it showed so far."""

    name: str
    index: int
    manifest: JSON
    job_dir: Path
    log_path: Path
    parser: MetricParser
    created: datetime
    started: float = field(default_factory=time.monotonic)
    process: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = None  # stdout: the algorithm's log, then the summary
    errors: threading.Thread | None = None  # stderr: kubemaker's notes
    ready: bool = False  # its Ctrl-C handler is in place
    pending: int = 0  # SIGINTs to send once it is
    feeding: bool = True  # until its summary: what follows is not the algorithm's log
    ended: bool = False
    reported: bool = False  # its end was printed
    duration: float | None = None
    status: JSON = field(default_factory=dict)  # its record's status, once it ended
    stop_requested: bool = False
    stopped_early: str | None = None
    metric: str = ""  # its objective metric (its definition's)

    def body(self) -> JSON:
        """The TrainingJob as ``kubectl get trainingjob -o json`` would show it now."""
        body = copy.deepcopy(self.manifest)
        meta = body.setdefault("metadata", {})
        meta["creationTimestamp"] = _iso(self.created)
        if self.stopped_early is not None:
            meta.setdefault("annotations", {})[ANNOTATION_STOPPED_EARLY] = self.stopped_early
        if self.stop_requested:
            body["spec"]["stop"] = True
        status = dict(self.status)
        if not self.ended:
            status = {
                "trainingJobStatus": "Stopping" if self.stop_requested else "InProgress",
                "trainingStartTime": _iso(self.created),
            }
        series = [
            {"metricName": name, "steps": [s for s, _ in points], "values": [v for _, v in points]}
            for name, points in sorted(self.parser.series.items())
        ]
        if series:
            status["metricSeries"] = series
        body["status"] = status
        return body


def _iso(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


class LocalTuningJob:
    def __init__(
        self,
        job: TuningJob,
        *,
        workdir: Path,
        config: OperatorConfig,
        config_path: str | None = None,
        manifest: Path | None = None,
    ) -> None:
        self.job = job
        self.spec = job.spec
        self.name = job.metadata.name
        self.uid = job.metadata.uid or str(uuid.uuid4())
        self.config_path = config_path
        self.dir = workdir.resolve() / self.name
        self.source = str(manifest) if manifest is not None else self.name
        self.metric = (
            self.spec.hyper_parameter_tuning_job_config.hyper_parameter_tuning_job_objective
        ).metric_name
        self.trials: dict[str, Trial] = {}
        self.status = TuningJobStatus()
        self.created = datetime.now(UTC)
        self.started = time.monotonic()
        self.interrupts = 0  # Ctrl-C (or SIGTERM) so far, counted by the handler
        self._interrupts_seen = 0
        self._replan_seconds = REPLAN_SECONDS
        self._parents_read: dict[str, Parent] | None = None
        self._said_waiting = False
        self._cond = threading.Condition(threading.RLock())
        self._urgent = False  # a trial ended, or Ctrl-C
        self._new_values = False  # a trial logged a metric value
        self._check(config)

    # --- checks before anything runs ----------------------------------------------------

    def _check(self, config: OperatorConfig) -> None:
        """What the planner cannot know: whether this machine can run the trials (each
        training job definition as a TrainingJob, with its static hyperparameters)."""
        from kubemaker.local.training import LocalTrainingJob

        for field_name, template in _templates(self.spec):
            spec = template.model_dump(by_alias=True, exclude_none=True, mode="json")
            for name in _TEMPLATE_ONLY:
                spec.pop(name, None)
            spec["hyperParameters"] = dict(template.static_hyper_parameters or {})
            body = {
                "apiVersion": API_VERSION,
                "kind": "TrainingJob",
                "metadata": {"name": tb.trial_name(self.name, 0)},
                "spec": spec,
            }
            where = f"{self.source} ({field_name} as a TrainingJob)"
            try:
                trial = parse_resource(body, TrainingJob, where)
                LocalTrainingJob(
                    trial, workdir=self.dir, config=config, display=Display(live=False)
                )
            except LocalError as exc:
                message = exc.message.removeprefix(f"{where}: ")
                if message.startswith("spec."):
                    message = f"{field_name}.{message.removeprefix('spec.')}"
                raise type(exc)(f"{self.source}: {message}") from None
        self._parents()  # a parent that is not there says so before anything runs

    def _parents(self) -> dict[str, Parent]:
        """A warm start's parents: what ``local tune`` of each left in this workdir."""
        warm = self.spec.warm_start_config
        parents: dict[str, Parent] = {}
        for i, ref in enumerate(warm.parent_hyper_parameter_tuning_jobs if warm else ()):
            name = ref.hyper_parameter_tuning_job_name
            where = f"{self.source}: spec.warmStartConfig.parentHyperParameterTuningJobs[{i}]"
            tuning, items = record.read_tuning_record(self.dir.parent, name, field=where)
            try:
                spec = TuningJobSpec.model_validate(tuning.get("spec") or {})
            except ValueError:
                raise ManifestError(f"{where}: the spec of {name!r} cannot be read") from None
            views = (TrialView.from_body(i) for i in items if i.get("kind") == "TrainingJob")
            state = (tuning.get("status") or {}).get("hyperParameterTuningJobStatus")
            parents[name] = Parent(name, spec, state, [v for v in views if v is not None])
        return parents

    # --- the loop -----------------------------------------------------------------------

    def run(self) -> TuningJobStatus:
        """Search until the planner says the search has ended; its final status."""
        with signals_handled(self._on_signal):
            try:
                while True:
                    began = time.monotonic()
                    self._on_interrupts()
                    plan = self._plan()
                    self._replan_seconds = max(
                        REPLAN_SECONDS, PLAN_SHARE * (time.monotonic() - began)
                    )
                    if not self.trials and plan.status.hyper_parameter_tuning_job_status == (
                        "Failed"
                    ):
                        reason = plan.status.failure_reason or "the search failed"
                        raise ManifestError(f"{self.source}: {reason}")
                    self._report_ended()
                    self._apply(plan)
                    self._write_record()
                    if self.status.hyper_parameter_tuning_job_status in TERMINAL:
                        return self.status
                    timeout = min(POLL_SECONDS, plan.requeue_after or POLL_SECONDS)
                    self._wait(began, timeout)
            finally:
                self._stop_all()

    def _plan(self) -> Plan:
        spec = self.spec
        if self.interrupts:
            spec = spec.model_copy(update={"stop": True})
        if self._parents_read is None or self.status.hyper_parameter_tuning_job_status is None:
            self._parents_read = self._parents()  # until the search starts: they may end
        with self._cond:
            bodies = [t.body() for t in self.trials.values()]
        views = [v for v in (TrialView.from_body(b) for b in bodies) if v is not None]
        plan = plan_tuning(
            Observation(
                name=self.name,
                namespace=NAMESPACE,
                uid=self.uid,
                generation=1,
                spec=spec,
                status=self.status,
                trials=views,
                now=datetime.now(UTC),
                creation_timestamp=_iso(self.created),
                parents=self._parents_read,
            )
        )
        self.status = plan.status
        return plan

    def _apply(self, plan: Plan) -> None:
        for event in plan.events:
            if event.reason not in ("TrialsCreated", "StoppedEarly"):
                logger.info("%s: %s: %s", self.name, event.reason, event.message)
        waiting = next(
            (c for c in plan.status.conditions or () if c.reason == "WaitingForParents"), None
        )
        if waiting is not None and not self._said_waiting:
            self._said_waiting = True
            logger.info("%s: %s (Ctrl-C to give up)", self.name, waiting.message)
        for manifest in plan.create:
            self._start(manifest)
        stops: dict[str, str | None] = dict.fromkeys(plan.stop)
        stops.update(plan.stop_early)
        for name, reason in stops.items():
            self._stop(name, reason)

    def _wait(self, began: float, timeout: float) -> None:
        """Until a trial ends or Ctrl-C, a new metric value (not sooner than
        ``_replan_seconds`` after the last plan began), or ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._urgent:
                wake = deadline
                if self._new_values:
                    wake = min(wake, began + self._replan_seconds)
                remaining = wake - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            self._urgent = self._new_values = False

    def _wake(self, *, urgent: bool) -> None:
        with self._cond:
            if urgent:
                self._urgent = True
            elif self._new_values:
                return  # the loop knows already
            else:
                self._new_values = True
            self._cond.notify_all()

    # --- trials -------------------------------------------------------------------------

    def _start(self, manifest: JSON) -> None:
        name = str(manifest["metadata"]["name"])
        index = tb.trial_index(self.name, name)
        if name in self.trials or index is None:  # the planner never asks twice
            return
        self._prepare_dir()
        path = self.dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
        definitions = manifest["spec"]["algorithmSpecification"].get("metricDefinitions")
        trial = Trial(
            name=name,
            index=index,
            manifest=manifest,
            job_dir=self.dir / name,
            log_path=self.dir / f"{name}.log",
            parser=MetricParser([MetricDefinition.model_validate(d) for d in definitions or ()]),
            created=datetime.now(UTC),
            metric=str(manifest["metadata"]["annotations"][ANNOTATION_METRIC_SERIES]),
        )
        command = [
            sys.executable, "-m", "kubemaker", "local", "train",
            "-f", str(path), "--workdir", str(self.dir), "--no-progress",
        ]  # fmt: skip
        if self.config_path is not None:
            command += ["--config", self.config_path]
        # Its own session: Ctrl-C at the terminal reaches this command only, which
        # stops the trials itself (through the planner).
        trial.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        trial.reader = threading.Thread(
            target=self._follow, args=(trial,), name=f"trial-{name}", daemon=True
        )
        trial.errors = threading.Thread(
            target=self._follow_errors, args=(trial,), name=f"trial-{name}-err", daemon=True
        )
        with self._cond:
            self.trials[name] = trial
        trial.errors.start()
        trial.reader.start()
        tuned = ", ".join(f"{k}={_short(v)}" for k, v in sorted(self._tuned(manifest).items()))
        logger.info("%s: started (%s)", name, tuned)

    def _follow(self, trial: Trial) -> None:
        """The trial's output, line by line: to its log, and its metrics to its parser;
        then its end."""
        process = trial.process
        assert process is not None and process.stdout is not None
        summary = f"TrainingJob {trial.name}: ".encode()
        with trial.log_path.open("ab") as log:
            for raw in iter(process.stdout.readline, b""):
                log.write(raw)
                log.flush()
                if raw.startswith(summary):
                    trial.feeding = False
                if not trial.feeding:
                    continue
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                with self._cond:
                    found = trial.parser.feed(line)
                if found:
                    self._wake(urgent=False)
        code = process.wait()
        if trial.errors is not None:
            trial.errors.join(STOP_WAIT_SECONDS[0])
        status = self._outcome(trial, code)
        with self._cond:
            trial.status = status
            trial.duration = time.monotonic() - trial.started
            trial.ended = True
            if status.get("trainingJobStatus") != "Stopped":
                trial.stopped_early = None  # it ended before the stop reached it
        self._wake(urgent=True)

    def _follow_errors(self, trial: Trial) -> None:
        """The trial's stderr to its log; the SIGINTs asked for before it was ready."""
        process = trial.process
        assert process is not None and process.stderr is not None
        with trial.log_path.open("ab") as log:
            for raw in iter(process.stderr.readline, b""):
                log.write(raw)
                log.flush()
                if not trial.ready and raw.startswith(READY_LINE):
                    with self._cond:
                        trial.ready = True
                        pending, trial.pending = trial.pending, 0
                    for _ in range(pending):
                        self._signal(trial)

    def _outcome(self, trial: Trial, exit_code: int) -> JSON:
        """The status of the trial's record; without one, why it ended without."""
        try:
            done = record.read_record(trial.job_dir)
        except LocalError:
            done = None
        if done is not None and done.status is not None:
            status: JSON = done.status.model_dump(by_alias=True, exclude_none=True, mode="json")
            return status
        if trial.stop_requested:
            return {"trainingJobStatus": "Stopped", "secondaryStatus": "Stopped"}
        try:
            lines = trial.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
        tail = " | ".join(line for line in lines[-LOG_TAIL_LINES:] if line.strip())
        return {
            "trainingJobStatus": "Failed",
            "secondaryStatus": "Failed",
            "failureReason": (f"kubemaker local train exited {exit_code} without a record: {tail}")[
                :1024
            ],
        }

    def _stop(self, name: str, reason: str | None) -> None:
        trial = self.trials.get(name)
        if trial is None:
            return
        with self._cond:
            if trial.ended or trial.stop_requested:
                return
            trial.stop_requested = True
            trial.stopped_early = reason
        if reason is not None:
            logger.info("%s: stopping early: %s", name, reason)
        self._signal(trial)
        if self._interrupts_seen > 1:  # Ctrl-C twice already: kill its algorithm
            self._signal(trial)

    def _signal(self, trial: Trial, *, now: bool = False) -> None:
        """SIGINT to the trial's ``local train``: now if it is ready (or ``now``), else
        once it is."""
        with self._cond:
            if not (trial.ready or now):
                trial.pending += 1
                return
        # send_signal does nothing once the process has been reaped (its id may be reused).
        if trial.process is not None:
            with contextlib.suppress(ProcessLookupError):
                trial.process.send_signal(signal.SIGINT)

    def _stop_all(self) -> None:
        """Nothing outlives the command: running trials are stopped, then killed."""
        running = [t for t in self.trials.values() if t.process and t.process.poll() is None]
        for wait in STOP_WAIT_SECONDS:
            for trial in running:
                self._signal(trial, now=True)
            deadline = time.monotonic() + wait
            for trial in running:
                assert trial.process is not None
                with contextlib.suppress(subprocess.TimeoutExpired):
                    trial.process.wait(max(0.0, deadline - time.monotonic()))
            running = [t for t in running if t.process and t.process.poll() is None]
        for trial in running:
            assert trial.process is not None
            trial.process.kill()
        for trial in self.trials.values():
            for thread in (trial.reader, trial.errors):
                if thread is not None:
                    thread.join(STOP_WAIT_SECONDS[0])

    # --- progress -----------------------------------------------------------------------

    def _report_ended(self) -> None:
        best = self.status.best_training_job
        for trial in sorted(self.trials.values(), key=lambda t: t.index):
            with self._cond:
                if not trial.ended or trial.reported:
                    continue
                trial.reported = True
                status = dict(trial.status)
                points = len(trial.parser.series.get(trial.metric, ()))
            state = status.get("trainingJobStatus", "Failed")
            took = format_duration(trial.duration or 0.0)
            objective = _metrics(status).get(trial.metric)
            if state == "Completed" and objective is not None:
                note = " (the best so far)" if best and best.training_job_name == trial.name else ""
                logger.info("%s: Completed in %s: %s %.6g%s", trial.name, took, trial.metric,
                            objective, note)  # fmt: skip
            elif state == "Stopped" and trial.stopped_early:
                logger.info("%s: stopped early in %s, after %d values of %s", trial.name, took,
                            points, trial.metric)  # fmt: skip
            else:
                reason = status.get("failureReason") or (
                    f"no {trial.metric} in its log" if state == "Completed" else ""
                )
                logger.info("%s: %s in %s%s", trial.name, state, took, f": {reason}" * bool(reason))

    # --- record -------------------------------------------------------------------------

    def _prepare_dir(self) -> None:
        """The tuning job's directory, without what an earlier run of it left."""
        if self.trials:
            return
        if self.dir.is_dir():
            for old in self.dir.iterdir():
                stem = old.name.removesuffix(old.suffix) if old.is_file() else old.name
                if old.name == TUNING_RECORD or tb.trial_index(self.name, stem) is not None:
                    if old.is_dir() and not old.is_symlink():
                        shutil.rmtree(old)
                    else:
                        old.unlink()
        self.dir.mkdir(parents=True, exist_ok=True)

    def document(self) -> JSON:
        """tuning.json: a List of the TuningJob and its trials, as a cluster shows them."""
        tuning = self.job.model_dump(by_alias=True, exclude_none=True, mode="json")
        tuning.pop("status", None)
        tuning["metadata"]["creationTimestamp"] = _iso(self.created)
        tuning["metadata"].setdefault("uid", self.uid)
        tuning["status"] = self.status.model_dump(by_alias=True, exclude_none=True, mode="json")
        with self._cond:
            trials = [t.body() for t in sorted(self.trials.values(), key=lambda t: t.index)]
        return {"apiVersion": "v1", "kind": "List", "items": [tuning, *trials]}

    def _write_record(self) -> None:
        if not self.trials:
            return
        path = self.dir / TUNING_RECORD
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.document(), indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)

    # --- signals ------------------------------------------------------------------------

    def _on_signal(self, _signum: int, _frame: FrameType | None) -> None:
        # Only count and wake: the loop acts (no output from a handler, which may have
        # interrupted a write to the same stream).
        self.interrupts += 1
        self._wake(urgent=True)

    def _on_interrupts(self) -> None:
        """The first Ctrl-C stops the search (through the planner: ``spec.stop``); the
        next ones are passed on to the trials being stopped, which kill their algorithm."""
        count, seen = self.interrupts, self._interrupts_seen
        if count == seen:
            return
        self._interrupts_seen = count
        if seen == 0:
            logger.info(
                "stopping the search: every running trial gets Ctrl-C (its algorithm "
                "SIGTERM and its grace period); press Ctrl-C again to kill them"
            )
        if count > 1:
            for trial in self.trials.values():
                if trial.stop_requested and not trial.ended:
                    self._signal(trial)

    # --- summary ------------------------------------------------------------------------

    def _tuned(self, manifest: Mapping[str, Any]) -> dict[str, str]:
        names = _tuned_names(self.spec)
        values = manifest.get("spec", {}).get("hyperParameters") or {}
        return {k: str(values[k]) for k in names if k in values}

    def exit_code(self) -> int:
        state = self.status.hyper_parameter_tuning_job_status
        if state == "Failed":
            return EXIT_FAILED
        if state == "Stopped" and self.interrupts:
            return EXIT_INTERRUPTED
        return EXIT_OK

    def summary(self) -> str:
        status = self.status
        state = status.hyper_parameter_tuning_job_status or "InProgress"
        elapsed = format_duration(time.monotonic() - self.started)
        why = status.failure_reason or status.completion_reason
        lines = [f"TuningJob {self.name}: {state} in {elapsed}" + (f": {why}" if why else "")]
        trials = sorted(self.trials.values(), key=lambda t: t.index)
        if trials:
            lines += ["", *_table(self._rows(trials)), ""]
            durations = [t.duration for t in trials if t.duration is not None]
            if durations:
                median = format_duration(statistics.median(durations))
                lines.append(
                    f"{len(trials)} training jobs, median {median} each, "
                    f"{format_duration(sum(durations))} in all"
                )
        best = status.best_training_job
        objective = best.final_hyper_parameter_tuning_job_objective_metric if best else None
        if best is not None and objective is not None:
            tuned = ", ".join(
                f"{k}={v}" for k, v in sorted((best.tuned_hyper_parameters or {}).items())
            )
            lines.append(
                f"Best: {best.training_job_name}: {objective.metric_name} {objective.value:.6g}"
            )
            lines.append(f"  {tuned}")
            lines.append(
                f"Serve it: kubemaker local serve --model {self.dir / best.training_job_name}"
            )
        if trials:
            lines.append(f"Trials and logs: {self.dir}")
            lines.append(f"Plot: kubemaker tuning plot --dir {self.dir} -o {self.name}.png")
        return "\n".join(lines)

    def _rows(self, trials: Sequence[Trial]) -> list[list[str]]:
        names = sorted(_tuned_names(self.spec))
        definitions = [
            trial.manifest["metadata"].get("labels", {}).get(tb.LABEL_DEFINITION)
            for trial in trials
        ]
        several = any(definitions)  # trainingJobDefinitions: say which each trial ran
        rows = [["trial", *["definition"] * several, "status", self.metric, *names, ""]]
        for trial, definition in zip(trials, definitions, strict=True):
            status = trial.status if trial.ended else {"trainingJobStatus": "InProgress"}
            state = str(status.get("trainingJobStatus", ""))
            objective = _metrics(status).get(trial.metric) if state == "Completed" else None
            tuned = self._tuned(trial.manifest)
            rows.append(
                [
                    trial.name,
                    *[definition or ""] * several,
                    state,
                    f"{objective:.6g}" if objective is not None else "-",
                    *(_short(tuned.get(n, "")) for n in names),
                    "stopped early" if trial.stopped_early else "",
                ]
            )
        return rows


# TrainingJobTemplate's fields that a TrainingJob's spec does not have.
_TEMPLATE_ONLY = frozenset(
    f.alias or name
    for name, f in TrainingJobTemplate.model_fields.items()
    if name not in TrainingJobSpec.model_fields
)


def _templates(spec: TuningJobSpec) -> list[tuple[str, TrainingJobTemplate]]:
    """The training job definitions, with their fields' paths."""
    return [(d.field, d.template) for d in tb.definitions(spec)]


def _tuned_names(spec: TuningJobSpec) -> set[str]:
    """Every tuned hyperparameter, of every definition."""
    return {name for d in tb.definitions(spec) for name in d.ranges.names()}


def _metrics(status: Mapping[str, Any]) -> dict[str, float]:
    found = {}
    for item in status.get("finalMetricDataList") or ():
        with contextlib.suppress(KeyError, TypeError, ValueError):
            found[str(item["metricName"])] = float(item["value"])
    return found


def _short(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() and "." not in value else f"{number:.4g}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
