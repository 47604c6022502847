"""metricDefinitions applied to log lines, and how log values and reported values merge."""

from __future__ import annotations

import pytest

from kubemaker.api import MetricDefinition
from kubemaker.builders.errors import SpecError
from kubemaker.metric_definitions import (
    MetricParser,
    cloudwatch_rendering,
    compile_definitions,
    merge_final_metrics,
)

XGBOOST = [
    MetricDefinition(name="train:auc", regex=r".*\[[0-9]+\].*#011train-auc:([-+]?[0-9]*\.?[0-9]+)"),
    MetricDefinition(name="validation:auc", regex=r"validation-auc:([-+]?[0-9]*\.?[0-9]+)"),
]


def test_sagemaker_regexes_match_real_tabs_as_cloudwatch_renders_them() -> None:
    parser = MetricParser(XGBOOST)
    line = "[3]\ttrain-auc:0.91000\tvalidation-auc:0.89120"
    assert cloudwatch_rendering(line) == "[3]#011train-auc:0.91000#011validation-auc:0.89120"
    assert parser.feed(line) == {"train:auc": 0.91, "validation:auc": 0.8912}
    # Already rendered (a log shipped through syslog) matches as printed.
    assert parser.feed("[4]#011train-auc:0.92#011validation-auc:0.9") == {
        "train:auc": 0.92,
        "validation:auc": 0.9,
    }


def test_the_latest_value_of_each_metric_wins() -> None:
    parser = MetricParser(XGBOOST)
    parser.feed_lines(
        [
            "[0]\ttrain-auc:0.80\tvalidation-auc:0.79",
            "some other line",
            "[1]\ttrain-auc:0.85\tvalidation-auc:0.84",
            "validation-auc:0.86 printed alone",
        ]
    )
    assert parser.latest == {"train:auc": 0.85, "validation:auc": 0.86}


def test_without_a_group_the_whole_match_and_odd_values_are_skipped() -> None:
    parser = MetricParser(
        [
            MetricDefinition(name="loss", regex=r"(?<=loss=)[0-9.]+"),
            MetricDefinition(name="acc", regex=r"acc=(\S+)"),
        ]
    )
    assert parser.feed("epoch 1 loss=0.25 acc=nan") == {"loss": 0.25}
    assert parser.feed("acc=n/a loss=inf") == {}
    assert parser.feed("acc=1e-3") == {"acc": 0.001}


def test_an_invalid_regex_is_a_user_error_naming_the_definition() -> None:
    definitions = [XGBOOST[0], MetricDefinition(name="bad", regex="auc:([")]
    with pytest.raises(SpecError) as caught:
        compile_definitions(definitions)
    assert caught.value.field == "spec.algorithmSpecification.metricDefinitions.1.regex"
    assert "not a valid regular expression" in str(caught.value)
    assert compile_definitions(None) == []


def test_reported_final_metrics_override_the_log_and_the_first_host_wins() -> None:
    from_logs = {"validation:auc": 0.88, "train:auc": 0.9, "epoch": 9.0}
    first_host = {"validation:auc": 0.91}
    second_host = {"validation:auc": 0.5, "train:auc": 0.95}
    assert merge_final_metrics(from_logs, [first_host, second_host]) == {
        "validation:auc": 0.91,
        "train:auc": 0.95,
        "epoch": 9.0,
    }
    assert merge_final_metrics({}, []) == {}
