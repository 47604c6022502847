"""Parsers and encoders of the XGBoost algorithm: CSV, libsvm, content types, CSV output."""

from __future__ import annotations

import re

import numpy as np
import pytest

from kubemaker_runtime.algorithms.xgboost import data
from kubemaker_runtime.algorithms.xgboost.hyperparameters import metric_definitions
from kubemaker_runtime.algorithms.xgboost.metrics import (
    cloudwatch_rendering,
    format_round,
    parse_eval_line,
)
from kubemaker_runtime.algorithms.xgboost.serve import encode_csv


def test_csv_fast_path_and_field_by_field_path_agree() -> None:
    fast = data.parse_csv(b"1,2.5,-3e2\n4,5,6\n")
    assert fast.dtype == np.float32
    np.testing.assert_array_equal(fast, [[1, 2.5, -300], [4, 5, 6]])
    # Windows line ends, quoted numbers, spaces and NaN take the careful path.
    careful = data.parse_csv(b'1, "2.5",-3e2\r\n4,5,nan\r\n')
    np.testing.assert_array_equal(careful[0], [1, 2.5, -300])
    assert np.isnan(careful[1, 2])
    assert data.parse_csv(b"7,8").shape == (1, 2)


def test_csv_empty_fields_are_missing_values() -> None:
    parsed = data.parse_csv(b"1,,3\n,5,6")
    assert np.isnan(parsed[0, 1])
    assert np.isnan(parsed[1, 0])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "no rows"),
        (b"1,2\n3", "CSV line 2 has 1 columns, the first line has 2"),
        (b"1,x", "CSV line 1, column 2: 'x' is not a number"),
        (b"[1,2],3", "column 1: '[1' is not a number"),
    ],
)
def test_csv_errors_say_where(body: bytes, message: str) -> None:
    with pytest.raises(data.DataError, match=message.replace("[", r"\[")):
        data.parse_csv(body)


def test_libsvm_labels_weights_and_index_base() -> None:
    parsed = data.parse_libsvm(b"1:2.0 1:0.5 3:1.5\n0:1 2:2 # comment\n\n", with_labels=True)
    np.testing.assert_array_equal(parsed.labels, [1, 0])
    np.testing.assert_array_equal(parsed.weights, [2, 1])
    base = data.detect_index_base(parsed.columns)
    assert base == 1
    matrix = data.to_csr(parsed, base)
    np.testing.assert_array_equal(matrix.toarray(), [[0.5, 0, 1.5], [0, 2, 0]])
    zero_based = data.parse_libsvm(b"0:1 2:3", with_labels=False)
    assert data.detect_index_base(zero_based.columns) == 0
    assert zero_based.labels.size == 0


def test_libsvm_requests_wider_than_the_model_are_rejected() -> None:
    parsed = data.parse_libsvm(b"0 1:1 5:1", with_labels=False)
    with pytest.raises(data.DataError, match="feature index 5 but the model has 3 features"):
        data.to_csr(parsed, 1, num_features=3)
    with pytest.raises(data.DataError, match="is not index:value"):
        data.parse_libsvm(b"1 2:x", with_labels=True)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # Past int64: it used to overflow the index array (OverflowError, a 500).
        (b"0 1:1 99999999999999999999:1", "line 1: feature index '99999999999999999999'"),
        (b"0 1:1\n0 %d:1" % 2**63, f"line 2: feature index '{2**63}' is out of range"),
        # Past what XGBoost can count (32 bits): refused here, not deep in XGBoost.
        (b"0 %d:1" % 2**32, "is out of range (0 to 4294967294)"),
        (b"0 -3:1", "feature index '-3' is out of range"),
    ],
)
def test_libsvm_feature_indices_out_of_range_are_data_errors(body: bytes, message: str) -> None:
    with pytest.raises(data.DataError, match=re.escape(message)):
        data.parse_libsvm(body, with_labels=True)
    # Training reads channels with the same parser: the job's ClientError.
    with pytest.raises(data.DataError, match=re.escape(message)):
        data.read_blobs([body], data.LIBSVM)
    largest = data.MAX_FEATURE_INDEX + 1
    assert data.parse_libsvm(b"0 %d:1" % largest, with_labels=True).columns.tolist() == [largest]


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        (None, "text/libsvm"),
        ("csv", "text/csv"),
        ("text/csv; label_size=1", "text/csv"),
        ("text/x-libsvm", "text/libsvm"),
        ("application/x-parquet", "application/x-parquet"),
    ],
)
def test_channel_content_types_as_sagemaker_spells_them(given: str | None, canonical: str) -> None:
    assert data.normalize_content_type(given) == canonical


def test_unsupported_channel_content_type() -> None:
    with pytest.raises(data.DataError, match="application/x-recordio-protobuf"):
        data.normalize_content_type("application/x-recordio-protobuf")


def test_csv_output_shapes() -> None:
    scores = np.array([0.25, 0.5], dtype=np.float32)
    assert encode_csv(scores, batch=False) == b"0.25,0.5"
    assert encode_csv(scores, batch=True) == b"0.25\n0.5\n"
    vectors = np.array([[0.1, 0.9], [0.7, 0.3]], dtype=np.float32)
    assert encode_csv(vectors, batch=False) == b"0.1,0.9\n0.7,0.3"
    assert encode_csv(vectors, batch=True) == b"0.1,0.9\n0.7,0.3\n"


def test_evaluation_log_lines_match_sagemaker_metric_regexes() -> None:
    line = format_round(3, [("train", "auc", 0.91), ("validation", "auc", 0.89)])
    assert line == "[3]\ttrain-auc:0.91000\tvalidation-auc:0.89000"
    assert cloudwatch_rendering(line) == "[3]#011train-auc:0.91000#011validation-auc:0.89000"
    definitions = {d["Name"]: d for d in metric_definitions()}
    regex = definitions["validation:auc"]["Regex"]
    assert regex == r".*\[[0-9]+\].*#011validation-auc:(\S+)"
    assert definitions["validation:auc"]["Direction"] == "Maximize"
    assert definitions["validation:rmse"]["Direction"] == "Minimize"
    match = re.match(regex, cloudwatch_rendering(line))
    assert match is not None
    assert match.group(1) == "0.89000"
    assert parse_eval_line("[0]\ttrain-poisson-nloglik:1.5\tvalidation-error@0.7:0.25") == {
        "train:poisson-nloglik": 1.5,
        "validation:error@0.7": 0.25,
    }
