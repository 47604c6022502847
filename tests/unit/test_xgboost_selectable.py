"""Selectable inference output (SAGEMAKER_INFERENCE_OUTPUT) of the XGBoost model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from kubemaker_runtime.algorithms.xgboost import selectable
from kubemaker_runtime.algorithms.xgboost.serve import XGBoostModel


def _model(tmp_path: Path, params: dict[str, object], labels: np.ndarray) -> XGBoostModel:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(len(labels), 4)).astype(np.float32)
    booster = xgb.train({**params, "nthread": 1}, xgb.DMatrix(x, label=labels), 3)
    (tmp_path / "xgboost-model").write_bytes(bytes(booster.save_raw("ubj")))
    model = XGBoostModel(tmp_path)
    model.load()
    return model


def test_binary_records_in_json_csv_and_jsonlines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(selectable.ENV, "predicted_label, probability,probabilities,predicted_score")
    model = _model(tmp_path, {"objective": "binary:logistic"}, np.arange(40) % 2)
    scores = model.predict(model.decode(b"0,0,0,0\n9,9,9,9", "text/csv"))

    records = json.loads(model.encode(scores, "application/json"))["predictions"]
    first = records[0]
    assert first["predicted_label"] == int(scores[0] > 0.5)
    assert first["probability"] == pytest.approx(float(scores[0]))
    assert first["probabilities"] == pytest.approx([1 - float(scores[0]), float(scores[0])])
    # Not a key binary:logistic has: present, without a value.
    assert first["predicted_score"] is None

    csv = model.encode(scores, "text/csv").decode().splitlines()
    assert len(csv) == 2
    label, probability, rest = csv[0].split(",", 2)
    assert (int(label), float(probability)) == (
        first["predicted_label"],
        pytest.approx(first["probability"]),
    )
    assert rest.startswith('"[') and rest.endswith('",nan')

    lines = model.encode(scores, "application/jsonlines").decode().splitlines()
    assert [json.loads(line) for line in lines] == records


def test_multiclass_labels_and_argmax(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(selectable.ENV, "predicted_label,labels,probability")
    model = _model(tmp_path, {"objective": "multi:softprob", "num_class": 3}, np.arange(60) % 3)
    scores = model.predict(model.decode(b"1,2,3,4", "text/csv"))
    (record,) = json.loads(model.encode(scores, "application/json"))["predictions"]
    assert record["labels"] == [0, 1, 2]
    assert record["predicted_label"] == int(np.argmax(scores[0]))
    assert record["probability"] == pytest.approx(float(scores[0].max()))


def test_a_bad_selection_keeps_the_model_from_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(selectable.ENV, "predicted_label,confidence")
    with pytest.raises(ValueError, match="unknown keys confidence"):
        _model(tmp_path, {"objective": "binary:logistic"}, np.arange(40) % 2)
    monkeypatch.setenv(selectable.ENV, "predicted_label")
    with pytest.raises(ValueError, match="not supported for objective reg:pseudohubererror"):
        _model(tmp_path, {"objective": "reg:pseudohubererror"}, np.arange(40) / 40)
