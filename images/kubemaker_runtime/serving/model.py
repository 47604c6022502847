"""The interface a model implements to be served (KServe's ``Model``, made smaller).

A serving image provides one :class:`Model` subclass; the server
(:func:`kubemaker_runtime.serving.create_app`) does HTTP, routing, payload limits,
content negotiation, metrics and errors around it::

    class MyModel(Model):
        request_types = ("text/csv", "application/json")
        response_types = ("application/json", "text/csv")   # the first is the default

        def load(self) -> None:           # once per worker process, off the event loop
            self.net = read_weights(self.model_dir)
            self.ready = True

        def decode(self, body, content_type):   # bytes -> what predict() takes
            ...                                 # raise InvalidInput("...") on bad input
        def predict(self, inputs):              # the model itself (timed as model latency)
            return self.net(inputs)
        def encode(self, outputs, accept):      # predict()'s result -> response bytes
            ...

``decode`` is only called with a type from ``request_types`` and ``encode`` with one
from ``response_types`` (the server answers 415 / 406 otherwise). Errors meant for the
caller are the exceptions in :mod:`kubemaker_runtime.serving.errors`.

For the Open Inference Protocol (``/v2/models/{name}/infer``) the server turns the
request's tensors into numpy arrays and calls :meth:`Model.infer_v2`, whose default
passes the single input array (or a ``{name: array}`` mapping) to ``predict`` and
returns its result as one output tensor named ``predict``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


class Model(abc.ABC):
    """A model the server loads once per worker and calls for every request."""

    #: Request Content-Types :meth:`decode` accepts (without parameters, lower case).
    request_types: Sequence[str] = ("application/json",)
    #: Response types :meth:`encode` produces; the first is the default for ``*/*``.
    response_types: Sequence[str] = ("application/json",)
    #: The name for Open Inference Protocol routes (``/v2/models/{name}``).
    name: str = "model"
    #: Shown in ``/v2/models/{name}``.
    platform: str = ""

    def __init__(self, model_dir: str | Path, *, name: str | None = None) -> None:
        self.model_dir = Path(model_dir)
        if name:
            self.name = name
        self.ready = False

    @abc.abstractmethod
    def load(self) -> None:
        """Read the model from ``model_dir``; set ``self.ready = True`` when done.

        Called in each worker process, in a thread: ``/ping`` answers 503 until
        ``ready`` is true. An exception here leaves the worker not ready (and logged).
        """

    def decode(self, body: bytes, content_type: str) -> Any:
        """Turn a request body of ``content_type`` into :meth:`predict`'s input."""
        raise NotImplementedError(f"{type(self).__name__} does not decode {content_type}")

    @abc.abstractmethod
    def predict(self, inputs: Any) -> Any:
        """Run the model. Only this call counts as model latency in the metrics."""

    def encode(self, outputs: Any, accept: str) -> bytes:
        """Turn :meth:`predict`'s result into a response body of type ``accept``."""
        raise NotImplementedError(f"{type(self).__name__} does not encode {accept}")

    # --- Open Inference Protocol (v2) ---------------------------------------------------

    def infer_v2(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on v2 input tensors; return output tensors by name."""
        if len(inputs) == 1:
            (array,) = inputs.values()
            result = self.predict(array)
        else:
            result = self.predict(dict(inputs))
        return {"predict": np.asarray(result)}

    def metadata_v2(self) -> dict[str, Any]:
        """Extra fields for ``GET /v2/models/{name}``: ``inputs`` / ``outputs`` specs."""
        return {"inputs": [], "outputs": []}
