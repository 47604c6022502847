"""``kubemaker local train``: one TrainingJob on this machine, through the cluster's code.

    Downloading  the agent prepares each host in-process (config files, channels staged
                 under <workdir>/<job>/host-<i>, checkpoints restored)
    Training     the algorithm runs, one process (or container) per host, its log
                 streamed and searched with the job's metricDefinitions
    Uploading    the agent finishes each host (checkpoints synced, model.tar.gz and
                 output.tar.gz uploaded to outputDataConfig's path)

The agent's configuration is built by :func:`kubemaker.builders.training.build_agent_config`,
the function the operator uses, and host names are the operator's, so a spec behaves
the same here and on a cluster. Failure reasons are worded as the operator words them.

Why one module of this size: one local run is one state machine (phases, host
processes, Docker containers, Ctrl-C and max runtime), whose pieces share its state;
its decisions live elsewhere (the builders, :mod:`kubemaker.failures`, the agent).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from urllib.parse import urlparse

from kubemaker.api import (
    MetricData,
    ModelArtifacts,
    SecondaryStatusTransition,
    TrainingJob,
    TrainingJobSpec,
    TrainingJobStatus,
)
from kubemaker.api.training import SecondaryStatus, TrainingJobStatusString
from kubemaker.builders import naming
from kubemaker.builders.errors import SpecError
from kubemaker.builders.training import (
    ALGORITHM_STOP_SECONDS,
    build_agent_config,
    resolve_image,
)
from kubemaker.config import OperatorConfig
from kubemaker.failures import Failure, agent_failure, algorithm_failure
from kubemaker.local import launch, record
from kubemaker.local.errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STOPPED,
    ManifestError,
    UnsupportedError,
)
from kubemaker.local.progress import Display, format_duration
from kubemaker.local.signals import signals_handled
from kubemaker.metric_definitions import MetricParser, merge_final_metrics
from kubemaker_runtime import contract, processors
from kubemaker_runtime.agent import Agent, AgentError
from kubemaker_runtime.protocol import AgentConfig, AgentReport

logger = logging.getLogger(__name__)

Outcome = TrainingJobStatusString
Step = SecondaryStatus
# Lines of a failed algorithm's log kept for its failure reason (the kubelet's
# FallbackToLogsOnError keeps the last 80 lines, at most 2048 bytes).
LOG_TAIL_LINES = 80
LOG_TAIL_BYTES = 2048
WAIT_STEP_SECONDS = 0.5
READER_JOIN_SECONDS = 10.0


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) during a step that cannot be stopped gracefully."""


@dataclass
class Host:
    index: int
    name: str
    base: Path
    agent: Agent
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = None
    tail: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=LOG_TAIL_LINES)
    )
    report: AgentReport | None = None

    @property
    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()


@dataclass
class Result:
    outcome: Outcome
    secondary: Step
    failure_reason: str | None = None
    model_artifacts: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    exit_code: int = EXIT_OK


# --- checks before anything runs -------------------------------------------------------------


def check_local_uris(spec: TrainingJobSpec) -> None:
    """pvc:// names a PersistentVolumeClaim: there is none outside a cluster."""
    uris: list[tuple[str, str]] = [
        (f"spec.inputDataConfig.{i}", channel.source_uri)
        for i, channel in enumerate(spec.input_data_config or ())
    ]
    uris.append(("spec.outputDataConfig.s3OutputPath", spec.output_data_config.s3_output_path))
    if spec.checkpoint_config is not None:
        uris.append(("spec.checkpointConfig.s3Uri", spec.checkpoint_config.s3_uri))
    if spec.algorithm_specification.source_dir:
        uris.append(
            ("spec.algorithmSpecification.sourceDir", spec.algorithm_specification.source_dir)
        )
    for path, uri in uris:
        if uri.startswith("pvc://"):
            raise UnsupportedError(
                f"{path}: {uri}: a pvc:// URI names a PersistentVolumeClaim, which only a "
                "cluster has; local mode reads s3:// and file:// (a relative file:// path "
                "is resolved against the manifest's directory)"
            )


def log_tail(lines: collections.deque[str]) -> str:
    """The end of a log, as the kubelet keeps it for a failed container's message."""
    text = "\n".join(line for line in lines if line.strip())
    encoded = text.encode()
    if len(encoded) > LOG_TAIL_BYTES:
        text = encoded[-LOG_TAIL_BYTES:].decode(errors="replace")
    return text


# --- the run ---------------------------------------------------------------------------------


class LocalTrainingJob:
    def __init__(
        self,
        job: TrainingJob,
        *,
        workdir: Path,
        config: OperatorConfig,
        display: Display,
        manifest: Path | None = None,
    ) -> None:
        self.job = job
        self.spec = job.spec
        self.name = job.metadata.name
        self.config = config
        self.display = display
        self.manifest = manifest
        self.job_dir = workdir.resolve() / self.name
        check_local_uris(self.spec)
        algo = self.spec.algorithm_specification
        try:
            self.image = resolve_image(self.spec, config)
            self.metrics = MetricParser(algo.metric_definitions)
        except SpecError as exc:
            raise ManifestError(str(exc)) from None
        self.runtime = launch.resolve_runtime(
            algorithm_name=algo.algorithm_name,
            framework=algo.framework,
            image=algo.training_image,
            config=config,
            field="spec.algorithmSpecification",
        )
        count = self.spec.resource_config.instance_count
        if count > 1 and not self.runtime.supports_hosts:
            raise UnsupportedError(
                f"spec.resourceConfig.instanceCount: {count} hosts cannot train together "
                f"on one machine with {self.runtime.describe()} (local mode runs several "
                "hosts of xgboost, mxnet and Docker images); set instanceCount: 1 locally"
            )
        if self.runtime.kind == "docker":
            launch.require_docker(f"spec.algorithmSpecification: {self.runtime.image}")
        self._metrics_lock = threading.Lock()
        self.hosts_names = naming.host_names(naming.job_name(self.name, 0), count)
        self.agent_config: AgentConfig = build_agent_config(
            self.spec, config, training_job=self.name, hosts=self.hosts_names
        )
        self.hosts: list[Host] = []
        # Stopped (Ctrl-C) or MaxRuntimeExceeded, once either happened.
        self.stop_cause: Step | None = None
        self._stop_deadline: float | None = None
        self._signals = 0
        self.gpus = processors.available_gpus()
        self.started_at = datetime.now(UTC)
        self.transitions: list[SecondaryStatusTransition] = []

    # --- phases -------------------------------------------------------------------------

    def run(self) -> Result:
        logger.info(
            "training %s with %s on %d host(s); work directory %s",
            self.name, self.runtime.describe(), len(self.hosts_names), self.job_dir,
        )  # fmt: skip
        self._set_up_hosts()
        with signals_handled(self._on_signal):
            try:
                self._transition(Step.DOWNLOADING)
                failure = self._prepare()
                if failure is None and self.stop_cause is None:
                    self._transition(Step.TRAINING)
                    with contextlib.ExitStack() as services:
                        for host in self.hosts:
                            services.enter_context(host.agent.running())
                        self._train()
                self._transition(Step.UPLOADING)
                self._finish()
            finally:
                self._stop_processes(force=True)
                self.display.end_phase()
        result = self._result(failure)
        self._write_record(result)
        return result

    def _transition(self, phase: SecondaryStatus) -> None:
        self._record_transition(phase)
        self.display.set_phase(phase)

    def _record_transition(self, phase: SecondaryStatus) -> None:
        now = datetime.now(UTC)
        if self.transitions:
            last = self.transitions[-1]
            self.transitions[-1] = last.model_copy(update={"end_time": now})
        self.transitions.append(SecondaryStatusTransition(status=phase, start_time=now))

    def _set_up_hosts(self) -> None:
        # A previous run's files (an old failure file, a checkpoint, a stale channel)
        # would change what this run does: every host starts from an empty directory.
        if self.job_dir.is_dir():
            for old in self.job_dir.glob("host-*"):
                if old.is_dir() and not old.is_symlink():
                    shutil.rmtree(old)
                else:
                    old.unlink()
            (self.job_dir / record.RECORD_FILE).unlink(missing_ok=True)
        self.job_dir.mkdir(parents=True, exist_ok=True)
        for index, host_name in enumerate(self.hosts_names):
            base = record.host_dir(self.job_dir, index)
            agent = Agent(
                self.agent_config,
                host_index=index,
                paths=contract.Paths(base),
                # Processes see the source files where they are; containers need copies.
                link_local_sources=self.runtime.is_process,
            )
            self.hosts.append(
                Host(index, host_name, base, agent, self.job_dir / f"{host_name}.log")
            )

    def _prepare(self) -> Failure | None:
        """Each host's agent.prepare(); the failure of the first that fails."""
        for host in self.hosts:
            if self.stop_cause is not None:
                return None
            try:
                host.agent.prepare()
            except AgentError as exc:
                if self.stop_cause is not None:
                    return None
                return agent_failure(exc.kind, exc.message)
        return None

    def _train(self) -> None:
        deadline = time.monotonic() + self.spec.stopping_condition.max_runtime_in_seconds
        port = launch.free_port()
        for host in self.hosts:
            if self.stop_cause is not None:  # stopped while the others were starting
                break
            self._start(host, port)
        while True:
            running = [h for h in self.hosts if h.exit_code is None]
            if not running:
                break
            failed = [h for h in self.hosts if h.exit_code not in (None, 0)]
            if failed and self._stop_deadline is None:
                # One host failing fails the job: stop the others, as SageMaker does.
                logger.info("host %s failed: stopping the other hosts", failed[0].name)
                self._stop_processes()
            now = time.monotonic()
            if now >= deadline and self.stop_cause is None:
                logger.info(
                    "maxRuntimeInSeconds (%d) reached: stopping the algorithm",
                    self.spec.stopping_condition.max_runtime_in_seconds,
                )
                self.stop_cause = Step.MAX_RUNTIME_EXCEEDED
                self._stop_processes()
            if self._stop_deadline is not None and now >= self._stop_deadline:
                logger.warning("the algorithm did not stop within its grace period: killing it")
                self._stop_processes(force=True)
            self.display.tick()
            with contextlib.suppress(subprocess.TimeoutExpired):
                assert running[0].process is not None
                running[0].process.wait(WAIT_STEP_SECONDS)
        for host in self.hosts:
            if host.reader is not None:
                host.reader.join(READER_JOIN_SECONDS)

    def _finish(self) -> None:
        for host in self.hosts:
            host.report = host.agent.finish(algorithm_failed=host.exit_code not in (None, 0))

    # --- processes ----------------------------------------------------------------------

    def _host_env(self, host: Host, port: int) -> tuple[dict[str, str], list[str]]:
        """The process's environment, and the names a container must be given."""
        if self.runtime.is_process:
            own = host.agent.training_env(num_gpus=self.gpus)
            own[contract.BASE_DIR_ENV] = str(host.base)
            own["PYTHONUNBUFFERED"] = "1"
            own.update(self.runtime.process_env(os.environ))
            own.update(launch.build_peer_env(self.runtime, self.hosts_names, port))
        else:
            # Inside the container the contract lives at /opt/ml.
            in_container = Agent(self.agent_config, host_index=host.index, paths=contract.Paths())
            own = in_container.training_env(num_gpus=self.gpus)
        own.update(self.spec.environment or {})
        return {**os.environ, **own}, sorted(own)

    def _command(self, host: Host, env_names: list[str]) -> list[str]:
        if self.runtime.is_process:
            return self.runtime.process_command("train")
        return launch.build_docker_train_command(
            self.runtime.image,
            container=self._container(host),
            base_dir=host.base,
            env_names=env_names,
            host=host.name,
            network=self._network,
            gpus=self.gpus,
            shared=self._local_source_dir(),
        )

    def _local_source_dir(self) -> list[Path]:
        """A file:// sourceDir, which a container sees only if it is mounted."""
        uri = self.agent_config.hyper_parameters.get("sagemaker_submit_directory", "")
        parsed = urlparse(uri)
        return [Path(parsed.path)] if parsed.scheme == "file" and parsed.path else []

    def _start(self, host: Host, port: int) -> None:
        env, names = self._host_env(host, port)
        if self.runtime.kind == "docker" and host.index == 0:
            self._set_up_docker()
        command = self._command(host, names)
        logger.info("host %s: %s", host.name, " ".join(command))
        # A session of its own: Ctrl-C reaches kubemaker, which stops the algorithm
        # with SIGTERM (and a grace period) as SageMaker's StopTrainingJob does.
        host.process = subprocess.Popen(
            command,
            env=env,
            cwd=host.base,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        host.reader = threading.Thread(
            target=self._read_log, args=(host,), name=f"log-{host.name}", daemon=True
        )
        host.reader.start()

    def _read_log(self, host: Host) -> None:
        assert host.process is not None and host.process.stdout is not None
        prefix = f"{host.name} | " if len(self.hosts) > 1 else ""
        with host.log_path.open("w", encoding="utf-8") as log:
            for raw in iter(host.process.stdout.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                log.write(line + "\n")
                host.tail.append(line)
                self.display.log_line(line, prefix)
                with self._metrics_lock:
                    found = self.metrics.feed(line)
                self.display.update_metrics(found)

    def _stop_processes(self, *, force: bool = False) -> None:
        """SIGTERM every running host (SIGKILL with ``force``), whole process groups."""
        if not force and self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + ALGORITHM_STOP_SECONDS
        for host in self.hosts:
            # The whole group: helpers the algorithm started (parameter servers, workers)
            # go with it. Only while its leader runs: an exited leader's id may be reused.
            if host.process is not None and host.exit_code is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(host.process.pid, signal.SIGKILL if force else signal.SIGTERM)
        if force:
            for host in self.hosts:
                if host.process is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        host.process.wait(10)
            self._clean_up_docker()

    # --- Docker -------------------------------------------------------------------------

    def _container(self, host: Host) -> str:
        return f"kubemaker-{host.name}"

    @property
    def _network(self) -> str | None:
        """A network of the job's own where host names resolve (several hosts only)."""
        return f"kubemaker-{self.name}" if len(self.hosts) > 1 else None

    def _set_up_docker(self) -> None:
        # Containers of an earlier run that was killed would hold the names.
        self._clean_up_docker()
        if self._network is not None:
            done = subprocess.run(
                ["docker", "network", "create", self._network],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise UnsupportedError(
                    f"docker network create {self._network} failed: {done.stderr.strip()}"
                )

    def _clean_up_docker(self) -> None:
        """Remove the job's containers and network (killing ``docker run`` leaves them)."""
        if self.runtime.kind != "docker":
            return
        names = [self._container(h) for h in self.hosts]
        subprocess.run(["docker", "rm", "-f", *names], capture_output=True, check=False)
        if self._network is not None:
            subprocess.run(
                ["docker", "network", "rm", self._network], capture_output=True, check=False
            )

    # --- signals ------------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        phase = self.display.phase
        if self._signals > 1:
            if phase == "Uploading":
                raise Interrupted("interrupted while uploading")
            self.display.note("kubemaker: stopping now (killing the algorithm)")
            self._stop_processes(force=True)
            return
        if phase == "Uploading":
            self.display.note("kubemaker: finishing the upload; press Ctrl-C again to abandon it")
            return
        self.display.note(
            "kubemaker: stopping: the algorithm gets SIGTERM and "
            f"{ALGORITHM_STOP_SECONDS} s to save its work; press Ctrl-C again to kill it"
        )
        self.stop_cause = Step.STOPPED
        for host in self.hosts:
            host.agent.cancel()
        self._stop_processes()

    # --- outcome ------------------------------------------------------------------------

    def _algorithm_failure(self) -> Failure | None:
        failed = [h for h in self.hosts if h.exit_code not in (None, 0)]
        if not failed:
            return None
        reports = [h.report for h in self.hosts if h.report is not None]
        return algorithm_failure(
            failure_file=next((r.failure_reason for r in reports if r.failure_reason), None),
            output=log_tail(failed[0].tail),
            exit_code=failed[0].exit_code,
        )

    def _result(self, prepare_failure: Failure | None) -> Result:
        first = self.hosts[0].report if self.hosts else None
        metrics = merge_final_metrics(
            self.metrics.latest, [h.report.final_metrics for h in self.hosts if h.report]
        )
        model = first.model_artifacts if first is not None else None
        if self.stop_cause is not None:
            code = (
                EXIT_STOPPED if self.stop_cause == Step.MAX_RUNTIME_EXCEEDED else EXIT_INTERRUPTED
            )
            return Result(Outcome.STOPPED, self.stop_cause, None, model, metrics, code)
        found = prepare_failure or self._algorithm_failure()
        if found is None:
            error = next((h.report for h in self.hosts if h.report and h.report.agent_error), None)
            if error is not None:
                found = agent_failure(error.agent_error_kind, error.agent_error or "")
        if found is not None:
            return Result(Outcome.FAILED, Step.FAILED, found.reason, None, metrics, EXIT_FAILED)
        return Result(Outcome.COMPLETED, Step.COMPLETED, None, model, metrics, EXIT_OK)

    def _write_record(self, result: Result) -> None:
        self._record_transition(result.secondary)
        now = datetime.now(UTC)
        status = TrainingJobStatus(
            training_job_status=result.outcome,
            secondary_status=result.secondary,
            failure_reason=result.failure_reason,
            creation_time=self.started_at,
            training_start_time=self.started_at,
            training_end_time=now,
            training_time_in_seconds=int((now - self.started_at).total_seconds()),
            secondary_status_transitions=self.transitions,
            model_artifacts=(
                ModelArtifacts(s3_model_artifacts=result.model_artifacts)
                if result.model_artifacts and result.outcome != "Failed"
                else None
            ),
            final_metric_data_list=[
                MetricData(metric_name=name, value=value, timestamp=now)
                for name, value in sorted(result.metrics.items())
            ]
            or None,
            training_image=self.image,
        )
        metadata = self.job.metadata.model_copy(deep=True)
        if self.manifest is not None:
            metadata.annotations[record.ANNOTATION_MANIFEST] = str(self.manifest.resolve())
        finished = self.job.model_copy(update={"metadata": metadata, "status": status})
        record.write_record(self.job_dir, finished)

    # --- summary ------------------------------------------------------------------------

    def summary(self, result: Result) -> str:
        phases = ", ".join(
            f"{phase} {format_duration(seconds)}" for phase, seconds in self.display.phase_times
        )
        lines = [
            f"TrainingJob {self.name}: {result.outcome}"
            + (f" ({result.secondary})" if result.secondary.value != result.outcome.value else "")
            + f" in {format_duration(self.display.elapsed)}"
            + (f" ({phases})" if phases else "")
        ]
        if result.failure_reason:
            lines.append(f"Failure reason: {result.failure_reason}")
        if result.metrics:
            lines.append("Final metrics:")
            width = max(len(name) for name in result.metrics)
            lines += [
                f"  {name:<{width}}  {value:.6g}" for name, value in sorted(result.metrics.items())
            ]
        if result.model_artifacts and result.outcome != "Failed":
            lines.append(f"Model artifacts: {result.model_artifacts}")
        lines.append(f"Logs and work files: {self.job_dir}")
        if result.outcome == "Completed" and result.model_artifacts:
            lines.append(f"Serve it: kubemaker local serve --model {self.job_dir}")
        return "\n".join(lines)
