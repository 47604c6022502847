"""``train`` of every script-mode framework: run the user's code as SageMaker's toolkit does.

1. read the contract (config files written by the agent) and count GPUs and CPUs;
2. stage the code (``sagemaker_submit_directory``), install its requirements.txt;
3. let the framework make the user's process (:data:`Launcher`): by default the entry
   point as a script, the hyperparameters as ``--name value`` arguments and the ``SM_*``
   variables (:func:`script_launch`); MXNet adds its ``train()`` interface and its
   parameter servers;
4. run the user's process, streaming its output unchanged; on failure leave the reason
   in ``/opt/ml/output/failure`` (SageMaker's ``ExecuteUserScriptError`` text);
5. on success, copy the code into the model directory so model.tar.gz is servable.

Nothing here touches the numerics: the user's process gets the same interpreter, the
same data paths and its own seeds, so a run through kubemaker matches a direct one.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, TypeVar

from kubemaker_runtime import contract
from kubemaker_runtime.frameworks import usercode
from kubemaker_runtime.frameworks.environment import TrainingEnvironment

logger = logging.getLogger(__name__)

STDERR_TAIL_LINES = 200
ERROR_MESSAGE_LIMIT = 600
EXIT_USER_ERROR = 2
EXIT_PLATFORM_ERROR = 3

Env = TypeVar("Env", bound=TrainingEnvironment)


class PlatformFailure(Exception):
    """Something the framework runs beside the user's code failed: not the user's to fix."""


@dataclass(frozen=True)
class UserProcess:
    argv: list[str]
    # What the failure message shows as the command (the user's view of it).
    display: str
    env: dict[str, str]
    cwd: Path


@dataclass(frozen=True)
class Launch:
    """The user's process, and what the framework runs beside it (if anything)."""

    process: UserProcess
    #: Polled while the user's process runs: why it must stop (a helper died), or None.
    failed: Callable[[], str | None] | None = None
    #: Called once the user's process has ended, with whether it succeeded.
    finish: Callable[[bool], None] | None = None


#: A framework's way to start the user's code: (environment, code dir, entry point, our
#: environment) -> Launch. Raises UserCodeError (the user's) or PlatformFailure.
Launcher = Callable[[Env, Path, Path, Mapping[str, str]], Launch]


def user_env(
    env: TrainingEnvironment, code_dir: Path, base_env: Mapping[str, str]
) -> dict[str, str]:
    """The user's process environment: ours, the ``SM_*`` variables, the code importable."""
    child = dict(base_env)
    child.update(env.sm_env(code_dir))
    child["PYTHONUNBUFFERED"] = "1"
    child["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(code_dir), base_env.get("PYTHONPATH", "")) if p
    )
    return child


def script_process(
    env: TrainingEnvironment, code_dir: Path, entry: Path, base_env: Mapping[str, str]
) -> UserProcess:
    """``python <entry point> --name value ...`` in the code directory (``sh`` for a .sh)."""
    args = contract.to_cmd_args(env.hyperparameters)
    runner = ["/bin/sh"] if entry.suffix == ".sh" else [sys.executable]
    argv = [*runner, str(entry), *args]
    display = shlex.join([Path(argv[0]).name, entry.name, *args])
    return UserProcess(
        argv=argv, display=display, env=user_env(env, code_dir, base_env), cwd=code_dir
    )


def script_launch(
    env: TrainingEnvironment, code_dir: Path, entry: Path, base_env: Mapping[str, str]
) -> Launch:
    """Script mode and nothing beside it (every host runs the script; SageMaker's way)."""
    return Launch(script_process(env, code_dir, entry, base_env))


# --- what a failure says ------------------------------------------------------------------

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


# --- running it ---------------------------------------------------------------------------


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
    process: UserProcess, failed: Callable[[], str | None] | None = None
) -> tuple[int, list[str], str | None]:
    """Run it to the end; returns (exit code, stderr tail, why ``failed`` stopped it)."""
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
    helper_failure = None
    try:
        while True:
            try:
                exit_code = child.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if failed is not None and helper_failure is None and (helper_failure := failed()):
                    # The user's process would wait for a dead helper forever.
                    logger.error("%s; stopping the training process", helper_failure)
                    child.terminate()
    finally:
        signal.signal(signal.SIGTERM, previous)
        tee.join(timeout=10)
    return exit_code, list(tee.lines), helper_failure


def train(
    paths: contract.Paths,
    environ: Mapping[str, str],
    *,
    environment: type[Env],
    launch: Launcher[Env],
) -> int:
    """Run one host's part of a training job; the exit code of the container."""
    try:
        env = environment.load(paths, environ)
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
        code_dir = usercode.stage_code(env.submit_directory, paths.code_dir)
        entry = usercode.entry_point_path(code_dir, env.program)
        usercode.install_requirements(code_dir)
        launched = launch(env, code_dir, entry, environ)
    except usercode.UserCodeError as exc:
        logger.error("%s", exc)
        contract.write_failure(paths, f"ClientError: {exc}")
        return EXIT_USER_ERROR
    except PlatformFailure as exc:
        logger.error("%s", exc)
        contract.write_failure(paths, f"PlatformError: {exc}")
        return EXIT_PLATFORM_ERROR
    process = launched.process
    logger.info("running %s", process.display)

    exit_code, stderr_tail, helper_failure = run_user_process(process, launched.failed)
    if launched.finish is not None:
        launched.finish(exit_code == 0)
    if helper_failure:
        contract.write_failure(paths, f"PlatformError: {helper_failure}")
        return EXIT_PLATFORM_ERROR
    if exit_code != 0:
        if contract.read_failure(paths) is None:  # the script may have left its own
            message = error_message(stderr_tail)
            contract.write_failure(paths, failure_text(exit_code, message, process.display))
        logger.error("%s failed with exit code %d", process.display, exit_code)
        return exit_code if 0 < exit_code < 128 else 1
    usercode.copy_code_into_model(code_dir, paths.model_dir)
    logger.info("training finished")
    return 0
