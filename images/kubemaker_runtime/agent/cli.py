"""``kubemaker-agent``: the training pod's native sidecar and its startup probe.

kubemaker-agent sidecar   prepare, mark ready, feed pipes and sync checkpoints
                          until SIGTERM, then finish and write the report
kubemaker-agent probe     exit 0 once the sidecar is ready (the startup probe)
kubemaker-agent fetch-model --uri URI --dest DIR
                          unpack a model.tar.gz (a serving pod's init container)
kubemaker-agent transform a BatchTransform instance's share of the input objects,
                          through the model server beside it (the pod's main container)
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubemaker_runtime.protocol import AgentConfig

logger = logging.getLogger("kubemaker_runtime.agent")

# Only the standard library at import: the probe runs this module every few seconds.
AGENT_CONFIG_ENV = "KUBEMAKER_AGENT_CONFIG"  # = protocol.AGENT_CONFIG_ENV

TRANSFORM_CONFIG_ENV = "KUBEMAKER_TRANSFORM_CONFIG"  # = protocol.TRANSFORM_CONFIG_ENV
METRICS_PORT_ENV = "KUBEMAKER_METRICS_PORT"
STATE_DIR_ENV = "KUBEMAKER_AGENT_STATE_DIR"
DEFAULT_STATE_DIR = "/tmp/kubemaker-agent"
TERMINATION_LOG_ENV = "KUBEMAKER_TERMINATION_LOG"
LOG_LEVEL_ENV = "KUBEMAKER_LOG_LEVEL"
READY_FILE = "ready"

EXIT_OK = 0
EXIT_AGENT_FAILED = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubemaker-agent", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--state-dir",
        default=os.environ.get(STATE_DIR_ENV, DEFAULT_STATE_DIR),
        help=f"where the ready marker lives (env {STATE_DIR_ENV}, default {DEFAULT_STATE_DIR})",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sidecar = sub.add_parser("sidecar", help="run as the training pod's native sidecar")
    sidecar.add_argument(
        "--config-file",
        type=Path,
        help=f"read the AgentConfig JSON from this file instead of env {AGENT_CONFIG_ENV}",
    )
    sidecar.add_argument(
        "--base-dir",
        help="the container contract's base dir (default $SAGEMAKER_BASE_DIR, else /opt/ml)",
    )
    sidecar.add_argument(
        "--host-index",
        type=int,
        help="this host's index in the config's hosts (default $JOB_COMPLETION_INDEX)",
    )
    sidecar.add_argument(
        "--termination-log",
        default=os.environ.get(TERMINATION_LOG_ENV, "/dev/termination-log"),
        help=f"where the AgentReport goes (env {TERMINATION_LOG_ENV})",
    )
    sidecar.add_argument("--workers", type=int, default=8, help="parallel transfers")
    probe = sub.add_parser("probe", help="exit 0 when the sidecar has staged the inputs")
    fetch = sub.add_parser("fetch-model", help="unpack model.tar.gz into a directory")
    fetch.add_argument("--uri", required=True, help="s3://, file:// URI of model.tar.gz")
    fetch.add_argument("--dest", type=Path, default=Path("/opt/ml/model"), help="where to unpack")
    fetch.add_argument(
        "--termination-log",
        default=os.environ.get(TERMINATION_LOG_ENV, "/dev/termination-log"),
        help=f"where a failure's message goes (env {TERMINATION_LOG_ENV})",
    )
    transform = sub.add_parser("transform", help="a BatchTransform instance's transformer")
    transform.add_argument(
        "--config-file",
        type=Path,
        help=f"read the TransformConfig JSON from this file instead of env {TRANSFORM_CONFIG_ENV}",
    )
    transform.add_argument(
        "--index",
        type=int,
        help="this instance's index (default $JOB_COMPLETION_INDEX, else 0)",
    )
    transform.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get(METRICS_PORT_ENV, "0") or 0),
        help=f"serve progress as Prometheus metrics on this port (env {METRICS_PORT_ENV}; 0: no)",
    )
    transform.add_argument(
        "--termination-log",
        default=os.environ.get(TERMINATION_LOG_ENV, "/dev/termination-log"),
        help=f"where the TransformReport goes (env {TERMINATION_LOG_ENV})",
    )
    for subparser in (sidecar, probe):
        # Also accepted after the subcommand; SUPPRESS keeps the main parser's default.
        subparser.add_argument("--state-dir", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def configure_logging() -> None:
    level = os.environ.get(LOG_LEVEL_ENV, "INFO").upper()
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # boto's own INFO lines (credential discovery) would drown the progress log.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def load_config(config_file: Path | None) -> AgentConfig:
    from kubemaker_runtime.protocol import AgentConfig

    text = config_file.read_text() if config_file else os.environ.get(AGENT_CONFIG_ENV)
    if not text:
        raise ValueError(f"no agent config: set {AGENT_CONFIG_ENV} or pass --config-file")
    return AgentConfig.model_validate_json(text)


def probe(state_dir: Path) -> int:
    return EXIT_OK if (state_dir / READY_FILE).exists() else EXIT_AGENT_FAILED


def run_sidecar(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from kubemaker_runtime.agent.core import Agent, host_index_from_env
    from kubemaker_runtime.agent.errors import AgentError
    from kubemaker_runtime.agent.report import write_report
    from kubemaker_runtime.contract import Paths
    from kubemaker_runtime.protocol import AgentReport

    # The algorithm container may run as any user: what the agent creates in the shared
    # volume (directories, staged data, FIFOs) must be writable by it too.
    os.umask(0)
    state_dir = Path(args.state_dir)
    ready = state_dir / READY_FILE
    ready.unlink(missing_ok=True)
    finish_now = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s: finishing", signal.Signals(signum).name)
        finish_now.set()
        if agent is not None and not ready.exists():
            agent.cancel()

    agent: Agent | None = None
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        config = load_config(args.config_file)
        host_index = args.host_index if args.host_index is not None else host_index_from_env(config)
    except (ValueError, ValidationError, AgentError) as exc:
        message = exc.message if isinstance(exc, AgentError) else str(exc)
        logger.error("bad agent configuration: %s", message)
        report = AgentReport(
            outcome="Failed", agent_error=message[:1024], agent_error_kind="platform"
        )
        write_report(report, args.termination_log)
        return EXIT_AGENT_FAILED

    paths = Paths(args.base_dir) if args.base_dir else Paths.from_env()
    agent = Agent(config, host_index=host_index, paths=paths, workers=args.workers)
    try:
        agent.prepare()
    except AgentError as exc:
        logger.error("%s error: %s", exc.kind, exc.message)
        report = agent.finish()
        write_report(report, args.termination_log)
        return EXIT_AGENT_FAILED

    with agent.running():
        state_dir.mkdir(parents=True, exist_ok=True)
        ready.touch()
        logger.info("ready: the algorithm may start")
        # Wake now and then so signals are handled promptly on every platform.
        while not finish_now.wait(1.0):
            pass
    report = agent.finish()
    message = write_report(report, args.termination_log)
    logger.info("report: %s", message)
    return EXIT_OK if report.outcome == "Completed" else EXIT_AGENT_FAILED


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "probe":
        return probe(Path(args.state_dir))
    configure_logging()
    if args.command == "fetch-model":
        return run_fetch(args)
    if args.command == "transform":
        from kubemaker_runtime.transform.main import run_transform

        return run_transform(
            config_file=args.config_file,
            index=args.index,
            metrics_port=args.metrics_port,
            termination_log=Path(args.termination_log),
        )
    return run_sidecar(args)


def run_fetch(args: argparse.Namespace) -> int:
    from kubemaker_runtime.agent.fetch import FetchError, fetch_model

    try:
        count = fetch_model(args.uri, args.dest)
    except FetchError as exc:
        logger.error("%s", exc)
        # Outside a pod there is no termination log: the log line is the message.
        with contextlib.suppress(OSError):
            Path(args.termination_log).write_text(str(exc)[:4096])
        return EXIT_AGENT_FAILED
    logger.info("unpacked %d file(s) of %s into %s", count, args.uri, args.dest)
    return EXIT_OK
