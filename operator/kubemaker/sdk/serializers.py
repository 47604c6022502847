"""Request serializers, as ``sagemaker.serializers`` (v2) has them.

Outputs match SageMaker's for the same input, so an endpoint sees the bytes it saw
under SageMaker. Where SageMaker fails with an unrelated error (a ``KeyError`` for a
dict given to CSV, a ``TypeError`` from ``json``) or sends a pickle, these raise a
``ValueError`` that names the type and what is accepted.
"""

from __future__ import annotations

import abc
import csv
import io
import json
import sys
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "BaseSerializer",
    "CSVSerializer",
    "IdentitySerializer",
    "JSONLinesSerializer",
    "JSONSerializer",
    "LibSVMSerializer",
    "NumpySerializer",
    "SimpleBaseSerializer",
]


class BaseSerializer(abc.ABC):
    """What a Predictor needs of a serializer: ``serialize`` and ``CONTENT_TYPE``."""

    @abc.abstractmethod
    def serialize(self, data: Any) -> Any:
        """The request body for ``data``."""

    @property
    @abc.abstractmethod
    def CONTENT_TYPE(self) -> str:
        """The request's Content-Type."""


class SimpleBaseSerializer(BaseSerializer):
    """A serializer whose Content-Type is given when it is made."""

    def __init__(self, content_type: str = "application/json") -> None:
        if not isinstance(content_type, str):
            raise ValueError(
                "content_type must be a string naming the MIME type of the requests, "
                f"such as 'application/json' or 'text/csv'; got {content_type!r}"
            )
        self.content_type = content_type

    @property
    def CONTENT_TYPE(self) -> str:
        return self.content_type


def _cannot(owner: str, data: Any, accepted: str) -> ValueError:
    return ValueError(f"{owner} cannot serialize {type(data).__name__}: it accepts {accepted}")


def _is_instance(data: Any, module: str, *names: str) -> bool:
    # An ndarray or a DataFrame exists only once numpy or pandas has been imported: no
    # import is needed to test for one, so neither becomes a dependency of the SDK.
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(data, tuple(getattr(loaded, n) for n in names))


def _is_sequence_like(data: Any) -> bool:
    return hasattr(data, "__iter__") and hasattr(data, "__getitem__")


class CSVSerializer(SimpleBaseSerializer):
    """Rows of values as CSV text: a list (one row), nested lists or a 2-D array (rows)."""

    _ACCEPTED = (
        "a list (one row), nested lists or a 2-D numpy array (rows), a 1-D numpy array, "
        "a pandas DataFrame, CSV text (str or bytes) or a file-like object"
    )

    def __init__(self, content_type: str = "text/csv") -> None:
        super().__init__(content_type=content_type)

    def serialize(self, data: Any) -> Any:
        if isinstance(data, str | bytes):
            return data
        if hasattr(data, "read"):
            return data.read()
        if _is_instance(data, "pandas", "DataFrame"):
            return data.to_csv(header=False, index=False)
        if isinstance(data, Mapping):
            raise _cannot("CSVSerializer", data, self._ACCEPTED)
        # SageMaker's test for rows: a mutable sequence whose first item is a sequence
        # (a 0-d array has no len(): it is one value).
        if (
            _is_sequence_like(data)
            and hasattr(data, "__setitem__")
            and getattr(data, "ndim", 1) > 0
            and len(data) > 0
            and _is_sequence_like(data[0])
        ):
            return "\n".join(self._serialize_row(row) for row in data)
        return self._serialize_row(data)

    def _serialize_row(self, data: Any) -> str:
        if isinstance(data, str):
            return data
        if _is_instance(data, "numpy", "ndarray"):
            data = data.flatten()
        if isinstance(data, bytes | bytearray | Mapping) or not hasattr(data, "__len__"):
            raise _cannot("CSVSerializer", data, self._ACCEPTED)
        if len(data) == 0:
            raise ValueError("CSVSerializer cannot serialize an empty array")
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=",").writerow(data)
        return buffer.getvalue().rstrip("\r\n")


class NumpySerializer(SimpleBaseSerializer):
    """An array in NumPy's ``.npy`` format; ``dtype``, when given, converts the data."""

    def __init__(self, dtype: Any = None, content_type: str = "application/x-npy") -> None:
        super().__init__(content_type=content_type)
        self.dtype = dtype

    def serialize(self, data: Any) -> Any:
        import numpy as np

        if hasattr(data, "read"):
            # Files and buffers are taken to hold .npy bytes already, as SageMaker does.
            return data.read()
        if isinstance(data, list) and not data:
            raise ValueError("NumpySerializer cannot serialize an empty array")
        try:
            array = np.asarray(data, dtype=self.dtype)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"NumpySerializer cannot serialize {type(data).__name__} as an array of "
                f"dtype {self.dtype}: {exc}"
            ) from exc
        if array.dtype.hasobject:
            # .npy of Python objects is a pickle, which a server must not be asked to load.
            raise _cannot(
                "NumpySerializer",
                data,
                "numpy arrays, (nested) lists or tuples of numbers or strings, numbers, "
                "and file-like objects holding .npy bytes",
            )
        if array.size == 0:
            raise ValueError("NumpySerializer cannot serialize an empty array")
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        return buffer.getvalue()


def _json_default(owner: str) -> Any:
    accepted = (
        "JSON values (dict, list, str, numbers, bool, None), numpy arrays and scalars, "
        "and file-like objects"
    )

    def default(value: Any) -> Any:
        # numpy arrays and scalars, anywhere in the data, become lists and numbers.
        if _is_instance(value, "numpy", "ndarray", "generic"):
            return value.tolist()
        raise _cannot(owner, value, accepted)

    return default


class JSONSerializer(SimpleBaseSerializer):
    """Data as JSON text; numpy arrays become lists; file-like objects are read as is."""

    def serialize(self, data: Any) -> Any:
        if hasattr(data, "read"):
            return data.read()
        # A str is encoded as a JSON string, as SageMaker does: '"text"', not 'text'.
        return json.dumps(data, default=_json_default("JSONSerializer"))


class IdentitySerializer(SimpleBaseSerializer):
    """The data unchanged, such as the bytes of an image file."""

    def __init__(self, content_type: str = "application/octet-stream") -> None:
        super().__init__(content_type=content_type)

    def serialize(self, data: Any) -> Any:
        return data


class JSONLinesSerializer(SimpleBaseSerializer):
    """A list of objects as JSON Lines, one per line; text and file-like objects as is."""

    def __init__(self, content_type: str = "application/jsonlines") -> None:
        super().__init__(content_type=content_type)

    def serialize(self, data: Any) -> Any:
        if isinstance(data, str | bytes):
            return data
        if hasattr(data, "read"):
            return data.read()
        if isinstance(data, Iterable) and not isinstance(data, Mapping):
            default = _json_default("JSONLinesSerializer")
            return "\n".join(json.dumps(item, default=default) for item in data)
        raise _cannot(
            "JSONLinesSerializer",
            data,
            "a list of JSON values (one per line), JSON Lines text or a file-like object",
        )


class LibSVMSerializer(SimpleBaseSerializer):
    """LibSVM text (``<label> <index>:<value> ...``), given as text or a file-like object."""

    def __init__(self, content_type: str = "text/libsvm") -> None:
        super().__init__(content_type=content_type)

    def serialize(self, data: Any) -> Any:
        if isinstance(data, str | bytes):
            return data
        if hasattr(data, "read"):
            return data.read()
        raise _cannot("LibSVMSerializer", data, "LibSVM text (str or bytes) or a file-like object")
