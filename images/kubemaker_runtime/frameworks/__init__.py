"""Script-mode frameworks: the user brings a training script, the framework image the rest.

Each framework's runner lives in a sub-package (``frameworks/mxnet``) and is started as
``python -m kubemaker_runtime.frameworks.<name> train|serve`` (the image's entrypoint).
A framework may need its own Python environment (MXNet 1.9 needs numpy<1.24), so this
module also says, for local mode and tests, which interpreter runs it outside an image.
Nothing here imports a framework.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "KUBEMAKER_CACHE"


class FrameworkUnavailable(RuntimeError):
    """The framework's environment is not built on this machine (a user-fixable state)."""


@dataclass(frozen=True)
class Framework:
    name: str
    #: ``python -m <module> train|serve`` runs the framework's container entry point.
    module: str
    #: Environment variable naming the interpreter of the framework's environment.
    python_env: str
    #: Default environment, relative to ``$KUBEMAKER_CACHE`` (``~/.cache/kubemaker``).
    venv: str
    #: What builds that environment, for error messages.
    build_command: str

    def interpreter(self, environ: Mapping[str, str] | None = None) -> str:
        """The framework environment's Python; FrameworkUnavailable when it is not built."""
        env = os.environ if environ is None else environ
        explicit = env.get(self.python_env)
        path = Path(explicit) if explicit else cache_dir(env) / self.venv / "bin" / "python"
        if not path.exists():
            source = f"${self.python_env}" if explicit else "the default location"
            raise FrameworkUnavailable(
                f"the {self.name} environment is missing ({path}, from {source}): "
                f"build it with `{self.build_command}`"
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
        python_env="KUBEMAKER_MXNET_PYTHON",
        venv="venv-mxnet",
        build_command="scripts/mxnet-env.sh",
    ),
}


def get(name: str) -> Framework:
    try:
        return FRAMEWORKS[name]
    except KeyError:
        raise FrameworkUnavailable(
            f"unknown framework {name!r}; known: {', '.join(sorted(FRAMEWORKS))}"
        ) from None
