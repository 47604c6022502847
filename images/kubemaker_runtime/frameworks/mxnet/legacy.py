"""SageMaker's original MXNet interface, run in a child process of the training runner.

The user's module defines ``train(...)``; the container imports it, calls ``train``
with the arguments its signature names (all of them when it takes ``**kwargs``), and
saves what it returns with the module's ``save(model, model_dir)`` or, without one,
with :func:`default_save`. Arguments: ``hyperparameters``, ``input_data_config``,
``channel_input_dirs``, ``output_data_dir``, ``model_dir``, ``num_gpus``, ``num_cpus``,
``hosts``, ``current_host``.

The runner passes what to call as JSON in :data:`SPEC_ENV`. This process imports the
user's module (and so mxnet) only after the ``DMLC_*`` worker variables are in place.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SPEC_ENV = "KUBEMAKER_MXNET_TRAIN_FUNCTION"


class UnsavableModel(Exception):
    """train() returned something the default save cannot write."""


def select_kwargs(function: Callable[..., Any], available: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments ``function`` asks for; everything when it takes ``**kwargs``."""
    parameters = inspect.signature(function).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return dict(available)
    return {p.name: available[p.name] for p in parameters if p.name in available}


def default_save(model: Any, model_dir: str) -> list[str]:
    """Save a Gluon block or a Module the way the default model server loads it back.

    A hybridized Gluon block is exported (``model-symbol.json`` + ``model-0000.params``);
    a Module is checkpointed with ``model-shapes.json``, as SageMaker's container did.
    Returns the files written.
    """
    import mxnet as mx

    prefix = os.path.join(model_dir, "model")
    if isinstance(model, mx.gluon.HybridBlock):
        try:
            model.export(prefix)
        except (RuntimeError, AssertionError, mx.base.MXNetError) as exc:
            raise UnsavableModel(
                "the Gluon network returned by train() cannot be exported: call "
                "net.hybridize() and run it once before returning it, or define "
                f"save(net, model_dir) ({exc})"
            ) from exc
        return ["model-symbol.json", "model-0000.params"]
    if isinstance(model, mx.module.BaseModule):
        model.save_checkpoint(prefix, 0)
        shapes = [{"name": name, "shape": list(shape)} for name, shape in model.data_shapes]
        Path(prefix + "-shapes.json").write_text(json.dumps(shapes))
        return ["model-symbol.json", "model-0000.params", "model-shapes.json"]
    if isinstance(model, mx.gluon.Block):
        raise UnsavableModel(
            "train() returned a Gluon Block that is not hybridizable: define "
            "save(net, model_dir) in your module, and model_fn to load it"
        )
    raise UnsavableModel(
        f"train() returned a {type(model).__name__}; return a Gluon network or a Module, "
        "or define save(model, model_dir)"
    )


def run(spec: Mapping[str, Any]) -> None:
    code_dir = str(spec["code_dir"])
    sys.path.insert(0, code_dir)
    os.chdir(code_dir)
    module = importlib.import_module(str(spec["module"]))
    train = getattr(module, "train", None)
    if not callable(train):
        raise TypeError(f"{spec['module']} defines no train() function")
    kwargs: dict[str, Any] = dict(spec["kwargs"])
    model = train(**select_kwargs(train, kwargs))
    if model is None:
        logger.info("train() returned nothing: nothing to save")
        return
    save = getattr(module, "save", None)
    if callable(save):
        save(model, kwargs["model_dir"])
    else:
        written = default_save(model, kwargs["model_dir"])
        logger.info("saved the model as %s", ", ".join(written))


def main() -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    run(json.loads(os.environ[SPEC_ENV]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
