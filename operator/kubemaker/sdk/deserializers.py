"""Response deserializers, as ``sagemaker.deserializers`` (v2) has them.

``stream`` is any object with ``read()`` (bytes, or text); it is closed once read, as
SageMaker closes the response body, except by :class:`StreamDeserializer`, which hands
it to the caller. Content types are compared without their parameters
(``text/csv; charset=utf-8`` is ``text/csv``).
"""

from __future__ import annotations

import abc
import csv
import io
import json
from typing import Any, Protocol

__all__ = [
    "BaseDeserializer",
    "BytesDeserializer",
    "CSVDeserializer",
    "JSONDeserializer",
    "JSONLinesDeserializer",
    "NumpyDeserializer",
    "PandasDeserializer",
    "SimpleBaseDeserializer",
    "StreamDeserializer",
    "StringDeserializer",
]


class Readable(Protocol):
    """A response body: botocore's StreamingBody, a file, ``io.BytesIO``."""

    def read(self) -> bytes | str: ...


class BaseDeserializer(abc.ABC):
    """What a Predictor needs of a deserializer: ``deserialize`` and ``ACCEPT``."""

    @abc.abstractmethod
    def deserialize(self, stream: Readable, content_type: str) -> Any:
        """The response body ``stream``, of type ``content_type``, as an object."""

    @property
    @abc.abstractmethod
    def ACCEPT(self) -> tuple[str, ...]:
        """The content types asked of the endpoint (the request's Accept)."""


class SimpleBaseDeserializer(BaseDeserializer):
    """A deserializer whose accepted types are given when it is made."""

    def __init__(self, accept: str | tuple[str, ...] = "*/*") -> None:
        self.accept = accept

    @property
    def ACCEPT(self) -> tuple[str, ...]:
        return (self.accept,) if isinstance(self.accept, str) else tuple(self.accept)


def _close(stream: Readable) -> None:
    close = getattr(stream, "close", None)
    if callable(close):
        close()


def _read(stream: Readable) -> bytes | str:
    try:
        return stream.read()
    finally:
        _close(stream)


def _read_bytes(stream: Readable) -> bytes:
    body = _read(stream)
    return body.encode() if isinstance(body, str) else body


def _read_text(stream: Readable, encoding: str = "utf-8") -> str:
    body = _read(stream)
    return body if isinstance(body, str) else body.decode(encoding)


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _cannot_read(owner: str, content_type: str, readable: tuple[str, ...]) -> ValueError:
    return ValueError(
        f"{owner} cannot read content type {content_type!r}: it reads {', '.join(readable)}"
    )


class StringDeserializer(SimpleBaseDeserializer):
    """The body as decoded text."""

    def __init__(
        self, encoding: str = "UTF-8", accept: str | tuple[str, ...] = "application/json"
    ) -> None:
        super().__init__(accept=accept)
        self.encoding = encoding

    def deserialize(self, stream: Readable, content_type: str) -> str:
        return _read_text(stream, self.encoding)


class BytesDeserializer(SimpleBaseDeserializer):
    """The body as bytes."""

    def deserialize(self, stream: Readable, content_type: str) -> bytes:
        return _read_bytes(stream)


class CSVDeserializer(SimpleBaseDeserializer):
    """CSV text as a list of rows, each a list of strings."""

    def __init__(self, encoding: str = "utf-8", accept: str | tuple[str, ...] = "text/csv") -> None:
        super().__init__(accept=accept)
        self.encoding = encoding

    def deserialize(self, stream: Readable, content_type: str) -> list[list[str]]:
        # A StringIO, not splitlines(): a quoted field may hold a line break.
        text = io.StringIO(_read_text(stream, self.encoding), newline="")
        return list(csv.reader(text))


class StreamDeserializer(SimpleBaseDeserializer):
    """The body unread, with its content type; the caller reads and closes it."""

    def deserialize(self, stream: Readable, content_type: str) -> tuple[Readable, str]:
        return stream, content_type


class NumpyDeserializer(SimpleBaseDeserializer):
    """A numpy array from ``.npy``, CSV or JSON.

    ``allow_pickle`` is False by default (SageMaker's is True): loading a pickled object
    array runs code the endpoint chose.
    """

    _READABLE = ("text/csv", "application/json", "application/x-npy")

    def __init__(
        self,
        dtype: Any = None,
        accept: str | tuple[str, ...] = "application/x-npy",
        allow_pickle: bool = False,
    ) -> None:
        super().__init__(accept=accept)
        self.dtype = dtype
        self.allow_pickle = allow_pickle

    def deserialize(self, stream: Readable, content_type: str) -> Any:
        import numpy as np

        media_type = _media_type(content_type)
        if media_type not in self._READABLE:
            _close(stream)
            raise _cannot_read("NumpyDeserializer", content_type, self._READABLE)
        if media_type == "text/csv":
            lines = _read_text(stream).splitlines()
            return np.genfromtxt(lines, delimiter=",", dtype=self.dtype)
        if media_type == "application/json":
            return np.array(json.loads(_read_text(stream)), dtype=self.dtype)
        return np.load(io.BytesIO(_read_bytes(stream)), allow_pickle=self.allow_pickle)


class JSONDeserializer(SimpleBaseDeserializer):
    """JSON as Python objects."""

    def __init__(self, accept: str | tuple[str, ...] = "application/json") -> None:
        super().__init__(accept=accept)

    def deserialize(self, stream: Readable, content_type: str) -> Any:
        return json.loads(_read_text(stream))


class PandasDeserializer(SimpleBaseDeserializer):
    """CSV or JSON (pandas' ``columns`` orient) as a pandas DataFrame; needs pandas."""

    _READABLE = ("text/csv", "application/json")

    def __init__(self, accept: str | tuple[str, ...] = ("text/csv", "application/json")) -> None:
        super().__init__(accept=accept)

    def deserialize(self, stream: Readable, content_type: str) -> Any:
        try:
            import pandas
        except ImportError as exc:
            _close(stream)
            raise ImportError(
                "PandasDeserializer needs pandas, which is not installed: "
                "pip install pandas (or use CSVDeserializer, JSONDeserializer or "
                "NumpyDeserializer)"
            ) from exc
        media_type = _media_type(content_type)
        if media_type not in self._READABLE:
            _close(stream)
            raise _cannot_read("PandasDeserializer", content_type, self._READABLE)
        text = io.StringIO(_read_text(stream))
        if media_type == "text/csv":
            return pandas.read_csv(text)
        return pandas.read_json(text)


class JSONLinesDeserializer(SimpleBaseDeserializer):
    """JSON Lines as a list, one item per line (blank lines skipped)."""

    def __init__(self, accept: str | tuple[str, ...] = "application/jsonlines") -> None:
        super().__init__(accept=accept)

    def deserialize(self, stream: Readable, content_type: str) -> list[Any]:
        lines = _read_text(stream).splitlines()
        return [json.loads(line) for line in lines if line.strip()]
