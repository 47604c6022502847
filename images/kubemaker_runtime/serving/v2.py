"""Open Inference Protocol (KServe v2) JSON tensors <-> numpy arrays.

Only the JSON encoding is supported (not the binary-data extension): that is what
KServe's, MLServer's and Triton's HTTP clients send by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import prod
from typing import Any

import numpy as np
import orjson

from kubemaker_runtime.serving.errors import InvalidInput

DTYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}
_DATATYPE_BY_KIND = {np.dtype(t).str: name for name, t in DTYPES.items() if name != "BYTES"}


def datatype_of(array: np.ndarray) -> str:
    """The v2 datatype name of a numpy array."""
    name = _DATATYPE_BY_KIND.get(array.dtype.str) or _DATATYPE_BY_KIND.get(
        array.dtype.newbyteorder("=").str
    )
    if name:
        return name
    if array.dtype.kind in "OUS":
        return "BYTES"
    raise TypeError(f"no Open Inference Protocol datatype for numpy dtype {array.dtype}")


def decode_request(body: bytes) -> tuple[str | None, dict[str, np.ndarray]]:
    """Parse an inference request: its id and its input tensors by name."""
    try:
        request = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise InvalidInput(f"the request body is not valid JSON: {error}") from None
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise InvalidInput('an inference request is a JSON object with an "inputs" list')
    if not request["inputs"]:
        raise InvalidInput('"inputs" is empty')
    tensors: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request["inputs"]):
        array, name = _decode_tensor(tensor, index)
        tensors[name] = array
    request_id = request.get("id")
    return (str(request_id) if request_id is not None else None), tensors


def _decode_tensor(tensor: Any, index: int) -> tuple[np.ndarray, str]:
    where = f"inputs[{index}]"
    if not isinstance(tensor, dict):
        raise InvalidInput(f"{where} must be an object with name, shape, datatype and data")
    missing = [key for key in ("name", "shape", "datatype", "data") if key not in tensor]
    if missing:
        raise InvalidInput(f"{where} lacks {', '.join(missing)}")
    name, shape, datatype = tensor["name"], tensor["shape"], tensor["datatype"]
    shown = repr(name)
    where = f"{where} ({shown if len(shown) <= 60 else shown[:57] + '...'})"
    # bool is an int to Python, not to numpy's reshape.
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise InvalidInput(f"{where}.shape must be a list of non-negative integers")
    dtype = DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        raise InvalidInput(f"{where}.datatype {datatype!r} is not one of {', '.join(DTYPES)}")
    data = tensor["data"]
    try:
        if np.issubdtype(dtype, np.integer):
            _check_range(data, dtype, f"{where}.data", datatype)
        array = np.asarray(data, dtype=dtype)
    except OverflowError as error:
        # What _check_range did not see (numpy 2 raises where numpy 1 wraps around).
        raise InvalidInput(
            f"{where}.data has a value out of range for {datatype}: {error}"
        ) from None
    except (ValueError, TypeError) as error:
        raise InvalidInput(f"{where}.data does not hold {datatype} values: {error}") from None
    if array.size != prod(shape):
        raise InvalidInput(
            f"{where}.data has {array.size} elements, shape {shape} needs {prod(shape)}"
        )
    return array.reshape(shape), str(name)


def _check_range(data: Any, dtype: Any, where: str, datatype: str) -> None:
    """Refuse integers the datatype cannot hold (INT8 300, UINT8 -1, INT64 2**63).

    numpy 1 casts them silently, wrapped around (300 becomes 44 in INT8); numpy 2
    raises OverflowError. Checked here, the answer is the same with either, and
    names the value.
    """
    info = np.iinfo(dtype)
    wide = np.asarray(data)  # int64, uint64 or float64 for JSON numbers
    if not wide.size:
        return
    kind = wide.dtype.kind
    if kind in "iuf":
        low, high = wide.min().item(), wide.max().item()
        # Python compares ints and floats exactly, whatever their size.
        bad = low if low < info.min else high if high > info.max else None
    elif kind == "O":
        bad = next(
            (
                v
                for v in wide.ravel().tolist()
                if isinstance(v, int | float) and not info.min <= v <= info.max
            ),
            None,
        )
    else:
        return  # strings and the like: the conversion decides
    if bad is not None:
        raise InvalidInput(
            f"{where} has a value out of range for {datatype} ({info.min} to {info.max}): {bad}"
        )


def encode_response(model_name: str, request_id: str | None, outputs: Mapping[str, Any]) -> bytes:
    """An inference response with each output flattened in row-major order."""
    encoded = []
    for name, value in outputs.items():
        array = np.ascontiguousarray(value)
        datatype = datatype_of(array)
        data: Any = array.ravel()
        if datatype == "BYTES":
            data = [v.decode() if isinstance(v, bytes) else str(v) for v in data.tolist()]
        elif datatype == "FP16":
            data = data.astype(np.float32)
        encoded.append(
            {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}
        )
    response: dict[str, Any] = {"model_name": model_name, "outputs": encoded}
    if request_id is not None:
        response["id"] = request_id
    return orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
