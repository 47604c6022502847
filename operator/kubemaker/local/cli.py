"""``kubemaker local train|tune|transform|serve``: run a kind on this machine.

    kubemaker local train -f trainingjob.yaml [--workdir DIR]
    kubemaker local tune -f tuningjob.yaml [--workdir DIR]
    kubemaker local transform -f batchtransform.yaml [--workdir DIR]
    kubemaker local serve [--model WORKDIR|JOBDIR|model.tar.gz|URI|endpoint.yaml] [--port N]
    kubemaker local serve -f endpoint.yaml [--port N] [--capture-dir DIR]

Exit codes: 0 done; 1 the job (a tuning job's search, a transform) failed (the reason is printed);
2 nothing ran (a bad manifest or option, or this machine cannot run the job); 3 stopped
at maxRuntimeInSeconds; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kubemaker.local.errors import EXIT_INTERRUPTED, LocalError

if TYPE_CHECKING:
    from kubemaker.api import Endpoint
    from kubemaker.config import OperatorConfig

logger = logging.getLogger(__name__)

# Our own messages and the agent's; the libraries' chatter only when it matters.
_OWN_LOGGERS = ("kubemaker", "kubemaker_runtime")
_QUIET_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from kubemaker.local.record import DEFAULT_WORKDIR, WORKDIR_ENV

    workdir_help = (
        f"where jobs keep their hosts' files and logs (default ${WORKDIR_ENV}, "
        f"else ./{DEFAULT_WORKDIR})"
    )
    commands = parser.add_subparsers(dest="local_command", metavar="COMMAND", required=True)

    train = commands.add_parser(
        "train",
        help="run a TrainingJob manifest on this machine",
        description=(
            "Run a TrainingJob on this machine through the same agent code as on a cluster: "
            "stage its channels, run the algorithm, upload model.tar.gz to its output path."
        ),
    )
    train.add_argument("-f", "--file", type=Path, required=True, help="the TrainingJob manifest")
    train.add_argument("--workdir", type=Path, help=workdir_help)
    train.add_argument(
        "--config",
        help="operator configuration (images catalog); default $KUBEMAKER_CONFIG, else built-in",
    )
    train.add_argument(
        "--no-progress",
        action="store_true",
        help="no live status line (the default when stderr is not a terminal)",
    )

    tune = commands.add_parser(
        "tune",
        help="run a TuningJob's search on this machine, each trial a local training job",
        description=(
            "Run a TuningJob's search on this machine with the operator's planner: each "
            "trial is a TrainingJob run as `kubemaker local train` in a process of its own, "
            "at most maxParallelTrainingJobs at once; trials the search stops (early "
            "stopping, Hyperband, the end of the search, Ctrl-C) end Stopped. The trials, "
            "their logs and tuning.json (what `kubemaker tuning plot --dir` reads) are kept "
            "under <workdir>/<tuning job>."
        ),
    )
    tune.add_argument("-f", "--file", type=Path, required=True, help="the TuningJob manifest")
    tune.add_argument("--workdir", type=Path, help=workdir_help)
    tune.add_argument(
        "--config",
        help="operator configuration (images catalog); default $KUBEMAKER_CONFIG, else built-in",
    )

    transform = commands.add_parser(
        "transform",
        help="run a BatchTransform on this machine: its model's server and the transformer",
        description=(
            "Run a BatchTransform on this machine: the model's own server (as in a transform "
            "pod) and the same transformer, over every object under transformInput; writes "
            "<object>.out under transformOutput.s3OutputPath. Run again after an "
            "interruption, it skips the objects already done."
        ),
    )
    transform.add_argument(
        "-f", "--file", type=Path, required=True, help="the BatchTransform manifest"
    )
    transform.add_argument("--workdir", type=Path, help=workdir_help)
    transform.add_argument(
        "--startup-timeout",
        type=float,
        default=120.0,
        help="seconds the model server may take to answer /ping (default 120)",
    )
    transform.add_argument(
        "--config",
        help="operator configuration (images catalog); default $KUBEMAKER_CONFIG, else built-in",
    )

    serve = commands.add_parser(
        "serve",
        help="serve a trained model, or a whole Endpoint, on a local port",
        description=(
            "Serve a model with its algorithm's model server: the workdir's latest trained "
            "job by default, or what --model names. With -f endpoint.yaml, every variant "
            "of the Endpoint gets its own model server behind the Endpoint's router."
        ),
    )
    serve.add_argument(
        "-f",
        "--file",
        type=Path,
        help=(
            "an Endpoint manifest: serve every variant (and the shadow) behind the router "
            "on --port; with --variant, that variant alone"
        ),
    )
    serve.add_argument(
        "--model",
        help=(
            "a job's work directory (or a workdir: its latest completed job), a TrainingJob "
            "or Endpoint manifest, or a model.tar.gz (path, file:// or s3://)"
        ),
    )
    serve.add_argument("--workdir", type=Path, help=workdir_help)
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080; 0: a free one)")
    serve.add_argument(
        "--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument("--workers", type=int, default=1, help="model server workers (default 1)")
    serve.add_argument(
        "--variant",
        help=(
            "serve this production variant of the Endpoint alone, without the router "
            "(default: --model serves the first, unless the Endpoint has several variants, "
            "a shadow or capture)"
        ),
    )
    serve.add_argument(
        "--capture-dir",
        type=Path,
        help="write the Endpoint's data capture here instead of its destinationS3Uri",
    )
    serve.add_argument("--algorithm", help="built-in algorithm serving a bare model.tar.gz")
    serve.add_argument("--framework", help="script-mode framework serving a bare model.tar.gz")
    serve.add_argument("--image", help="image serving a bare model.tar.gz (needs Docker)")
    serve.add_argument(
        "--startup-timeout",
        type=float,
        default=120.0,
        help="seconds the server(s) may take to answer /ping (default 120)",
    )
    serve.add_argument(
        "--config",
        help="operator configuration (images catalog); default $KUBEMAKER_CONFIG, else built-in",
    )


def configure_logging(handler: logging.Handler | None = None) -> None:
    handler = handler or logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("kubemaker: %(message)s"))
    for name in _OWN_LOGGERS:
        own = logging.getLogger(name)
        own.setLevel(logging.INFO)
        own.handlers[:] = [handler]
        own.propagate = False
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def run(args: argparse.Namespace) -> int:
    try:
        if args.local_command == "train":
            return run_train(args)
        if args.local_command == "tune":
            return run_tune(args)
        if args.local_command == "transform":
            return run_local_transform(args)
        return run_serve(args)
    except LocalError as exc:
        print(f"kubemaker local {args.local_command}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"kubemaker local {args.local_command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _operator_config(path: str | None) -> OperatorConfig:
    from kubemaker.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise LocalError(str(exc)) from None


def run_train(args: argparse.Namespace) -> int:
    from kubemaker.local.manifest import load_training_job
    from kubemaker.local.progress import Display, DisplayHandler
    from kubemaker.local.record import default_workdir
    from kubemaker.local.training import Interrupted, LocalTrainingJob

    display = Display(live=False if args.no_progress else None)
    configure_logging(DisplayHandler(display))
    job = load_training_job(args.file)
    config = _operator_config(args.config)
    local_job = LocalTrainingJob(
        job,
        workdir=args.workdir or default_workdir(),
        config=config,
        display=display,
        manifest=args.file,
    )
    try:
        result = local_job.run()
    except Interrupted:
        print("kubemaker local train: interrupted while uploading", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(local_job.summary(result), flush=True)
    return result.exit_code


def run_tune(args: argparse.Namespace) -> int:
    from kubemaker.api import TuningJob
    from kubemaker.local.manifest import load
    from kubemaker.local.record import default_workdir
    from kubemaker.local.tuning import LocalTuningJob

    configure_logging()
    job = load(args.file, TuningJob)
    config = _operator_config(args.config)
    tuning = LocalTuningJob(
        job,
        workdir=args.workdir or default_workdir(),
        config=config,
        config_path=args.config,
        manifest=args.file,
    )
    status = tuning.run()
    print(tuning.summary(), flush=True)
    if status.hyper_parameter_tuning_job_status == "Failed":
        print(f"kubemaker local tune: {status.failure_reason}", file=sys.stderr)
    return tuning.exit_code()


def run_local_transform(args: argparse.Namespace) -> int:
    from kubemaker.api import BatchTransform
    from kubemaker.local.manifest import load
    from kubemaker.local.record import default_workdir
    from kubemaker.local.transform import run_transform

    configure_logging()
    job = load(args.file, BatchTransform)
    return run_transform(
        job,
        workdir=args.workdir or default_workdir(),
        config=_operator_config(args.config),
        startup_timeout=args.startup_timeout,
    )


def run_serve(args: argparse.Namespace) -> int:
    from kubemaker.local.record import default_workdir
    from kubemaker.local.serving import ServeOptions, resolve_model, serve

    configure_logging()
    if args.port < 0 or args.port > 65535:
        raise LocalError(f"--port {args.port}: not a port number")
    if args.workers < 1:
        raise LocalError(f"--workers {args.workers}: at least 1")
    if args.file is not None and args.model is not None:
        raise LocalError("-f and --model: give one of them")
    config = _operator_config(args.config)
    workdir = args.workdir or default_workdir()
    endpoint = _whole_endpoint(args)
    if endpoint is not None:
        return _serve_endpoint(args, endpoint, workdir, config)
    if args.capture_dir is not None:
        raise LocalError("--capture-dir: only for an Endpoint served with its router (-f)")
    served = resolve_model(
        str(args.file) if args.file is not None else args.model,
        workdir=workdir,
        config=config,
        variant=args.variant,
        algorithm=args.algorithm,
        framework=args.framework,
        image=args.image,
    )
    options = ServeOptions(
        address=args.address,
        port=args.port,
        workers=args.workers,
        startup_timeout=args.startup_timeout,
    )
    return serve(served, options, config)


def _whole_endpoint(args: argparse.Namespace) -> Endpoint | None:
    """The Endpoint to serve with its router: ``-f`` (no ``--variant``), or ``--model``
    naming an Endpoint manifest that needs the router."""
    from kubemaker.api import Endpoint
    from kubemaker.local.endpoint import needs_router
    from kubemaker.local.manifest import load_endpoint_or_training_job
    from kubemaker.local.serving import MANIFEST_SUFFIXES

    if args.variant is not None:
        return None
    if args.file is not None:
        resource = load_endpoint_or_training_job(args.file)
        if not isinstance(resource, Endpoint):
            raise LocalError(f"-f {args.file}: not an Endpoint manifest (use --model for a job)")
        return resource
    model = args.model
    if model is None or "://" in model or Path(model).suffix not in MANIFEST_SUFFIXES:
        return None
    if not Path(model).is_file():
        return None  # resolve_model says what is wrong
    resource = load_endpoint_or_training_job(Path(model))
    if isinstance(resource, Endpoint) and needs_router(resource):
        return resource
    return None


def _serve_endpoint(
    args: argparse.Namespace, endpoint: Endpoint, workdir: Path, config: OperatorConfig
) -> int:
    from kubemaker.local.endpoint import EndpointOptions, resolve_variants, serve_endpoint

    for option in ("algorithm", "framework", "image"):
        if getattr(args, option) is not None:
            raise LocalError(
                f"--{option}: only for a bare model.tar.gz; an Endpoint's variants name "
                "their models"
            )
    variants = resolve_variants(endpoint, workdir, config)
    options = EndpointOptions(
        address=args.address,
        port=args.port,
        workers=args.workers,
        startup_timeout=args.startup_timeout,
        capture_dir=args.capture_dir,
    )
    return serve_endpoint(endpoint, variants, options, workdir=workdir, config=config)
