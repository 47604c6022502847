"""``serve``: the MXNet model server, with SageMaker's MXNet handler functions.

The user's module (``SAGEMAKER_PROGRAM``, found in ``<model_dir>/code/`` where training
put it, else in ``SAGEMAKER_SUBMIT_DIRECTORY``) may define any of:

- ``model_fn(model_dir)``: load the model (default: the exported Gluon network,
  ``model-symbol.json`` + ``model-0000.params``, as a ``SymbolBlock``);
- ``transform_fn(model, data, input_content_type, accept)``: the whole request,
  returning the body or ``(body, content_type)``; or else, one step each:
- ``input_fn(data, content_type)`` (default: JSON, CSV or NPY to an NDArray),
  ``predict_fn(data, model)`` (default: ``model(data)``) and
  ``output_fn(prediction, accept)`` (default: JSON, CSV or NPY from the NDArray).

Without a module the defaults serve any exported Gluon network. Finding the module and
calling its functions is every framework's (:mod:`kubemaker_runtime.frameworks.handlers`);
the defaults here are MXNet's.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from kubemaker_runtime import contract
from kubemaker_runtime.frameworks.handlers import (
    HANDLERS,
    Defaults,
    HandlerModel,
    defines_handlers,
    find_user_module,
)
from kubemaker_runtime.processors import available_gpus
from kubemaker_runtime.serving import v2
from kubemaker_runtime.serving.errors import InvalidInput, UnsupportedMediaType

logger = logging.getLogger(__name__)

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
NPY_MAGIC = b"\x93NUMPY"
DEFAULT_TYPES = (JSON, CSV, NPY)
# What a user's input_fn / transform_fn may be sent; the defaults decode the first three.
USER_REQUEST_TYPES = (
    *DEFAULT_TYPES,
    "application/jsonlines",
    "application/octet-stream",
    "text/plain",
    "image/jpeg",
    "image/png",
)


# --- defaults ----------------------------------------------------------------------------


def context() -> Any:
    import mxnet as mx

    return mx.gpu(0) if available_gpus(os.environ) > 0 else mx.cpu()


def default_model_fn(model_dir: str | Path) -> Any:
    """An exported Gluon network: ``<prefix>-symbol.json`` and its latest ``.params``."""
    import mxnet as mx

    model_dir = Path(model_dir)
    symbols = sorted(model_dir.glob("*-symbol.json"))
    if not symbols:
        raise FileNotFoundError(
            f"no *-symbol.json in {model_dir}: export the network (net.hybridize(); "
            "net.export(...)) or define model_fn in your script"
        )
    symbol_file = symbols[0]
    prefix = symbol_file.name.removesuffix("-symbol.json")
    params = sorted(model_dir.glob(f"{prefix}-*.params"))
    if not params:
        raise FileNotFoundError(f"no {prefix}-NNNN.params beside {symbol_file.name}")
    symbol = mx.sym.load(str(symbol_file))
    saved = mx.nd.load(str(params[-1]))
    names = {key.split(":", 1)[-1] for key in saved}
    inputs = [name for name in symbol.list_inputs() if name not in names]
    logger.info("loading %s (inputs %s) from %s", symbol_file.name, inputs, params[-1].name)
    return mx.gluon.SymbolBlock.imports(str(symbol_file), inputs, str(params[-1]), ctx=context())


def default_input_fn(data: bytes, content_type: str) -> Any:
    """JSON (a nested list, or ``{"instances": ...}``), CSV rows or NPY, to an NDArray."""
    import mxnet as mx

    return mx.nd.array(read_numbers(data, content_type), ctx=context())


def read_numbers(data: bytes, content_type: str) -> np.ndarray:
    """The default input_fn's parsing: a JSON, CSV or NPY body to a float32 array.

    Every way a body can be malformed is the caller's :class:`InvalidInput` (a 400).
    """
    try:
        if content_type == JSON:
            value = json.loads(data)
            if isinstance(value, dict):
                value = value.get("instances", value.get("inputs"))
            array = np.asarray(value, dtype=np.float32)
        elif content_type == CSV:
            text = data.decode("utf-8")
            rows = [line for line in text.splitlines() if line.strip()]
            array = np.asarray(
                [[float(cell) for cell in row.split(",")] for row in rows], dtype=np.float32
            )
        elif content_type == NPY:
            # Only the .npy format: np.load would also open an .npz (zip) archive.
            if not data.startswith(NPY_MAGIC):
                raise InvalidInput(
                    "an application/x-npy body is one array written by numpy.save "
                    "(not an .npz archive or other data)"
                )
            array = np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32)
        else:
            raise UnsupportedMediaType(
                f"the default input_fn reads {', '.join(DEFAULT_TYPES)}, not {content_type}; "
                "define input_fn in your script for other types"
            )
    except RecursionError:
        # The json module gives up on nesting deeper than the interpreter's stack.
        raise InvalidInput(f"the {content_type} body is nested too deeply") from None
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the {content_type} body as numbers: {exc}") from None
    if array.ndim == 0 or array.dtype == object:
        raise InvalidInput("expected a list of rows of numbers")
    return array


def default_predict_fn(data: Any, model: Any) -> Any:
    import mxnet as mx

    try:
        output = model(data)
        output.wait_to_read()  # shape errors surface here, not at the first asnumpy()
    except mx.base.MXNetError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "MXNetError"
        raise InvalidInput(
            f"the network rejected an input of shape {tuple(data.shape)}: {first[:300]}"
        ) from None
    return output


def default_output_fn(prediction: Any, accept: str) -> bytes:
    array = prediction.asnumpy() if hasattr(prediction, "asnumpy") else np.asarray(prediction)
    if accept == JSON:
        return json.dumps(array.tolist()).encode()
    if accept == CSV:
        rows = array.reshape(len(array), -1) if array.ndim > 1 else array.reshape(-1, 1)
        return ("\n".join(",".join(repr(float(v)) for v in row) for row in rows) + "\n").encode()
    if accept == NPY:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue()
    raise UnsupportedMediaType(f"the default output_fn writes {', '.join(DEFAULT_TYPES)}")


class MXNetModel(HandlerModel):
    """The model server's Model for MXNet, driven by the user's handler functions."""

    platform = "mxnet"
    request_types: Sequence[str] = DEFAULT_TYPES
    response_types: Sequence[str] = DEFAULT_TYPES
    user_request_types: ClassVar[Sequence[str]] = USER_REQUEST_TYPES
    user_response_types: ClassVar[Sequence[str]] = (
        *DEFAULT_TYPES,
        "text/plain",
        "application/octet-stream",
    )
    defaults: ClassVar[Defaults] = Defaults(
        model_fn=default_model_fn,
        input_fn=default_input_fn,
        predict_fn=default_predict_fn,
        output_fn=default_output_fn,
    )

    def infer_v2(self, inputs: Any) -> dict[str, np.ndarray]:
        """Open Inference Protocol: the tensor goes to predict_fn, the output comes back."""
        if len(inputs) != 1:
            raise InvalidInput("this MXNet model takes exactly one input tensor")
        ((name, array),) = inputs.items()
        if array.dtype.kind not in "fiub":
            raise InvalidInput(
                f"input {name!r} is {v2.datatype_of(array)}: this MXNet model takes numbers "
                "(FP*, INT*, UINT* or BOOL)"
            )
        import mxnet as mx

        data = mx.nd.array(np.asarray(array, dtype=np.float32), ctx=context())
        result = self._predict_fn(data, self.model)
        return {"predict": result.asnumpy() if hasattr(result, "asnumpy") else np.asarray(result)}


def main() -> int:
    from kubemaker_runtime.serving import serve

    model_dir = os.environ.get("SM_MODEL_DIR") or str(contract.Paths.from_env().model_dir)
    serve(f"{__name__}:MXNetModel", model_dir)
    return 0


__all__ = ["HANDLERS", "MXNetModel", "defines_handlers", "find_user_module", "main"]
