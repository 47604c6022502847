"""XGBoost script mode's pure parts: which mode the image runs, the serving defaults, and
the operator, local mode and the image agreeing on both."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from training_support import make_spec

from kubemaker.api.common import ModelSource
from kubemaker.builders.endpoint import resolve_model
from kubemaker.builders.training import build_hyperparameters, resolve_image
from kubemaker.config import OperatorConfig
from kubemaker.local import launch
from kubemaker_runtime import contract, frameworks
from kubemaker_runtime.frameworks import environment, script
from kubemaker_runtime.frameworks.xgboost import mode, serving
from kubemaker_runtime.frameworks.xgboost.training import TrainingEnvironment
from kubemaker_runtime.serving.errors import (
    InvalidInput,
    NotAcceptable,
    UnsupportedMediaType,
    status_for,
)

CONFIG = OperatorConfig()
SCRIPT_SPEC = {"framework": "xgboost", "frameworkVersion": "1.7-1", "entryPoint": "train.py"}


# --- which mode: the operator, local mode and the image agree -----------------------------


def test_a_framework_job_runs_the_xgboost_image_in_script_mode(tmp_path: Path) -> None:
    spec = make_spec(algorithmSpecification={**SCRIPT_SPEC, "sourceDir": "s3://code/src.tar.gz"})
    # The operator: the same image as the built-in algorithm...
    assert CONFIG.images.frameworks["xgboost"] == "ghcr.io/kubemaker/xgboost:0.1.0"
    assert resolve_image(spec, CONFIG) == CONFIG.images.algorithms["xgboost"]
    # ...given the entry point as SageMaker's SDK gives it, which the image switches on.
    paths = contract.Paths(tmp_path / "script")
    contract.write_hyperparameters(paths, build_hyperparameters(spec, "job"))
    assert mode.trains_script(paths)
    builtin = contract.Paths(tmp_path / "builtin")
    contract.write_hyperparameters(builtin, build_hyperparameters(make_spec(), "job"))
    assert not mode.trains_script(builtin)
    # A missing or broken file is the built-in algorithm's to report.
    assert not mode.trains_script(contract.Paths(tmp_path / "none"))
    broken = contract.Paths(tmp_path / "broken")
    broken.input_config_dir.mkdir(parents=True)
    broken.hyperparameters_file.write_text("[1, 2]")
    assert not mode.trains_script(broken)


def test_a_script_mode_model_is_served_with_its_handlers(tmp_path: Path) -> None:
    source = ModelSource.model_validate(
        {
            "modelDataUrl": "s3://models/bank/model.tar.gz",
            **SCRIPT_SPEC,
            "sourceDir": "s3://code/bank/",
        }
    )
    served = resolve_model(source, CONFIG, field="spec.productionVariants.0")
    assert served.image == "ghcr.io/kubemaker/xgboost:0.1.0"
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    assert mode.model_factory(model_dir, served.environment) == mode.SCRIPT_MODEL
    # Neither a program nor code: the built-in algorithm's server, as SageMaker's image.
    assert mode.model_factory(model_dir, {}) == mode.ALGORITHM_MODEL
    # A model trained in script mode carries its code.
    (model_dir / "code").mkdir()
    assert mode.serves_script(model_dir, {})


def test_local_mode_runs_xgboost_script_mode_with_this_interpreter() -> None:
    framework = frameworks.get("xgboost")
    assert framework.uses_current_interpreter
    assert framework.command("train") == [
        sys.executable, "-m", "kubemaker_runtime.frameworks.xgboost", "train",
    ]  # fmt: skip
    runtime = launch.resolve_runtime(
        algorithm_name=None, framework="xgboost", image=None, config=CONFIG, field="spec"
    )
    assert (runtime.kind, runtime.python, runtime.image) == (
        "framework",
        sys.executable,
        "ghcr.io/kubemaker/xgboost:0.1.0",
    )
    assert runtime.supports_hosts
    peers = launch.build_peer_env(runtime, ["job-0", "job-1"], 4242)
    assert peers["KUBEMAKER_XGBOOST_TRACKER_ADDRESS"] == "127.0.0.1"
    assert peers["KUBEMAKER_XGBOOST_TRACKER_PORT"] == "4242"


def test_the_script_is_told_it_runs_under_the_xgboost_framework(tmp_path: Path) -> None:
    paths = contract.Paths(tmp_path)
    contract.write_hyperparameters(
        paths, {"sagemaker_program": "train.py", "max_depth": "5", "eta": "0.2"}
    )
    contract.write_input_data_config(paths, {"train": {"TrainingInputMode": "File"}})
    contract.write_resource_config(
        paths, contract.build_resource_config(hosts=["algo-1"], current_host="algo-1")
    )
    env = TrainingEnvironment.load(paths, {"SM_NUM_CPUS": "2"})
    assert isinstance(env, environment.TrainingEnvironment)
    (tmp_path / "code").mkdir()
    entry = tmp_path / "code" / "train.py"
    entry.write_text("")
    process = script.script_process(env, tmp_path / "code", entry, {"PATH": "/bin"})
    assert process.argv[-4:] == ["--eta", "0.2", "--max_depth", "5"]
    assert process.display == f"{Path(sys.executable).name} train.py --eta 0.2 --max_depth 5"
    assert process.env["SM_FRAMEWORK_MODULE"] == "kubemaker_runtime.frameworks.xgboost"
    assert process.env["SM_CHANNEL_TRAIN"] == str(paths.channel_dir("train"))
    assert process.env["SM_NUM_CPUS"] == "2" and process.env["PATH"] == "/bin"
    assert process.env["PYTHONPATH"] == str(tmp_path / "code")


# --- serving defaults ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    """A real model of 3 features: y = x0 > 0.5."""
    rng = np.random.default_rng(7)
    features = rng.random((200, 3), dtype=np.float32)
    labels = (features[:, 0] > 0.5).astype(np.float32)
    params = {"objective": "binary:logistic", "max_depth": 2, "nthread": 1}
    return xgb.train(params, xgb.DMatrix(features, label=labels), num_boost_round=5)


def test_requests_the_defaults_read(booster: xgb.Booster) -> None:
    csv = serving.read_features(b"0.9,0.1,0.2\n0.1,,0.3\n", "text/csv", num_features=3)
    assert csv.shape == (2, 3) and np.isnan(csv[1, 1])
    for body in (
        b"[[0.9, 0.1, 0.2]]",
        b'{"instances": [[0.9, 0.1, 0.2]]}',
        b'{"features": [1,2,3]}',
    ):
        assert serving.read_features(body, "application/json", num_features=3).shape == (1, 3)
    lines = serving.read_features(b"[1,2,3]\n[4,5,6]\n", "application/jsonlines")
    assert lines.shape == (2, 3)
    # libsvm indices as written (XGBoost's own reader), padded to the model's width.
    sparse = serving.read_features(b"0:0.9 2:0.2\n1:0.5\n", "text/libsvm", num_features=3)
    assert sparse.shape == (2, 3) and sparse[0, 2] == pytest.approx(0.2)
    dmatrix = serving.default_input_fn(b"0.9,0.1,0.2\n", "text/csv")
    predictions = serving.default_predict_fn(dmatrix, booster)
    assert predictions.shape == (1,) and predictions[0] > 0.5


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b"1,2\n", "text/csv", 400, "has 2 features per row, the model expects 3"),
        (b"a,b,c\n", "text/csv", 400, "is not a number"),
        (b"[[1, 2", "application/json", 400, "not valid JSON"),
        (b'{"rows": []}', "application/json", 400, '"instances" or "features"'),
        (b"7:1\n", "text/libsvm", 400, "feature index 7 but the model has 3 features"),
        (b"PAR1", "application/x-parquet", 415, "define input_fn"),
    ],
)
def test_a_body_the_defaults_cannot_read_is_the_callers_error(
    body: bytes, content_type: str, status: int, message: str
) -> None:
    with pytest.raises((InvalidInput, UnsupportedMediaType)) as caught:
        serving.read_features(body, content_type, num_features=3)
    assert status_for(caught.value) == status
    assert message in str(caught.value)


def test_predict_and_output_defaults(booster: xgb.Booster) -> None:
    wide = xgb.DMatrix(np.ones((1, 5), dtype=np.float32))
    with pytest.raises(InvalidInput, match="has 5 features per row, the model expects 3"):
        serving.default_predict_fn(wide, booster)
    # SageMaker's default input_fn gives (DMatrix, content type), its model_fn
    # (booster, format): a script's own handlers may return either.
    data = (serving.default_input_fn(b"0.9,0.1,0.2\n", "text/csv"), "text/csv")
    assert serving.default_predict_fn(data, (booster, "xgb")).shape == (1,)
    with pytest.raises(TypeError, match="define predict_fn"):
        serving.default_predict_fn(data, {"not": "a model"})
    predictions = np.array([0.25, 0.75], dtype=np.float32)
    assert serving.default_output_fn(predictions, "text/csv") == b"0.25,0.75"
    assert json.loads(serving.default_output_fn(predictions, "application/json")) == [0.25, 0.75]
    with pytest.raises(NotAcceptable):
        serving.default_output_fn(predictions, "application/x-npy")


def test_the_default_model_fn_finds_the_booster(tmp_path: Path, booster: xgb.Booster) -> None:
    one = tmp_path / "one"
    (one / "code").mkdir(parents=True)
    booster.save_model(str(one / "model.json"))
    assert serving.default_model_fn(str(one)).num_features() == 3
    # Among other files, the one that loads (here a Booster pickled, as older SageMaker
    # versions saved it).
    many = tmp_path / "many"
    many.mkdir()
    (many / "metrics.json").write_text('{"auc": 0.9}')
    (many / "model.pkl").write_bytes(pickle.dumps(booster[:2]))
    assert serving.default_model_fn(str(many)).num_boosted_rounds() == 2
    # xgboost-model wins, as SageMaker names it.
    booster.save_model(str(many / "xgboost-model.json"))
    (many / "xgboost-model.json").rename(many / "xgboost-model")
    assert serving.default_model_fn(str(many)).num_boosted_rounds() == 5
    none = tmp_path / "none"
    none.mkdir()
    (none / "notes.txt").write_text("hello")
    (none / "more.txt").write_text("hello")
    with pytest.raises(FileNotFoundError, match="save it as xgboost-model"):
        serving.default_model_fn(str(none))
