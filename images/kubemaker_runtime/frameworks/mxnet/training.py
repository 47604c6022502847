"""``train``: run the user's MXNet code as SageMaker's MXNet containers do.

1. read the contract (config files written by the agent) and count GPUs and CPUs;
2. stage the code (``sagemaker_submit_directory``), install its requirements.txt;
3. pick the interface: script mode (the entry point runs as a script, hyperparameters
   as ``--name value`` arguments, ``SM_*`` variables) or the original ``train()``
   function (:mod:`.legacy`);
4. with several hosts, start the parameter-server kvstore's scheduler and servers
   (:mod:`.distributed`) and make the user's process a ``dist_sync`` worker;
5. run the user's process, streaming its output unchanged; on failure leave the
   reason in ``/opt/ml/output/failure`` (SageMaker's ``ExecuteUserScriptError`` text);
6. on success, copy the code into the model directory so model.tar.gz is servable.

Nothing here touches the numerics: the user's process gets the same interpreter, the
same data paths and its own seeds, so a run through kubemaker matches a direct one.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

from kubemaker_runtime import contract
from kubemaker_runtime.frameworks.mxnet import code, distributed, legacy
from kubemaker_runtime.frameworks.mxnet.environment import TrainingEnvironment

logger = logging.getLogger(__name__)

STDERR_TAIL_LINES = 200
ERROR_MESSAGE_LIMIT = 600
EXIT_USER_ERROR = 2
EXIT_PLATFORM_ERROR = 3


@dataclass(frozen=True)
class UserProcess:
    argv: list[str]
    # What the failure message shows as the command (the user's view of it).
    display: str
    env: dict[str, str]
    cwd: Path


def build_user_process(
    env: TrainingEnvironment,
    code_dir: Path,
    entry: Path,
    interface: code.Interface,
    base_env: Mapping[str, str],
) -> UserProcess:
    """The user's process: a script with arguments, or train() in a child interpreter."""
    child_env = distributed.clean_env(base_env)
    child_env.update(env.sm_env(code_dir))
    child_env["PYTHONUNBUFFERED"] = "1"
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(code_dir), base_env.get("PYTHONPATH", "")) if p
    )
    if interface == "script":
        args = contract.to_cmd_args(env.hyperparameters)
        runner = ["/bin/sh"] if entry.suffix == ".sh" else [sys.executable]
        argv = [*runner, str(entry), *args]
        display = shlex.join([Path(argv[0]).name, entry.name, *args])
    else:
        spec = {
            "code_dir": str(code_dir),
            "module": entry.stem,
            "kwargs": env.train_function_kwargs(),
        }
        child_env[legacy.SPEC_ENV] = json.dumps(spec)
        argv = [sys.executable, "-m", legacy.__name__]
        display = f"train() of {entry.name}"
    return UserProcess(argv=argv, display=display, env=child_env, cwd=code_dir)


_TRACEBACK = "Traceback (most recent call last):"


def error_message(stderr_lines: Sequence[str]) -> str:
    """The exception a failed Python process printed last (else the end of its stderr)."""
    lines = [line.rstrip("\n") for line in stderr_lines]
    starts = [i for i, line in enumerate(lines) if line.startswith(_TRACEBACK)]
    if starts:
        after = lines[starts[-1] + 1 :]
        # The frames are indented; the exception and its message are not.
        found = [line for line in after if line and not line[0].isspace()]
        if found:
            return _clip(" ".join(found))
    tail = [line.strip() for line in lines if line.strip()][-5:]
    return _clip(" ".join(tail)) if tail else "(no output on stderr)"


def _clip(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= ERROR_MESSAGE_LIMIT else "..." + text[-ERROR_MESSAGE_LIMIT + 3 :]


def failure_text(exit_code: int, message: str, command: str) -> str:
    """sagemaker-training-toolkit's wording, which users grep their logs for."""
    return (
        "AlgorithmError: ExecuteUserScriptError:\n"
        f"ExitCode {exit_code}\n"
        f'ErrorMessage "{message}"\n'
        f'Command "{command}"'
    )


class _StderrTee(threading.Thread):
    """Copy a child's stderr to ours line by line, keeping the last lines."""

    def __init__(self, source: IO[bytes]) -> None:
        super().__init__(daemon=True, name="stderr-tee")
        self.source = source
        self.lines: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)

    def run(self) -> None:
        out = sys.stderr.buffer
        for raw in iter(self.source.readline, b""):
            out.write(raw)
            out.flush()
            self.lines.append(raw.decode("utf-8", errors="replace"))


def run_user_process(
    process: UserProcess, servers: distributed.ParameterServers | None = None
) -> tuple[int, list[str], str | None]:
    """Run it to the end; returns (exit code, stderr tail, kvstore failure if any)."""
    child = subprocess.Popen(process.argv, cwd=process.cwd, env=process.env, stderr=subprocess.PIPE)
    assert child.stderr is not None
    tee = _StderrTee(child.stderr)
    tee.start()

    def forward(signum: int, _frame: FrameType | None) -> None:
        # The pod is being stopped: let the user's code see the signal too.
        logger.info("received signal %d; passing it to the training process", signum)
        if child.poll() is None:
            child.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    ps_failure = None
    try:
        while True:
            try:
                exit_code = child.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if servers is not None and ps_failure is None and (ps_failure := servers.failed()):
                    # A worker without its servers would wait for them forever.
                    logger.error("%s; stopping the worker", ps_failure)
                    child.terminate()
    finally:
        signal.signal(signal.SIGTERM, previous)
        tee.join(timeout=10)
    return exit_code, list(tee.lines), ps_failure


def train(paths: contract.Paths, environ: Mapping[str, str]) -> int:
    """Run one host's part of a training job; the exit code of the container."""
    try:
        env = TrainingEnvironment.load(paths, environ)
    except (OSError, ValueError, KeyError) as exc:
        # The agent writes these files before we start: their absence is not the user's.
        reason = f"the container contract is incomplete under {paths.base}: {exc}"
        logger.error(reason)
        contract.write_failure(paths, f"PlatformError: {reason}")
        return EXIT_PLATFORM_ERROR
    logger.info(
        "host %s of %s, %d GPU(s), %d CPU(s)",
        env.current_host,
        env.hosts,
        env.num_gpus,
        env.num_cpus,
    )
    try:
        code_dir = code.stage_code(env.submit_directory, paths.code_dir)
        entry = code.entry_point_path(code_dir, env.program)
        code.install_requirements(code_dir)
        interface = code.detect_interface(entry.read_text(encoding="utf-8", errors="replace"))
    except code.UserCodeError as exc:
        logger.error("%s", exc)
        contract.write_failure(paths, f"ClientError: {exc}")
        return EXIT_USER_ERROR
    logger.info("running %s (%s)", entry.name, interface)

    process = build_user_process(env, code_dir, entry, interface, environ)
    servers = None
    if len(env.hosts) > 1 and (interface == "train-function" or env.parameter_server_enabled):
        try:
            layout = distributed.plan(env.hosts, env.current_host, environ)
        except distributed.ParameterServerError as exc:
            contract.write_failure(paths, f"PlatformError: {exc}")
            return EXIT_PLATFORM_ERROR
        servers = distributed.ParameterServers(layout, distributed.clean_env(environ))
        servers.start()
        process.env.update(distributed.worker_env(layout))
    elif len(env.hosts) > 1:
        logger.info(
            "%d hosts without %s: no parameter server is started",
            len(env.hosts),
            "sagemaker_parameter_server_enabled",
        )

    exit_code, stderr_tail, ps_failure = run_user_process(process, servers)
    if servers is not None:
        if exit_code == 0:
            servers.wait()
        else:
            servers.stop()
    if ps_failure:
        contract.write_failure(paths, f"PlatformError: {ps_failure}")
        return EXIT_PLATFORM_ERROR
    if exit_code != 0:
        if contract.read_failure(paths) is None:  # the script may have left its own
            message = error_message(stderr_tail)
            contract.write_failure(paths, failure_text(exit_code, message, process.display))
        logger.error("%s failed with exit code %d", process.display, exit_code)
        return exit_code if 0 < exit_code < 128 else 1
    code.copy_code_into_model(code_dir, paths.model_dir)
    logger.info("training finished")
    return 0


def main(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    return train(contract.Paths.from_env(env), env)


__all__ = ["main", "train"]
