"""The agent's steps as a Python API, shared by the sidecar and local mode.

    agent = Agent(config, host_index=0, paths=Paths(workdir))
    agent.prepare()                 # config files, checkpoints restored, channels staged
    with agent.running():           # Pipe-mode feeders and checkpoint sync
        ...run the algorithm with agent.training_env()...
    report = agent.finish()         # final sync, uploads, failure file, metrics

``prepare`` raises :class:`AgentError` (``kind`` user or platform); ``finish`` never
raises for storage failures: they end up in the report it returns.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kubemaker_runtime import contract, processors
from kubemaker_runtime.agent.checkpoints import CheckpointSync
from kubemaker_runtime.agent.configfiles import write_config_files
from kubemaker_runtime.agent.errors import AgentError, PlatformError
from kubemaker_runtime.agent.pipes import PipeFeeder
from kubemaker_runtime.agent.report import clip, read_metrics
from kubemaker_runtime.agent.staging import StagedChannel, stage_channel
from kubemaker_runtime.agent.upload import (
    MODEL_ARCHIVE,
    OUTPUT_ARCHIVE,
    has_files,
    upload_directory,
)
from kubemaker_runtime.contract import Paths
from kubemaker_runtime.protocol import AgentConfig, AgentReport
from kubemaker_runtime.storage import StoreFactory, join_uri

logger = logging.getLogger(__name__)

HOST_INDEX_ENV = "JOB_COMPLETION_INDEX"


def host_index_from_env(config: AgentConfig, environ: dict[str, str] | None = None) -> int:
    """This pod's host: the Indexed Job's completion index (0 when there is one host)."""
    env = os.environ if environ is None else environ
    raw = env.get(HOST_INDEX_ENV)
    if raw is None:
        if len(config.hosts) == 1:
            return 0
        raise PlatformError(
            f"{HOST_INDEX_ENV} is not set and the job has {len(config.hosts)} hosts"
        )
    index = int(raw)
    if not 0 <= index < len(config.hosts):
        raise PlatformError(f"{HOST_INDEX_ENV}={index} but the job has {len(config.hosts)} hosts")
    return index


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        *,
        host_index: int = 0,
        paths: Paths | None = None,
        stores: StoreFactory | None = None,
        workers: int = 8,
        link_local_sources: bool = False,
        tmp_dir: Path | None = None,
    ) -> None:
        """``link_local_sources``: symlink file:// and pvc:// data instead of copying it
        (only when the algorithm sees those paths too, as in local mode)."""
        if not 0 <= host_index < len(config.hosts):
            raise ValueError(f"host index {host_index} out of range for {config.hosts}")
        self.config = config
        self.host_index = host_index
        self.paths = paths or Paths()
        # --workers bounds both the objects in flight and the requests (one pool for all).
        self.stores = stores or StoreFactory(
            config.storage, link_local=link_local_sources, max_concurrency=workers
        )
        self.workers = workers
        self.tmp_dir = tmp_dir
        self.bytes_downloaded = 0
        self.bytes_uploaded = 0
        self.staged: dict[str, StagedChannel] = {}
        self.feeders: list[PipeFeeder] = []
        self.checkpoints: CheckpointSync | None = None
        self.error: AgentError | None = None
        self._cancel = threading.Event()
        self._running = False

    # --- facts -----------------------------------------------------------------------

    @property
    def current_host(self) -> str:
        return self.config.hosts[self.host_index]

    @property
    def is_first_host(self) -> bool:
        """The host that uploads the job's model.tar.gz and output.tar.gz."""
        return self.host_index == 0

    @property
    def model_artifacts_uri(self) -> str:
        return join_uri(self.config.output_path, MODEL_ARCHIVE)

    @property
    def output_data_uri(self) -> str:
        return join_uri(self.config.output_path, OUTPUT_ARCHIVE)

    @property
    def checkpoint_dir(self) -> Path:
        """The checkpoint directory, moved under this agent's base dir when it is /opt/ml/..."""
        if self.config.checkpoint is None:
            return self.paths.checkpoints_dir
        local = Path(self.config.checkpoint.local_path)
        default_base = Path(contract.DEFAULT_BASE_DIR)
        if local.is_relative_to(default_base):
            return self.paths.base / local.relative_to(default_base)
        return local

    def training_env(self, *, num_cpus: int | None = None, num_gpus: int = 0) -> dict[str, str]:
        """The ``SM_*`` variables for this host's algorithm process; ``num_cpus`` by
        default the CPUs this process may use (cgroup-aware, as the algorithm counts)."""
        return contract.build_training_env(
            self.paths,
            hyperparameters=contract.stringify_hyperparameters(self.config.hyper_parameters),
            input_data_config=contract.build_input_data_config(self.config.channels),
            resource_config=contract.build_resource_config(
                hosts=self.config.hosts,
                current_host=self.current_host,
                instance_type=self.config.instance_type,
                network_interface_name=self.config.network_interface_name,
            ),
            num_cpus=processors.available_cpus() if num_cpus is None else num_cpus,
            num_gpus=num_gpus,
            job_name=self.config.job_name,
        )

    # --- steps -----------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop a prepare() in progress (it raises Cancelled) and any running services."""
        self._cancel.set()

    def prepare(self) -> None:
        """Everything before the algorithm starts. Safe to repeat: staging resumes."""
        logger.info(
            "preparing %s host %s (%d of %d), base %s",
            self.config.job_name,
            self.current_host,
            self.host_index + 1,
            len(self.config.hosts),
            self.paths.base,
        )
        self.paths.create_training_dirs()
        write_config_files(self.config, self.host_index, self.paths)
        try:
            if self.config.checkpoint is not None:
                self.checkpoints = CheckpointSync(
                    self.stores.for_uri(self.config.checkpoint.uri),
                    self.config.checkpoint.uri,
                    self.checkpoint_dir,
                    interval_seconds=self.config.checkpoint.sync_interval_seconds,
                    workers=self.workers,
                )
                stats = self.checkpoints.restore(cancel=self._cancel)
                self.bytes_downloaded += stats.bytes
            for channel in self.config.channels:
                staged = stage_channel(
                    channel,
                    self.stores.for_uri(channel.uri),
                    self.paths,
                    host_index=self.host_index,
                    num_hosts=len(self.config.hosts),
                    workers=self.workers,
                    cancel=self._cancel,
                )
                self.staged[channel.name] = staged
                self.bytes_downloaded += staged.stats.bytes
            self.feeders = [
                PipeFeeder(s.channel, self.stores.for_uri(s.channel.uri), s.objects, self.paths)
                for s in self.staged.values()
                if s.channel.input_mode == "Pipe"
            ]
            for feeder in self.feeders:
                feeder.create_first_fifo()
        except AgentError as exc:
            self.error = exc
            raise
        logger.info("prepared: %d bytes downloaded", self.bytes_downloaded)

    def start_services(self) -> None:
        if self._running:
            return
        self._running = True
        for feeder in self.feeders:
            feeder.start()
        if self.checkpoints is not None:
            self.checkpoints.start()

    def stop_services(self) -> None:
        if not self._running:
            return
        self._running = False
        for feeder in self.feeders:
            feeder.stop()
            self.bytes_downloaded += feeder.bytes_read
            feeder.bytes_read = 0
        if self.checkpoints is not None:
            self.checkpoints.stop()

    @contextmanager
    def running(self) -> Iterator[Agent]:
        """Pipe feeders and checkpoint sync run inside this block."""
        self.start_services()
        try:
            yield self
        finally:
            self.stop_services()

    def finish(self, *, algorithm_failed: bool = False) -> AgentReport:
        """Final checkpoint sync, uploads, and the report (never raises for storage).

        The model is uploaded only when the algorithm did not fail, as SageMaker keeps
        no model of a failed job: it failed when it wrote /opt/ml/output/failure (the
        contract's signal, all a sidecar can see), or when the caller knows its exit
        code was not 0 (``algorithm_failed``, local mode). A stopped algorithm that saved
        its model and exited cleanly after SIGTERM is uploaded, as SageMaker's
        StopTrainingJob allows.
        """
        self.stop_services()
        errors: list[AgentError] = [self.error] if self.error is not None else []
        errors += [f.error for f in self.feeders if f.error is not None]
        if self.checkpoints is not None:
            try:
                self.checkpoints.sync_once()
            except AgentError as exc:
                errors.append(exc)
            self.bytes_uploaded += self.checkpoints.bytes_uploaded
            self.checkpoints.bytes_uploaded = 0

        failure = contract.read_failure(self.paths)
        if failure:
            logger.info("the algorithm left a failure reason: %s", failure)
        failed = algorithm_failed or bool(failure)
        model_artifacts = output_data = None
        if self.error is None and self.is_first_host:
            model_artifacts, output_data = self._upload_results(errors, model=not failed)
        elif not self.is_first_host and has_files(self.paths.model_dir):
            logger.info(
                "host %s: /opt/ml/model is uploaded by the first host only; skipping",
                self.current_host,
            )

        first_error = errors[0] if errors else None
        report = AgentReport(
            # The job-level outcome this host saw: the agent's error or the algorithm's.
            outcome="Failed" if errors or failed else "Completed",
            model_artifacts=model_artifacts,
            output_data=output_data,
            failure_reason=failure,
            agent_error=clip("; ".join(e.message for e in errors)) if errors else None,
            agent_error_kind=first_error.kind if first_error else None,
            bytes_downloaded=self.bytes_downloaded,
            bytes_uploaded=self.bytes_uploaded,
            final_metrics=read_metrics(self.paths),
        )
        logger.info(
            "finished: outcome %s, %d bytes down, %d bytes up",
            report.outcome,
            report.bytes_downloaded,
            report.bytes_uploaded,
        )
        return report

    def _upload_results(
        self, errors: list[AgentError], *, model: bool
    ) -> tuple[str | None, str | None]:
        model_artifacts = output_data = None
        try:
            store = self.stores.for_uri(self.config.output_path)
            if model:
                self.bytes_uploaded += upload_directory(
                    store,
                    self.paths.model_dir,
                    self.model_artifacts_uri,
                    what="the model",
                    tmp_dir=self.tmp_dir,
                )
                model_artifacts = self.model_artifacts_uri
            else:
                logger.info("the algorithm failed: no model is uploaded")
            if has_files(self.paths.output_data_dir):
                self.bytes_uploaded += upload_directory(
                    store,
                    self.paths.output_data_dir,
                    self.output_data_uri,
                    what="output data",
                    tmp_dir=self.tmp_dir,
                )
                output_data = self.output_data_uri
        except AgentError as exc:
            errors.append(exc)
        return model_artifacts, output_data
