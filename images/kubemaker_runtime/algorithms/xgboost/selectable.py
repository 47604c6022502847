"""Selectable inference output (``SAGEMAKER_INFERENCE_OUTPUT``), as SageMaker's XGBoost has it.

With ``SAGEMAKER_INFERENCE_OUTPUT=predicted_label,probability`` (any of the keys below)
each prediction becomes a record of those fields instead of a bare score; SageMaker
Autopilot and Clarify configure endpoints this way. Which keys an objective supports
follows SageMaker's container; an unsupported key is answered as a missing value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

ENV = "SAGEMAKER_INFERENCE_OUTPUT"
KEYS = (
    "predicted_label",
    "labels",
    "probability",
    "probabilities",
    "raw_score",
    "raw_scores",
    "predicted_score",
)
_CLASSIFICATION = ("predicted_label", "labels", "raw_score", "raw_scores")
_PROBABILISTIC = (*_CLASSIFICATION, "probability", "probabilities")
SUPPORTED = {
    "reg:squarederror": ("predicted_score",),
    "reg:logistic": ("predicted_score",),
    "reg:gamma": ("predicted_score",),
    "reg:absoluteerror": ("predicted_score",),
    "reg:tweedie": ("predicted_score",),
    "binary:logistic": _PROBABILISTIC,
    "binary:logitraw": _CLASSIFICATION,
    "binary:hinge": _CLASSIFICATION,
    "multi:softmax": _CLASSIFICATION,
    "multi:softprob": _PROBABILISTIC,
}


def parse_keys(value: str, objective: str) -> tuple[str, ...]:
    """The requested keys, checked; ValueError names what is wrong."""
    keys = tuple(k.strip().lower() for k in value.split(",") if k.strip())
    unknown = [k for k in keys if k not in KEYS]
    if not keys or unknown:
        raise ValueError(
            f"{ENV}={value!r}: {'unknown keys ' + ', '.join(unknown) if unknown else 'no keys'};"
            f" choose from {', '.join(KEYS)}"
        )
    if objective not in SUPPORTED:
        raise ValueError(f"{ENV} is not supported for objective {objective}")
    return keys


def select(
    predictions: np.ndarray, keys: Sequence[str], objective: str, num_class: int
) -> list[dict[str, Any]]:
    """One record per prediction with the requested keys (None where not applicable)."""
    supported = SUPPORTED[objective]
    records = []
    for raw in predictions.tolist():
        record: dict[str, Any] = {}
        for key in keys:
            record[key] = _value(key, raw, objective, num_class) if key in supported else None
        records.append(record)
    return records


def _value(key: str, raw: Any, objective: str, num_class: int) -> Any:
    vector = isinstance(raw, list)
    if key == "predicted_label":
        if vector:
            return int(np.argmax(raw))
        if objective == "binary:logistic":
            return int(raw > 0.5)
        if objective == "binary:logitraw":
            return int(raw > 0)
        return int(raw) if float(raw).is_integer() else raw
    if key == "labels":
        return list(range(num_class)) if objective.startswith("multi:") else [0, 1]
    if key in ("probability", "raw_score"):
        return max(raw) if vector else raw
    if key in ("probabilities", "raw_scores"):
        return raw if vector else [1.0 - raw, raw]
    return raw  # predicted_score


def encode(records: list[dict[str, Any]], keys: Sequence[str], accept: str, batch: bool) -> bytes:
    if accept == "application/json":
        return orjson.dumps({"predictions": records})
    if accept == "application/jsonlines":
        return b"".join(orjson.dumps(r) + b"\n" for r in records)
    lines = [",".join(_csv_field(record[key]) for key in keys) for record in records]
    text = "\n".join(lines)
    return (text + "\n" if batch else text).encode()


def _csv_field(value: Any) -> str:
    if value is None:
        return "nan"
    if isinstance(value, list):
        return '"' + str(value) + '"'
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return str(value)
