"""The XGBoost algorithm's ``serve``: a model trained by ``train``, served over real HTTP.

Requests and responses in SageMaker's XGBoost formats; predictions must equal the
trained Booster's own, in-process.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from serving_support import Server, run_server
from xgboost_support import (
    assert_succeeded,
    load_model,
    make_classification,
    run_train,
    write_job,
)

from kubemaker_runtime import contract

FEATURES = 10


def serve_command(base: Path) -> list[str]:
    module = "kubemaker_runtime.algorithms.xgboost"
    return [sys.executable, "-m", module, "serve", "--base-dir", str(base)]


def csv(rows: np.ndarray) -> str:
    return "\n".join(",".join(repr(float(v)) for v in row) for row in rows)


def _train(base: Path, hyperparameters: dict[str, object], y_map=None) -> contract.Paths:  # type: ignore[no-untyped-def]
    x, y = make_classification(800, 21)
    if y_map is not None:
        y = y_map(x, y)
    paths = write_job(base, hyperparameters, {"train": (x, y)})
    assert_succeeded(run_train(base))
    return paths


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, contract.Paths]]:
    base = tmp_path_factory.mktemp("binary")
    paths = _train(base, {"num_round": 20, "objective": "binary:logistic", "max_depth": 3})
    with run_server(serve_command(base), base) as server:
        yield server, paths


@pytest.fixture(scope="module")
def softprob(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, contract.Paths]]:
    base = tmp_path_factory.mktemp("softprob")
    paths = _train(
        base,
        {"num_round": 5, "objective": "multi:softprob", "num_class": 3},
        y_map=lambda x, y: np.where(x[:, 5] > 0.8, 2.0, y),
    )
    # A batch transform container: one prediction per line.
    with run_server(serve_command(base), base, {"SAGEMAKER_BATCH": "true"}) as server:
        yield server, paths


def test_csv_predictions_equal_the_boosters_own(binary: tuple[Server, contract.Paths]) -> None:
    server, paths = binary
    x, _ = make_classification(5, 22)
    expected = load_model(paths).inplace_predict(x)

    one = server.post("/invocations", csv(x[:1]), **{"Content-Type": "text/csv"})
    assert one.status_code == 200
    assert one.headers["Content-Type"] == "text/csv"
    assert float(one.text) == pytest.approx(float(expected[0]), rel=1e-6)

    many = server.post("/invocations", csv(x) + "\n", **{"Content-Type": "text/csv"})
    # SageMaker's XGBoost: comma-separated predictions on one line.
    assert "\n" not in many.text
    np.testing.assert_allclose([float(v) for v in many.text.split(",")], expected, rtol=1e-6)


def test_json_jsonlines_and_libsvm_requests(binary: tuple[Server, contract.Paths]) -> None:
    server, paths = binary
    x, _ = make_classification(3, 23)
    expected = load_model(paths).inplace_predict(x)
    json_type = {"Content-Type": "application/json", "Accept": "application/json"}

    instances = server.post("/invocations", json.dumps({"instances": x.tolist()}), **json_type)
    scores = [p["score"] for p in instances.json()["predictions"]]
    np.testing.assert_allclose(scores, expected, rtol=1e-6)

    features = {"instances": [{"features": row} for row in x.tolist()]}
    response = server.post("/invocations", json.dumps(features), **json_type)
    assert [p["score"] for p in response.json()["predictions"]] == scores

    single = server.post("/invocations", json.dumps({"features": x[0].tolist()}), **json_type)
    assert single.json() == {"predictions": [{"score": scores[0]}]}

    lines = "\n".join(json.dumps({"features": row}) for row in x.tolist())
    response = server.post(
        "/invocations",
        lines,
        **{"Content-Type": "application/jsonlines", "Accept": "application/jsonlines"},
    )
    assert response.headers["Content-Type"] == "application/jsonlines"
    assert [json.loads(line)["score"] for line in response.text.splitlines()] == scores

    # libsvm, with a label to ignore and 1-based indices as the trainer read them.
    libsvm = "\n".join(
        "0 " + " ".join(f"{j + 1}:{v!r}" for j, v in enumerate(row.tolist())) for row in x
    )
    response = server.post("/invocations", libsvm, **{"Content-Type": "text/libsvm"})
    np.testing.assert_allclose([float(v) for v in response.text.split(",")], expected, rtol=1e-6)


def test_missing_values_and_bad_payloads(binary: tuple[Server, contract.Paths]) -> None:
    server, paths = binary
    x, _ = make_classification(1, 24)
    row = x[0].tolist()
    with_missing = ",".join("" if j == 2 else repr(v) for j, v in enumerate(row))
    response = server.post("/invocations", with_missing, **{"Content-Type": "text/csv"})
    x_missing = x.copy()
    x_missing[0, 2] = np.nan
    assert float(response.text) == pytest.approx(
        float(load_model(paths).inplace_predict(x_missing)[0]), rel=1e-6
    )

    wrong_width = server.post("/invocations", "1,2,3", **{"Content-Type": "text/csv"})
    assert wrong_width.status_code == 400
    assert f"the model expects {FEATURES}" in wrong_width.text
    not_numbers = server.post("/invocations", "1,abc," + "1," * 8, **{"Content-Type": "text/csv"})
    assert not_numbers.status_code == 400
    assert "column 2: 'abc' is not a number" in not_numbers.text
    ragged = server.post("/invocations", csv(x) + "\n1,2", **{"Content-Type": "text/csv"})
    assert ragged.status_code == 400
    assert "line 2 has 2 columns" in ragged.text
    bad_json = server.post("/invocations", '{"rows": []}', **{"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    assert "instances" in bad_json.text
    assert (
        server.post("/invocations", "1:2:3", **{"Content-Type": "text/libsvm"}).status_code == 400
    )
    unsupported = server.post("/invocations", "x", **{"Content-Type": "image/png"})
    assert unsupported.status_code == 415
    not_acceptable = server.post(
        "/invocations", csv(x), **{"Content-Type": "text/csv", "Accept": "application/x-protobuf"}
    )
    assert not_acceptable.status_code == 406


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("1:0.5 99999999999999999999:1", "feature index '99999999999999999999' is out of range"),
        (f"1:0.5 {2**63}:1", "is out of range (0 to 4294967294)"),
        ("1:0.5 -2:1", "feature index '-2' is out of range"),
        ("1:0.5 4000000000:1", f"feature index 4000000000 but the model has {FEATURES} features"),
        ("1:0.5 2:abc", "'2:abc' is not index:value"),
    ],
)
def test_libsvm_requests_with_bad_indices_are_400(
    binary: tuple[Server, contract.Paths], body: str, message: str
) -> None:
    server, _ = binary
    response = server.post("/invocations", body, **{"Content-Type": "text/libsvm"})
    assert response.status_code == 400, response.text
    assert message in response.text
    assert server.get("/ping").status_code == 200


def test_open_inference_protocol_bad_tensors_are_400(binary: tuple[Server, contract.Paths]) -> None:
    server, _ = binary

    def infer(datatype: str, data: str, shape: str = f"[1, {FEATURES}]") -> tuple[int, str]:
        body = (
            f'{{"inputs": [{{"name": "input-0", "shape": {shape}, '
            f'"datatype": "{datatype}", "data": {data}}}]}}'
        )
        response = server.post("/v2/models/xgboost/infer", body)
        return response.status_code, response.json().get("error", "")

    ones = ", ".join(["1"] * (FEATURES - 1))
    assert infer("INT8", f"[{ones}, 127]")[0] == 200
    assert infer("INT8", f"[{ones}, 300]") == (
        400,
        "inputs[0] ('input-0').data has a value out of range for INT8 (-128 to 127): 300",
    )
    status, error = infer("INT64", f"[{ones}, {2**63}]")
    assert (status, "out of range for INT64" in error) == (400, True)
    status, error = infer("BYTES", json.dumps(["a"] * FEATURES))
    assert (status, error) == (
        400,
        "input 'input-0' is BYTES: the XGBoost model takes numbers (FP*, INT*, UINT* or BOOL)",
    )
    status, error = infer("FP32", json.dumps([1.0] * 3), shape="[3]")
    assert (status, error) == (
        400,
        f"input 'input-0' has shape [1, 3]: expected [rows, {FEATURES}]",
    )


def test_open_inference_protocol_infer(binary: tuple[Server, contract.Paths]) -> None:
    server, paths = binary
    x, _ = make_classification(2, 25)
    metadata = server.get("/v2/models/xgboost").json()
    assert metadata["platform"] == "xgboost"
    assert metadata["inputs"][0]["shape"] == [-1, FEATURES]
    request = {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ]
    }
    response = server.post("/v2/models/xgboost/infer", json.dumps(request))
    assert response.status_code == 200
    (output,) = response.json()["outputs"]
    assert output["shape"] == [2]
    np.testing.assert_allclose(output["data"], load_model(paths).inplace_predict(x), rtol=1e-6)


def test_softprob_vectors_in_batch_transform_mode(softprob: tuple[Server, contract.Paths]) -> None:
    server, paths = softprob
    x, _ = make_classification(3, 26)
    expected = load_model(paths).inplace_predict(x)
    assert expected.shape == (3, 3)

    response = server.post("/invocations", csv(x), **{"Content-Type": "text/csv"})
    # One line per record (a batch transform's output joins by line), classes by comma.
    lines = response.text.splitlines()
    assert response.text.endswith("\n")
    assert len(lines) == 3
    np.testing.assert_allclose(
        [[float(v) for v in line.split(",")] for line in lines], expected, rtol=1e-6
    )

    response = server.post(
        "/invocations", csv(x), **{"Content-Type": "text/csv", "Accept": "application/json"}
    )
    scores = [p["score"] for p in response.json()["predictions"]]
    np.testing.assert_allclose(scores, expected, rtol=1e-6)
