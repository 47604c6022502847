"""``train``: run the user's MXNet code as SageMaker's MXNet containers do.

The steps every script-mode framework shares (the contract, staging the code and its
requirements.txt, running the user's process with its output unchanged, the failure
file in SageMaker's ``ExecuteUserScriptError`` wording, the code copied into the model)
are :mod:`kubemaker_runtime.frameworks.script`'s. What MXNet adds is how the user's
process starts (:func:`launch`):

- the interface: script mode (the entry point runs as a script, hyperparameters as
  ``--name value`` arguments, ``SM_*`` variables) or the original ``train()`` function
  (:mod:`.legacy`);
- with several hosts, the parameter-server kvstore's scheduler and servers
  (:mod:`.distributed`), the user's process being a ``dist_sync`` worker.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from kubemaker_runtime import contract
from kubemaker_runtime.frameworks import script
from kubemaker_runtime.frameworks.mxnet import code, distributed, legacy
from kubemaker_runtime.frameworks.mxnet.environment import (
    PARAMETER_SERVER_FLAG,
    TrainingEnvironment,
)
from kubemaker_runtime.frameworks.script import (
    EXIT_PLATFORM_ERROR,
    EXIT_USER_ERROR,
    UserProcess,
    error_message,
    failure_text,
    run_user_process,
)

logger = logging.getLogger(__name__)


def build_user_process(
    env: TrainingEnvironment,
    code_dir: Path,
    entry: Path,
    interface: code.Interface,
    base_env: Mapping[str, str],
) -> UserProcess:
    """The user's process: a script with arguments, or train() in a child interpreter."""
    # A stale DMLC_ROLE must not make the worker a server.
    clean = distributed.clean_env(base_env)
    if interface == "script":
        return script.script_process(env, code_dir, entry, clean)
    child_env = script.user_env(env, code_dir, clean)
    spec = {
        "code_dir": str(code_dir),
        "module": entry.stem,
        "kwargs": env.train_function_kwargs(),
    }
    child_env[legacy.SPEC_ENV] = json.dumps(spec)
    return UserProcess(
        argv=[sys.executable, "-m", legacy.__name__],
        display=f"train() of {entry.name}",
        env=child_env,
        cwd=code_dir,
    )


def launch(
    env: TrainingEnvironment, code_dir: Path, entry: Path, base_env: Mapping[str, str]
) -> script.Launch:
    """The user's process for its interface, and the parameter servers it needs."""
    interface = code.detect_interface(entry.read_text(encoding="utf-8", errors="replace"))
    logger.info("%s speaks the %s interface", entry.name, interface)
    process = build_user_process(env, code_dir, entry, interface, base_env)
    if len(env.hosts) < 2:
        return script.Launch(process)
    if interface == "script" and not env.parameter_server_enabled:
        logger.info(
            "%d hosts without %s: no parameter server is started",
            len(env.hosts),
            PARAMETER_SERVER_FLAG,
        )
        return script.Launch(process)
    try:
        layout = distributed.plan(env.hosts, env.current_host, base_env)
    except distributed.ParameterServerError as exc:
        raise script.PlatformFailure(str(exc)) from exc
    servers = distributed.ParameterServers(layout, distributed.clean_env(base_env))
    servers.start()
    process.env.update(distributed.worker_env(layout))

    def finish(succeeded: bool) -> None:
        if succeeded:
            servers.wait()
        else:
            servers.stop()

    return script.Launch(process, failed=servers.failed, finish=finish)


def train(paths: contract.Paths, environ: Mapping[str, str]) -> int:
    """Run one host's part of a training job; the exit code of the container."""
    return script.train(paths, environ, environment=TrainingEnvironment, launch=launch)


def main(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    return train(contract.Paths.from_env(env), env)


__all__ = [
    "EXIT_PLATFORM_ERROR",
    "EXIT_USER_ERROR",
    "build_user_process",
    "error_message",
    "failure_text",
    "launch",
    "main",
    "run_user_process",
    "train",
]
