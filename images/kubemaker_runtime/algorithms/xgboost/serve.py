"""The XGBoost model for the model server: SageMaker's XGBoost request and response formats.

Requests: ``text/csv`` (features only, no label), ``text/libsvm`` / ``text/x-libsvm``,
``application/json`` (``{"instances": [[...], ...]}``, ``{"instances": [{"features":
[...]}, ...]}``, ``{"features": [...]}`` or a bare list) and ``application/jsonlines``
(one ``[...]`` or ``{"features": [...]}`` per line).

Responses, as SageMaker's XGBoost returns them: ``text/csv`` the default (predictions
comma-separated; one line per row for vector outputs such as ``multi:softprob``; one
line per prediction when ``SAGEMAKER_BATCH`` is set, as in a batch transform),
``application/json`` ``{"predictions": [{"score": ...}, ...]}`` and
``application/jsonlines`` (one ``{"score": ...}`` per line).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import scipy.sparse
import xgboost as xgb

from kubemaker_runtime.algorithms.xgboost import data, selectable
from kubemaker_runtime.serving import InvalidInput, Model, v2

logger = logging.getLogger(__name__)

# SageMaker's name for the model file, in /opt/ml/model and in model.tar.gz.
MODEL_FILE = "xgboost-model"
# Set by SageMaker (and kubemaker) in batch transform containers.
BATCH_ENV = "SAGEMAKER_BATCH"
JSON = "application/json"
JSONLINES = "application/jsonlines"
_PICKLE_PROTOCOL_2_OR_LATER = b"\x80"


def find_model_file(model_dir: Path) -> Path:
    """``xgboost-model`` if present, else the only regular file in the directory."""
    preferred = model_dir / MODEL_FILE
    if preferred.is_file():
        return preferred
    candidates = (
        sorted(p for p in model_dir.iterdir() if p.is_file() and not p.name.startswith("."))
        if model_dir.is_dir()
        else []
    )
    if len(candidates) == 1:
        return candidates[0]
    raise FileNotFoundError(
        f"no {MODEL_FILE} in {model_dir}"
        + (f" and {len(candidates)} other files: name the model {MODEL_FILE}" if candidates else "")
    )


def load_booster(path: Path) -> xgb.Booster:
    """A Booster saved with ``save_model`` (JSON or UBJSON), or a pickled one."""
    booster = xgb.Booster()
    raw = path.read_bytes()
    try:
        # From memory, so XGBoost sniffs JSON vs UBJSON instead of guessing from the
        # file name (SageMaker's has no extension).
        booster.load_model(bytearray(raw))
        return booster
    except xgb.core.XGBoostError as error:
        if raw[:1] != _PICKLE_PROTOCOL_2_OR_LATER:
            raise ValueError(f"{path} is not an XGBoost model: {error}") from None
    # Older SageMaker XGBoost versions pickled the Booster. Unpickling runs code from the
    # file, which is the user's own artifact in the user's own container.
    loaded = pickle.loads(raw)
    if not isinstance(loaded, xgb.Booster):
        raise ValueError(f"{path} holds a pickled {type(loaded).__name__}, not a Booster")
    return loaded


class XGBoostModel(Model):
    request_types = ("text/csv", "text/libsvm", "text/x-libsvm", JSON, JSONLINES)
    response_types = ("text/csv", JSON, JSONLINES)
    name = "xgboost"
    platform = "xgboost"

    def __init__(self, model_dir: str | Path, *, name: str | None = None) -> None:
        super().__init__(model_dir, name=name)
        self.booster: xgb.Booster | None = None
        self.num_features = 0
        self.objective = ""
        self.libsvm_index_base: int | None = None
        self.batch = bool(os.environ.get(BATCH_ENV))
        self.num_class = 0
        self.selected_keys: tuple[str, ...] = ()

    def load(self) -> None:
        path = find_model_file(self.model_dir)
        booster = load_booster(path)
        # One thread per worker: the server runs one worker per core.
        booster.set_param({"nthread": 1})
        config = json.loads(booster.save_config())
        self.objective = config["learner"]["objective"]["name"]
        self.num_class = int(config["learner"]["learner_model_param"].get("num_class") or 0)
        selection = os.environ.get(selectable.ENV)
        if selection:
            # A misconfigured endpoint never turns ready, and /ping says why.
            self.selected_keys = selectable.parse_keys(selection, self.objective)
        self.num_features = booster.num_features()
        base = booster.attr(data.LIBSVM_INDEX_BASE_ATTR)
        self.libsvm_index_base = int(base) if base in ("0", "1") else None
        self.booster = booster
        logger.info(
            "loaded %s: objective %s, %d features, %d rounds",
            path,
            self.objective,
            self.num_features,
            booster.num_boosted_rounds(),
        )
        self.ready = True

    # --- request -> features -----------------------------------------------------------

    def decode(self, body: bytes, content_type: str) -> np.ndarray | scipy.sparse.csr_matrix:
        try:
            if content_type == "text/csv":
                features = data.parse_csv(body)
            elif content_type in ("text/libsvm", "text/x-libsvm"):
                return self._decode_libsvm(body)
            elif content_type == JSON:
                features = json_features(body)
            else:
                features = jsonlines_features(body)
        except data.DataError as error:
            raise InvalidInput(str(error)) from None
        if features.shape[1] != self.num_features:
            raise InvalidInput(
                f"the payload has {features.shape[1]} features per row, the model expects "
                f"{self.num_features} ({content_type}: features only, no label column)"
            )
        return features

    def _decode_libsvm(self, body: bytes) -> scipy.sparse.csr_matrix:
        parsed = data.parse_libsvm(body, with_labels=False)
        if parsed.num_rows == 0:
            raise data.DataError("the libsvm payload has no rows")
        base = self.libsvm_index_base
        if base is None:
            base = data.detect_index_base(parsed.columns)
        return data.to_csr(parsed, base, self.num_features)

    # --- the model ---------------------------------------------------------------------

    def predict(self, inputs: np.ndarray | scipy.sparse.csr_matrix) -> np.ndarray:
        assert self.booster is not None
        # inplace_predict skips building a DMatrix: the fastest path for small batches.
        return self.booster.inplace_predict(inputs, validate_features=False)

    # --- predictions -> response ---------------------------------------------------------

    def encode(self, outputs: np.ndarray, accept: str) -> bytes:
        if self.selected_keys:
            records = selectable.select(outputs, self.selected_keys, self.objective, self.num_class)
            return selectable.encode(records, self.selected_keys, accept, self.batch)
        if accept == "text/csv":
            return encode_csv(outputs, batch=self.batch)
        scores = outputs.tolist()
        if accept == JSON:
            return orjson.dumps({"predictions": [{"score": s} for s in scores]})
        return b"".join(orjson.dumps({"score": s}) + b"\n" for s in scores)

    def metadata_v2(self) -> dict[str, Any]:
        return {
            "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, self.num_features]}],
            "outputs": [{"name": "predict", "datatype": "FP32", "shape": [-1]}],
        }

    def infer_v2(self, inputs: Any) -> dict[str, np.ndarray]:
        array = v2_features(inputs, self.num_features)
        return {"predict": self.predict(array)}


def v2_features(inputs: Any, num_features: int | None) -> np.ndarray:
    """The one FP32-able tensor [rows, features] an Open Inference Protocol request to an
    XGBoost model must carry (``num_features`` None: any width); InvalidInput else."""
    if len(inputs) != 1:
        raise InvalidInput("the XGBoost model takes one input tensor of shape [rows, features]")
    ((name, array),) = inputs.items()
    if array.dtype.kind not in "fiub":
        raise InvalidInput(
            f"input {name!r} is {v2.datatype_of(array)}: the XGBoost model takes numbers "
            "(FP*, INT*, UINT* or BOOL)"
        )
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2 or (num_features and array.shape[1] != num_features):
        raise InvalidInput(
            f"input {name!r} has shape {list(array.shape)}: expected "
            f"[rows, {num_features or 'features'}]"
        )
    return np.asarray(array)


def encode_csv(predictions: np.ndarray, *, batch: bool) -> bytes:
    """Predictions as SageMaker's XGBoost writes them in text/csv."""
    encoded = orjson.dumps(np.ascontiguousarray(predictions), option=orjson.OPT_SERIALIZE_NUMPY)
    if predictions.ndim == 1:
        values = encoded[1:-1]
        # A batch transform joins its output by lines, one per input record.
        return values.replace(b",", b"\n") + b"\n" if batch else values
    rows = encoded[2:-2].replace(b"],[", b"\n")
    return rows + b"\n" if batch else rows


def json_features(body: bytes) -> np.ndarray:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise data.DataError(f"the payload is not valid JSON: {error}") from None
    if isinstance(document, dict):
        if "instances" in document:
            rows = document["instances"]
        elif "features" in document:
            rows = [document["features"]]
        else:
            raise data.DataError('a JSON payload needs "instances" or "features"')
    else:
        rows = document
    if not isinstance(rows, list) or not rows:
        raise data.DataError("the JSON payload holds no instances")
    if not isinstance(rows[0], list):
        rows = [rows] if not isinstance(rows[0], dict) else rows
    return _rows_to_array([_features_of(row, i) for i, row in enumerate(rows)])


def jsonlines_features(body: bytes) -> np.ndarray:
    rows = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(_features_of(orjson.loads(line), number - 1))
        except orjson.JSONDecodeError as error:
            raise data.DataError(f"JSON line {number} is not valid JSON: {error}") from None
    if not rows:
        raise data.DataError("the JSON Lines payload has no rows")
    return _rows_to_array(rows)


def _features_of(row: Any, index: int) -> Any:
    if isinstance(row, dict):
        if "features" not in row:
            raise data.DataError(f'instance {index} has no "features"')
        return row["features"]
    return row


def _rows_to_array(rows: list[Any]) -> np.ndarray:
    try:
        array = np.array(rows, dtype=np.float32)
    except (ValueError, TypeError):
        raise data.DataError(
            "instances must be lists of numbers (null for missing), all of the same length"
        ) from None
    if array.ndim != 2:
        raise data.DataError("instances must be lists of numbers")
    return array
