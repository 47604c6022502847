"""``serve``: an XGBoost script's model, with SageMaker's handler functions and defaults.

The user's module may define ``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn``
or ``transform_fn`` (:mod:`kubemaker_runtime.frameworks.handlers` finds and calls them);
what it leaves out is SageMaker's XGBoost default:

- ``model_fn(model_dir)``: the Booster in ``xgboost-model``, else the one file in the
  model directory that loads as an XGBoost model (``save_model`` in JSON or UBJSON, a
  pickled Booster, or a pickled scikit-learn ``XGBModel``);
- ``input_fn(data, content_type)``: ``text/csv`` (features only, no label; an empty
  field is missing), ``text/libsvm`` / ``text/x-libsvm`` (indices as written, as
  XGBoost's own libsvm reader takes them), ``application/json`` (``[[...], ...]``,
  ``{"instances": ...}``, ``{"features": [...]}``) or ``application/jsonlines``, to an
  ``xgboost.DMatrix``;
- ``predict_fn(data, model)``: ``model.predict(data)``;
- ``output_fn(prediction, accept)``: ``text/csv`` (comma-separated; a row per line for
  vector outputs; a line per prediction in a batch transform) or ``application/json``
  (the predictions as a JSON list).

A body the defaults cannot read, or with a number of features the model does not have,
is a 400 that says why. Which server the XGBoost image runs (this one or the built-in
algorithm's) is :mod:`.mode`'s rule.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeAlias

import numpy as np
import orjson
import scipy.sparse
import xgboost as xgb

from kubemaker_runtime import contract
from kubemaker_runtime.algorithms.xgboost import data
from kubemaker_runtime.algorithms.xgboost import serve as algorithm
from kubemaker_runtime.frameworks.handlers import Defaults, HandlerModel
from kubemaker_runtime.frameworks.xgboost import mode
from kubemaker_runtime.serving.errors import InvalidInput, NotAcceptable, UnsupportedMediaType

logger = logging.getLogger(__name__)

CSV = "text/csv"
LIBSVM = ("text/libsvm", "text/x-libsvm")
JSON = "application/json"
JSONLINES = "application/jsonlines"
NPY = "application/x-npy"
REQUEST_TYPES = (CSV, *LIBSVM, JSON, JSONLINES)
RESPONSE_TYPES = (CSV, JSON)
# What a user's input_fn / transform_fn may be sent, and its output_fn may write.
USER_REQUEST_TYPES = (
    *REQUEST_TYPES,
    NPY,
    "application/x-parquet",
    "application/x-recordio-protobuf",
    "application/octet-stream",
    "text/plain",
)
USER_RESPONSE_TYPES = (*RESPONSE_TYPES, JSONLINES, NPY, "text/plain", "application/octet-stream")
_PICKLE = b"\x80"

Features: TypeAlias = np.ndarray | scipy.sparse.csr_matrix


# --- the model ----------------------------------------------------------------------------


def find_model_files(model_dir: Path) -> list[Path]:
    """``xgboost-model`` if present, else the model directory's files (``code/`` aside)."""
    preferred = model_dir / algorithm.MODEL_FILE
    if preferred.is_file():
        return [preferred]
    if not model_dir.is_dir():
        raise FileNotFoundError(f"the model directory {model_dir} does not exist")
    return sorted(p for p in model_dir.iterdir() if p.is_file() and not p.name.startswith("."))


def load_model_file(path: Path) -> xgb.Booster:
    """A Booster from ``save_model`` (JSON, UBJSON) or a pickled Booster or XGBModel."""
    try:
        return algorithm.load_booster(path)
    except ValueError:
        raw = path.read_bytes()
        if raw[:1] != _PICKLE:
            raise
        # The user's own artifact, unpickled in the user's own container.
        loaded = pickle.loads(raw)
        if isinstance(loaded, xgb.XGBModel):
            return loaded.get_booster()
        raise


def default_model_fn(model_dir: str) -> xgb.Booster:
    files = find_model_files(Path(model_dir))
    hint = (
        f"save it as {algorithm.MODEL_FILE} (booster.save_model(os.path.join(model_dir, "
        f'"{algorithm.MODEL_FILE}"))) or define model_fn in your script'
    )
    if not files:
        raise FileNotFoundError(f"no model in {model_dir}: {hint}")
    if len(files) == 1:
        booster = load_model_file(files[0])
    else:
        loaded = {}
        for path in files:
            try:
                loaded[path.name] = load_model_file(path)
            except (ValueError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
                continue
        if len(loaded) != 1:
            found = ", ".join(loaded) if loaded else "none of " + ", ".join(p.name for p in files)
            raise FileNotFoundError(
                f"{model_dir} holds {len(files)} files and {found} loads as an XGBoost "
                f"model: {hint}"
            )
        ((name, booster),) = loaded.items()
        files = [Path(model_dir) / name]
    # One thread per worker: the server runs one worker per core.
    booster.set_param({"nthread": 1})
    logger.info("loaded %s (%d rounds)", files[0], booster.num_boosted_rounds())
    return booster


def as_booster(model: Any) -> xgb.Booster | None:
    """The Booster of what a model_fn returned: a Booster, an XGBModel, or SageMaker's
    default's ``(booster, format)``; None for anything else."""
    if isinstance(model, tuple) and model:
        model = model[0]
    if isinstance(model, xgb.Booster):
        return model
    if isinstance(model, xgb.XGBModel):
        return model.get_booster()
    return None


# --- requests -----------------------------------------------------------------------------


def read_features(
    body: bytes,
    content_type: str,
    *,
    num_features: int | None = None,
    libsvm_index_base: int = 0,
) -> Features:
    """The default input_fn's parsing; with ``num_features``, checked against the model.

    Every way a body can be malformed is the caller's :class:`InvalidInput` (a 400).
    """
    try:
        if content_type == CSV:
            features = data.parse_csv(body)
        elif content_type in LIBSVM:
            parsed = data.parse_libsvm(body, with_labels=False)
            if parsed.num_rows == 0:
                raise data.DataError("the libsvm payload has no rows")
            matrix: scipy.sparse.csr_matrix = data.to_csr(parsed, libsvm_index_base, num_features)
            return matrix
        elif content_type == JSON:
            features = algorithm.json_features(body)
        elif content_type == JSONLINES:
            features = algorithm.jsonlines_features(body)
        else:
            raise UnsupportedMediaType(
                f"the default input_fn reads {', '.join(REQUEST_TYPES)}, not {content_type}; "
                "define input_fn in your script for other types"
            )
    except data.DataError as error:
        raise InvalidInput(str(error)) from None
    if num_features is not None and features.shape[1] != num_features:
        raise InvalidInput(
            f"the payload has {features.shape[1]} features per row, the model expects "
            f"{num_features} ({content_type}: features only, no label column)"
        )
    return features


def default_input_fn(body: bytes, content_type: str) -> xgb.DMatrix:
    return xgb.DMatrix(read_features(body, content_type), nthread=1)


def default_predict_fn(inputs: Any, model: Any) -> np.ndarray:
    booster = as_booster(model)
    if booster is None:
        raise TypeError(
            f"the default predict_fn predicts with an XGBoost Booster; model_fn returned "
            f"{type(model).__name__}: define predict_fn in your script"
        )
    if isinstance(inputs, tuple) and inputs:
        inputs = inputs[0]  # SageMaker's default input_fn returns (DMatrix, content type)
    if not isinstance(inputs, xgb.DMatrix):
        inputs = xgb.DMatrix(inputs, nthread=1)
    expected = booster.num_features()
    if expected and inputs.num_col() > expected:
        raise InvalidInput(
            f"the payload has {inputs.num_col()} features per row, the model expects {expected}"
        )
    try:
        return np.asarray(booster.predict(inputs, validate_features=False))
    except xgb.core.XGBoostError as error:
        first = (str(error).strip().splitlines() or ["XGBoostError"])[0]
        raise InvalidInput(f"XGBoost cannot predict on this input: {first[:300]}") from None


def default_output_fn(prediction: Any, accept: str) -> bytes:
    array = np.asarray(prediction)
    if accept == CSV:
        if array.ndim == 0:
            array = array.reshape(1)
        return algorithm.encode_csv(array, batch=bool(os.environ.get(algorithm.BATCH_ENV)))
    if accept == JSON:
        return orjson.dumps(array.tolist())
    raise NotAcceptable(f"the default output_fn writes {', '.join(RESPONSE_TYPES)}, not {accept}")


# --- the model server's model -------------------------------------------------------------


class XGBoostScriptModel(HandlerModel):
    """An XGBoost script's model for the model server, driven by its handler functions."""

    name = "xgboost"
    platform = "xgboost"
    request_types: Sequence[str] = REQUEST_TYPES
    response_types: Sequence[str] = RESPONSE_TYPES
    user_request_types: ClassVar[Sequence[str]] = USER_REQUEST_TYPES
    user_response_types: ClassVar[Sequence[str]] = USER_RESPONSE_TYPES
    defaults: ClassVar[Defaults] = Defaults(
        model_fn=default_model_fn,
        input_fn=default_input_fn,
        predict_fn=default_predict_fn,
        output_fn=default_output_fn,
    )

    def __init__(self, model_dir: str | Path, *, name: str | None = None) -> None:
        super().__init__(model_dir, name=name)
        self.num_features: int | None = None
        self.libsvm_index_base = 0

    def loaded(self) -> None:
        booster = as_booster(self.model)
        if booster is None:
            return
        self.num_features = booster.num_features() or None
        # A model of the built-in algorithm remembers how its libsvm indices were read.
        base = booster.attr(data.LIBSVM_INDEX_BASE_ATTR)
        self.libsvm_index_base = int(base) if base in ("0", "1") else 0

    def decode(self, body: bytes, content_type: str) -> Any:
        if self._transform_fn is None and self._input_fn is default_input_fn:
            # The default, checked against the model it feeds.
            features = read_features(
                body,
                content_type,
                num_features=self.num_features,
                libsvm_index_base=self.libsvm_index_base,
            )
            return xgb.DMatrix(features, nthread=1)
        return super().decode(body, content_type)

    def metadata_v2(self) -> dict[str, Any]:
        width = self.num_features or -1
        return {
            "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, width]}],
            "outputs": [{"name": "predict", "datatype": "FP32", "shape": [-1]}],
        }

    def infer_v2(self, inputs: Any) -> dict[str, np.ndarray]:
        """Open Inference Protocol: one FP32 tensor [rows, features] to predict_fn."""
        array = algorithm.v2_features(inputs, self.num_features)
        matrix = xgb.DMatrix(np.asarray(array, dtype=np.float32), nthread=1)
        return {"predict": np.asarray(self._predict_fn(matrix, self.model))}


def main() -> int:
    from kubemaker_runtime.serving import serve

    model_dir = Path(os.environ.get("SM_MODEL_DIR") or contract.Paths.from_env().model_dir)
    factory = mode.model_factory(model_dir, os.environ)
    logger.info("serving %s with %s", model_dir, factory)
    serve(factory, model_dir)
    return 0
