"""Script-mode frameworks: the user brings a training script, the framework image the rest.

Each framework's runner lives in a sub-package (``frameworks/mxnet``,
``frameworks/xgboost``) and is started as ``python -m kubemaker_runtime.frameworks.<name>
train|serve``. What every framework does the same way (staging the user's code, the
``SM_*`` environment, running the script, SageMaker's handler functions at serving) is
in the shared modules beside them: :mod:`.usercode`, :mod:`.environment`, :mod:`.script`,
:mod:`.handlers`.

A framework may need its own Python environment (MXNet 1.9 needs numpy<1.24) or run with
the current interpreter (XGBoost is a dependency of the runtime's ``xgboost`` extra), so
this module also says, for local mode and tests, which interpreter runs it outside an
image. Nothing here imports a framework.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "KUBEMAKER_CACHE"


class FrameworkUnavailable(RuntimeError):
    """The framework's environment is not built on this machine (a user-fixable state)."""


@dataclass(frozen=True)
class OwnEnvironment:
    """A Python environment of the framework's own, apart from the runtime's."""

    #: Environment variable naming its interpreter.
    python_env: str
    #: Its default location, relative to ``$KUBEMAKER_CACHE`` (``~/.cache/kubemaker``).
    venv: str
    #: What builds it, for error messages.
    build_command: str


@dataclass(frozen=True)
class Framework:
    name: str
    #: ``python -m <module> train|serve`` runs the framework's container entry point.
    module: str
    #: None: the framework runs with the current interpreter (its packages are ours).
    environment: OwnEnvironment | None = None
    #: What the current interpreter must import to run it (without an environment of its own).
    packages: tuple[str, ...] = ()

    @property
    def uses_current_interpreter(self) -> bool:
        return self.environment is None

    def interpreter(self, environ: Mapping[str, str] | None = None) -> str:
        """The framework's Python: this one, or its own environment's; FrameworkUnavailable
        when that environment is not built."""
        own = self.environment
        if own is None:
            return sys.executable
        env = os.environ if environ is None else environ
        explicit = env.get(own.python_env)
        path = Path(explicit) if explicit else cache_dir(env) / own.venv / "bin" / "python"
        if not path.exists():
            source = f"${own.python_env}" if explicit else "the default location"
            raise FrameworkUnavailable(
                f"the {self.name} environment is missing ({path}, from {source}): "
                f"build it with `{own.build_command}`"
            )
        return str(path)

    def command(self, action: str, environ: Mapping[str, str] | None = None) -> list[str]:
        """The command that runs the image's entry point with ``train`` or ``serve``."""
        if action not in ("train", "serve"):
            raise ValueError(f"action must be train or serve, not {action!r}")
        return [self.interpreter(environ), "-m", self.module, action]


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env.get(CACHE_ENV) or Path.home() / ".cache" / "kubemaker")


FRAMEWORKS: dict[str, Framework] = {
    "mxnet": Framework(
        name="mxnet",
        module="kubemaker_runtime.frameworks.mxnet",
        environment=OwnEnvironment(
            python_env="KUBEMAKER_MXNET_PYTHON",
            venv="venv-mxnet",
            build_command="scripts/mxnet-env.sh",
        ),
    ),
    # SageMaker's XGBoost framework (script mode); also the xgboost image's `train` when
    # the job names an entry point (kubemaker_runtime.algorithms.xgboost dispatches).
    "xgboost": Framework(
        name="xgboost", module="kubemaker_runtime.frameworks.xgboost", packages=("xgboost",)
    ),
}


def get(name: str) -> Framework:
    try:
        return FRAMEWORKS[name]
    except KeyError:
        raise FrameworkUnavailable(
            f"unknown framework {name!r}; known: {', '.join(sorted(FRAMEWORKS))}"
        ) from None


def run_entrypoint(name: str, argv: Sequence[str] | None = None) -> int:
    """A framework image's entry point: ``train`` or ``serve``, as SageMaker starts its
    containers, each running ``<framework>.training.main`` or ``.serving.main``."""
    import argparse
    import importlib
    import logging
    import sys

    parser = argparse.ArgumentParser(
        prog=f"python -m kubemaker_runtime.frameworks.{name}",
        description=f"kubemaker's {name} framework container (SageMaker script mode).",
    )
    parser.add_argument("command", choices=["train", "serve"])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s %(levelname)s kubemaker-{name}: %(message)s",
        stream=sys.stderr,
    )
    module = "training" if args.command == "train" else "serving"
    main: Callable[[], int] = importlib.import_module(
        f"kubemaker_runtime.frameworks.{name}.{module}"
    ).main
    return main()
