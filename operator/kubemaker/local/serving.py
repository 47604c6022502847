"""``kubemaker local serve``: a trained model behind the algorithm's own model server.

The model is a local training job (its work directory, the workdir's latest, or a
TrainingJob manifest naming it), a ``model.tar.gz`` (a path, ``file://`` or ``s3://``),
or an Endpoint manifest (its production variant's ``modelDataUrl`` or
``trainingJobRef``). The archive is unpacked into a fresh serving base directory (what
/opt/ml is in a serving container) and the algorithm's ``serve`` runs with
``SAGEMAKER_BIND_TO_PORT``, as SageMaker starts a serving container. Once ``GET /ping``
answers 200 the URL is printed; Ctrl-C (or SIGTERM) stops the server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from kubemaker.api import Endpoint, ModelSource, ProductionVariant, TrainingJob
from kubemaker.builders.storage import storage_settings
from kubemaker.config import OperatorConfig
from kubemaker.local import launch, record
from kubemaker.local.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    LocalError,
    RunError,
)
from kubemaker.local.manifest import load_endpoint_or_training_job
from kubemaker.local.signals import signals_handled
from kubemaker_runtime import contract, processors
from kubemaker_runtime.archives import extract_all
from kubemaker_runtime.protocol import StorageConfig

logger = logging.getLogger(__name__)

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STOP_GRACE_SECONDS = 30.0
PING_INTERVAL_SECONDS = 0.2
# What the workdir's channels may hold that makes an example request for the curl hint.
EXAMPLE_CHANNELS = ("test", "validation", "train")
CSV_TYPES = ("text/csv", "csv")
XGBOOST_MODEL_FILE = "xgboost-model"


@dataclass(frozen=True)
class ModelToServe:
    label: str
    model_uri: str
    runtime: launch.Runtime | None  # None: decide from the archive (a bare model.tar.gz)
    storage: StorageConfig = field(default_factory=StorageConfig)
    environment: dict[str, str] = field(default_factory=dict)
    example_csv: Path | None = None


# --- what to serve ---------------------------------------------------------------------------


def from_training_job(
    job: TrainingJob, job_dir: Path | None, config: OperatorConfig
) -> ModelToServe:
    name = job.metadata.name
    status = job.status
    if status is None or status.training_job_status != "Completed" or not status.model_artifacts:
        state = status.training_job_status if status is not None else "not run"
        raise LocalError(f"TrainingJob {name} has no model to serve (it is {state})")
    algo = job.spec.algorithm_specification
    runtime = launch.resolve_runtime(
        algorithm_name=algo.algorithm_name,
        framework=algo.framework,
        image=algo.training_image,
        config=config,
        field="spec.algorithmSpecification",
    )
    environment = dict(job.spec.environment or {})
    if algo.entry_point:
        environment.setdefault(contract.SERVING_PROGRAM_ENV, algo.entry_point)
    if algo.source_dir:
        environment.setdefault(contract.SERVING_SUBMIT_DIRECTORY_ENV, algo.source_dir)
    return ModelToServe(
        label=f"TrainingJob {name}",
        model_uri=status.model_artifacts.s3_model_artifacts,
        runtime=runtime,
        storage=storage_settings(job.spec.storage, config),
        environment=environment,
        example_csv=example_csv(job, job_dir) if job_dir is not None else None,
    )


def example_csv(job: TrainingJob, job_dir: Path) -> Path | None:
    """A CSV file the job trained or validated on, for the example request."""
    channels = {c.channel_name: c for c in job.spec.input_data_config or ()}
    for name in EXAMPLE_CHANNELS:
        channel = channels.get(name)
        if channel is None or (channel.content_type or "").lower() not in CSV_TYPES:
            continue
        staged = record.host_dir(job_dir, 0) / "input" / "data" / name
        files = sorted(p for p in staged.rglob("*") if p.is_file()) if staged.is_dir() else []
        if files:
            return files[0]
    return None


def from_model_source(
    source: ModelSource, label: str, storage: StorageConfig, workdir: Path, config: OperatorConfig
) -> ModelToServe:
    if source.training_job_ref is not None:
        job_dir = workdir / source.training_job_ref.name
        served = from_training_job(record.read_record(job_dir), job_dir, config)
        if source.environment:
            served = replace(served, environment={**served.environment, **source.environment})
        return served
    if source.tuning_job_ref is not None:
        job_dir = best_trial_dir(workdir, source.tuning_job_ref.name, f"{label}.model")
        served = from_training_job(record.read_record(job_dir), job_dir, config)
        if source.environment:
            served = replace(served, environment={**served.environment, **source.environment})
        return served
    assert source.model_data_url is not None  # the model guarantees one of the three
    runtime = launch.resolve_runtime(
        algorithm_name=source.algorithm_name,
        framework=source.framework,
        image=source.image,
        config=config,
        field=f"{label}.model",
    )
    environment = dict(source.environment or {})
    if source.entry_point:
        environment.setdefault(contract.SERVING_PROGRAM_ENV, source.entry_point)
    if source.source_dir:
        environment.setdefault(contract.SERVING_SUBMIT_DIRECTORY_ENV, source.source_dir)
    return ModelToServe(label, source.model_data_url, runtime, storage, environment)


def best_trial_dir(workdir: Path, tuning_job: str, field_name: str) -> Path:
    """The job directory of a local tune's best trial (``kubemaker local tune`` keeps the
    search's status in ``<workdir>/<tuning job>/tuning.json``, its trials beside it)."""
    tuning, _ = record.read_tuning_record(workdir, tuning_job, field=f"{field_name}.tuningJobRef")
    status = tuning.get("status") or {}
    best = (status.get("bestTrainingJob") or {}).get("trainingJobName")
    if not best:
        state = status.get("hyperParameterTuningJobStatus") or "not started"
        raise LocalError(
            f"{field_name}.tuningJobRef: TuningJob {tuning_job} has no best trial yet "
            f"(it is {state})"
        )
    return workdir / tuning_job / str(best)


def endpoint_storage(endpoint: Endpoint, config: OperatorConfig) -> StorageConfig:
    """The object-store settings of the Endpoint's models: its own, else the operator's."""
    own = endpoint.spec.storage
    return StorageConfig(
        s3_endpoint_url=(own.s3_endpoint_url if own else None)
        or config.storage.s3_endpoint_url
        or None,
        region=(own.region if own else None) or config.storage.region or None,
    )


def from_variant(
    endpoint: Endpoint,
    variant: ProductionVariant,
    workdir: Path,
    config: OperatorConfig,
    *,
    shadow: bool = False,
) -> ModelToServe:
    """The model of one of the Endpoint's variants (production, or ``shadow``)."""
    if shadow:
        variants = endpoint.spec.shadow_production_variants or []
        label = f"spec.shadowProductionVariants.{variants.index(variant)}"
    else:
        label = f"spec.productionVariants.{endpoint.spec.production_variants.index(variant)}"
    storage = endpoint_storage(endpoint, config)
    served = from_model_source(variant.model, label, storage, workdir, config)
    if served.label == label:
        served = replace(
            served, label=f"Endpoint {endpoint.metadata.name} variant {variant.variant_name}"
        )
    return served


def from_endpoint(
    endpoint: Endpoint, variant: str | None, workdir: Path, config: OperatorConfig
) -> ModelToServe:
    variants = endpoint.spec.production_variants
    chosen = variants[0]
    if variant is not None:
        found = [v for v in variants if v.variant_name == variant]
        if not found:
            names = ", ".join(v.variant_name for v in variants)
            raise LocalError(
                f"Endpoint {endpoint.metadata.name} has no variant {variant!r} ({names})"
            )
        chosen = found[0]
    return from_variant(endpoint, chosen, workdir, config)


def explicit_runtime(
    algorithm: str | None, framework: str | None, image: str | None, config: OperatorConfig
) -> launch.Runtime | None:
    if not (algorithm or framework or image):
        return None
    return launch.resolve_runtime(
        algorithm_name=algorithm, framework=framework, image=image, config=config, field="--model"
    )


def resolve_model(
    model: str | None,
    *,
    workdir: Path,
    config: OperatorConfig,
    variant: str | None = None,
    algorithm: str | None = None,
    framework: str | None = None,
    image: str | None = None,
) -> ModelToServe:
    """What ``--model`` names (see the module's docstring)."""
    override = explicit_runtime(algorithm, framework, image, config)
    if model is None:
        job = record.latest_completed(workdir)
        served = from_training_job(job, workdir / job.metadata.name, config)
    elif "://" in model:
        served = ModelToServe(model, model, override)
    else:
        path = Path(model)
        if path.is_dir():
            if (path / record.RECORD_FILE).is_file():
                served = from_training_job(record.read_record(path), path, config)
            else:
                job = record.latest_completed(path)
                served = from_training_job(job, path / job.metadata.name, config)
        elif path.suffix in MANIFEST_SUFFIXES:
            resource = load_endpoint_or_training_job(path)
            if isinstance(resource, Endpoint):
                served = from_endpoint(resource, variant, workdir, config)
            else:
                job_dir = workdir / resource.metadata.name
                served = from_training_job(record.read_record(job_dir), job_dir, config)
        elif path.is_file():
            served = ModelToServe(str(path), path.resolve().as_uri(), override)
        else:
            raise LocalError(f"--model {model}: no such file or directory")
    if override is not None:
        served = replace(served, runtime=override)
    return served


# --- fetching and unpacking ------------------------------------------------------------------


def fetch_model(uri: str, storage: StorageConfig, dest_dir: Path) -> Path:
    """Download (or copy) ``model.tar.gz`` into ``dest_dir``; its local path."""
    from kubemaker_runtime.storage import StorageError, StoreFactory

    try:
        store = StoreFactory(storage).for_uri(uri)
        objects = store.list(uri)
        exact = [o for o in objects if o.uri.rstrip("/") == uri.rstrip("/")]
        if len(exact) != 1:
            raise LocalError(f"{uri} is not one file (found {len(objects)} objects under it)")
        archive = dest_dir / Path(exact[0].key).name
        store.download(exact[0], archive)
    except StorageError as exc:
        raise LocalError(f"cannot fetch the model {uri}: {exc.message}") from None
    return archive


def unpack(archive: Path, model_dir: Path) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            extract_all(tar, model_dir)
    except (tarfile.TarError, OSError) as exc:
        raise LocalError(f"{archive.name} is not a readable model archive: {exc}") from None


def detect_runtime(model_dir: Path, config: OperatorConfig) -> launch.Runtime:
    """The algorithm of a bare model.tar.gz: what its files say, else ask."""
    if (model_dir / XGBOOST_MODEL_FILE).is_file():
        return launch.resolve_runtime(
            algorithm_name="xgboost", framework=None, image=None, config=config, field="--model"
        )
    raise LocalError(
        "cannot tell which algorithm serves this model: pass --algorithm NAME, "
        "--framework NAME or --image IMAGE"
    )


# --- the server ------------------------------------------------------------------------------


def check_port_free(address: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((address, port))
        except OSError as exc:
            raise LocalError(
                f"cannot listen on {address}:{port} ({exc.strerror}): choose another port "
                "with --port (0 picks a free one)"
            ) from None


def example_request(url: str, example: Path | None, runtime: launch.Runtime) -> str:
    """A curl command a user can paste: a real row of the job's data when there is one."""
    endpoint = f"{url}/invocations"
    if example is not None:
        with contextlib.suppress(OSError, StopIteration), example.open(encoding="utf-8") as rows:
            first = next(line for line in rows if line.strip())
            features = first.strip().split(",", 1)[1] if "," in first else ""
            if features:
                return (
                    f"curl -s -X POST {endpoint} -H 'Content-Type: text/csv' "
                    f"--data-binary {shlex.quote(features)}"
                )
    if runtime.kind == "builtin" and runtime.name == "xgboost":
        return (
            f"curl -s -X POST {endpoint} -H 'Content-Type: text/csv' "
            "--data-binary @rows.csv   # features only, no label"
        )
    return f"curl -s -X POST {endpoint} -H 'Content-Type: application/json' -d @request.json"


def wait_for_ping(
    url: str,
    process: subprocess.Popen[bytes],
    timeout: float,
    stop: threading.Event,
    what: str = "the model server",
) -> bool:
    """True once GET /ping answers 200; False when ``stop`` is set first."""
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        code = process.poll()
        if code is not None:
            raise RunError(f"{what} exited with code {code} before it was ready")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    return True
        except urllib.error.HTTPError:
            pass  # up, but the model is still loading
        except OSError:
            pass  # not listening yet
        if time.monotonic() >= deadline:
            raise RunError(f"{what} did not answer GET {url}/ping with 200 in {timeout:.0f} s")
        stop.wait(PING_INTERVAL_SECONDS)
    return False


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event set by SIGINT or SIGTERM while the block runs (main thread only)."""
    stop = threading.Event()
    with signals_handled(lambda _signum, _frame: stop.set()):
        yield stop


def stop_server(process: subprocess.Popen[bytes], what: str = "the model server") -> None:
    """SIGTERM to the server's process group (its workers too), SIGKILL after a grace."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        logger.warning("%s did not stop within %.0f s: killing it", what, STOP_GRACE_SECONDS)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class ServeOptions:
    address: str = launch.LOOPBACK
    port: int = contract.DEFAULT_SERVING_PORT
    workers: int = 1
    startup_timeout: float = 120.0


@dataclass(frozen=True)
class Started:
    """A model server process started by :func:`start_server`, maybe not ready yet."""

    process: subprocess.Popen[bytes]
    url: str
    runtime: launch.Runtime


def prepare_model(served: ModelToServe, base: Path, config: OperatorConfig) -> launch.Runtime:
    """Fetch and unpack the model under ``base`` (its /opt/ml); what will serve it."""
    paths = contract.Paths(base)
    logger.info("fetching %s", served.model_uri)
    archive = fetch_model(served.model_uri, served.storage, base)
    unpack(archive, paths.model_dir)
    archive.unlink()
    runtime = served.runtime or detect_runtime(paths.model_dir, config)
    if runtime.kind == "docker":
        launch.require_docker(f"serving with {runtime.image}")
    return runtime


def start_server(
    served: ModelToServe,
    runtime: launch.Runtime,
    base: Path,
    *,
    address: str,
    port: int,
    workers: int,
    cleanup: contextlib.ExitStack,
) -> Started:
    """Start the model's server (prepared under ``base``) on ``address:port``;
    ``cleanup`` stops it (and removes a container)."""
    paths = contract.Paths(base)
    own = {
        **served.environment,
        contract.SERVING_MODEL_SERVER_WORKERS_ENV: str(workers),
    }
    if runtime.is_process:
        own.update(
            {
                contract.BASE_DIR_ENV: str(base),
                "SM_MODEL_DIR": str(paths.model_dir),
                contract.SERVING_BIND_TO_PORT_ENV: str(port),
                # kubemaker_runtime.serving.settings.BIND_ADDRESS_ENV
                "KUBEMAKER_BIND_ADDRESS": address,
                "PYTHONUNBUFFERED": "1",
                **runtime.process_env(os.environ),
            }
        )
        command = runtime.process_command("serve")
    else:
        container = f"kubemaker-serve-{port}"
        # Stopping `docker run` stops the container; killing it would not.
        cleanup.callback(
            subprocess.run, ["docker", "rm", "-f", container], capture_output=True, check=False
        )
        command = launch.build_docker_serve_command(
            runtime.image,
            container=container,
            model_dir=paths.model_dir,
            address=address,
            port=port,
            env_names=sorted(own),
            gpus=processors.available_gpus(),
        )
    host = launch.LOOPBACK if address in ("0.0.0.0", "") else address
    logger.info("starting %s: %s", runtime.describe(), " ".join(command))
    process = subprocess.Popen(
        command,
        env={**os.environ, **own},
        cwd=base,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    cleanup.callback(stop_server, process)
    return Started(process, f"http://{host}:{port}", runtime)


def serve(served: ModelToServe, options: ServeOptions, config: OperatorConfig) -> int:
    """Fetch, unpack and serve until stopped; the exit code."""
    port = options.port or launch.free_port(options.address)
    check_port_free(options.address, port)
    with contextlib.ExitStack() as cleanup:
        base = Path(tempfile.mkdtemp(prefix="kubemaker-serve-"))
        cleanup.callback(shutil.rmtree, base, True)
        runtime = prepare_model(served, base, config)
        with stop_signals() as stop:
            started = start_server(
                served,
                runtime,
                base,
                address=options.address,
                port=port,
                workers=options.workers,
                cleanup=cleanup,
            )
            process, url = started.process, started.url
            if not wait_for_ping(url, process, options.startup_timeout, stop):
                return EXIT_INTERRUPTED
            print(f"Serving {served.label} with {runtime.describe()} at {url}", flush=True)
            print(f"  model: {served.model_uri}", flush=True)
            print(f"  try:   {example_request(url, served.example_csv, runtime)}", flush=True)
            print("  stop:  Ctrl-C", flush=True)
            while not stop.is_set():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = process.wait(0.5)
                    raise RunError(f"the model server stopped by itself (exit code {code})")
            logger.info("stopping the model server")
    return EXIT_OK
