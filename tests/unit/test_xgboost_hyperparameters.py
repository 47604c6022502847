"""The XGBoost algorithm's declared hyperparameters: validation, XGBoost params, tuning."""

from __future__ import annotations

import pytest

from kubemaker_runtime.algorithms.xgboost import hyperparameters as hp
from kubemaker_runtime.algorithms.xgboost.train import build_params


def test_sagemaker_hyperparameters_parse_to_typed_values() -> None:
    values = hp.validate(
        {
            "num_round": "100",
            "objective": "binary:logistic",
            "eta": '"0.2"',  # some SDK paths JSON-encode every value
            "max_depth": "5.0",  # a tuner's integer
            "subsample": "0.8",
            "eval_metric": "auc,logloss",
            "early_stopping_rounds": "10",
            "scale_pos_weight": "3",
            "sagemaker_program": "ignored.py",
        }
    )
    assert values["num_round"] == 100
    assert values["max_depth"] == 5
    assert values["eta"] == 0.2
    assert values["eval_metric"] == ["auc", "logloss"]
    assert "sagemaker_program" not in values


def test_aliases_map_to_sagemaker_names_once() -> None:
    assert hp.validate({"num_round": "1", "learning_rate": "0.1"})["eta"] == 0.1
    with pytest.raises(hp.HyperparameterError, match=r"^Hyperparameter learning_rate: given twice"):
        hp.validate({"num_round": "1", "eta": "0.1", "learning_rate": "0.2"})


ONE = {"num_round": "1"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "num_round: required"),
        ({"num_round": "0"}, "num_round: 0 is out of range [1, +inf)"),
        ({"num_round": "1.5"}, "num_round: '1.5' is not an integer"),
        ({**ONE, "subsample": "0"}, "subsample: 0 is out of range (0, 1]"),
        ({**ONE, "objective": "reg:nope"}, "objective: 'reg:nope' is not one of"),
        ({**ONE, "num_class": "3"}, "num_class: only for multi:softmax"),
        ({**ONE, "eval_metric": "auc"}, "eval_metric: auc needs a classification"),
        ({**ONE, "eval_metric": "bogus"}, "eval_metric: 'bogus' is not one of"),
        ({**ONE, "eval_metric": "rmse@2"}, "eval_metric: 'rmse@2': only error"),
        ({**ONE, "monotone_constraints": "(1,2)"}, "monotone_constraints: expected"),
        ({**ONE, "interaction_constraints": "[[0,'a']]"}, "interaction_constraints: expected"),
        ({**ONE, "_kfold": "5"}, "_kfold: k-fold cross-validation is not supported"),
        ({**ONE, "etaa": "0.1"}, "etaa: unknown; did you mean eta?"),
        ({**ONE, "gamma": "nan"}, "gamma: NaN is not allowed"),
    ],
)
def test_errors_name_the_hyperparameter(raw: dict[str, str], message: str) -> None:
    with pytest.raises(hp.HyperparameterError) as caught:
        hp.validate(raw)
    assert str(caught.value).startswith("Hyperparameter " + message)


def test_xgboost_params_keep_only_what_the_user_set_and_translate_old_names() -> None:
    values = hp.validate(
        {
            "num_round": "10",
            "early_stopping_rounds": "3",
            "csv_weights": "1",
            "objective": "reg:linear",
            "tree_method": "gpu_hist",
            "predictor": "gpu_predictor",
            "updater": "grow_colmaker,prune",
        }
    )
    params, notes = hp.xgboost_params(values)
    assert params == {
        "objective": "reg:squarederror",
        "tree_method": "hist",
        "device": "cuda",
        "updater": "grow_colmaker,prune",
    }
    assert any("predictor" in note for note in notes)


def test_silent_from_sagemakers_notebooks_is_verbosity() -> None:
    quiet, notes = hp.xgboost_params(hp.validate({"num_round": "1", "silent": "1"}))
    assert quiet == {"verbosity": 0}
    assert any("silent" in note for note in notes)
    assert hp.xgboost_params(hp.validate({"num_round": "1", "silent": "0"}))[0] == {}
    with pytest.raises(hp.HyperparameterError, match="silent"):
        hp.validate({"num_round": "1", "silent": "2"})


def test_a_visible_gpu_selects_cuda_unless_the_user_chose() -> None:
    values = hp.validate({"num_round": "1"})
    assert build_params(values, gpu=True)[0] == {"device": "cuda"}
    assert build_params(values, gpu=False)[0] == {}
    assert (
        "device"
        not in build_params(hp.validate({"num_round": "1", "tree_method": "exact"}), gpu=True)[0]
    )
    assert build_params(hp.validate({"num_round": "1", "device": "cpu"}), gpu=True)[0] == {
        "device": "cpu"
    }


def test_the_tuning_objective_metric_is_the_one_early_stopping_watches() -> None:
    values = hp.validate(
        {
            "num_round": "1",
            "objective": "binary:logistic",
            "eval_metric": "auc,logloss",
            "_tuning_objective_metric": "validation:auc",
        }
    )
    assert build_params(values, gpu=False)[0]["eval_metric"] == ["logloss", "auc"]


def test_tunable_ranges_follow_sagemakers_recommendations() -> None:
    ranges = hp.tunable_ranges()
    assert ranges["eta"] == {
        "type": "Continuous",
        "minValue": 0.1,
        "maxValue": 0.5,
        "scalingType": "Auto",
        "allowed": "[0, 1]",
    }
    assert ranges["max_depth"]["type"] == "Integer"
    assert ranges["num_round"]["maxValue"] == 4000
    assert "objective" not in ranges
    assert set(ranges) >= {"alpha", "lambda", "gamma", "subsample", "min_child_weight"}
