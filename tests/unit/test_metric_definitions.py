"""metricDefinitions applied to log lines, and how log values and reported values merge."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from pydantic import ValidationError

from kubemaker import crd
from kubemaker.api import MetricDefinition, TrainingJob, TrainingJobSpec
from kubemaker.api.common import cel_string
from kubemaker.api.training import PYTHON_ONLY_REGEX_SYNTAX
from kubemaker.builders.errors import SpecError, validation_message
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
    # The model refuses it (below); definitions built without validation are still checked.
    bad = MetricDefinition.model_construct(name="bad", regex="auc:([")
    with pytest.raises(SpecError) as caught:
        compile_definitions([XGBOOST[0], bad])
    assert caught.value.field == "spec.algorithmSpecification.metricDefinitions.1.regex"
    assert "not a valid Python regular expression" in str(caught.value)
    assert compile_definitions(None) == []


TRAINING_SPEC: dict[str, Any] = {
    "algorithmSpecification": {
        "algorithmName": "xgboost",
        "metricDefinitions": [{"name": "validation:auc", "regex": "validation-auc:(\\S+)"}],
    },
    "outputDataConfig": {"s3OutputPath": "s3://bucket/out"},
    "resourceConfig": {"instanceType": "ml.m5.xlarge"},
}


@pytest.mark.parametrize(
    ("regex", "reason"),
    [
        ("auc:([", "unterminated character set"),
        ("auc:(\\d+", "missing ), unterminated subpattern"),
        ("*auc", "nothing to repeat"),
        ("a{99999999999}", "the repetition number is too large"),
        # RE2 syntax Python does not know: the operator runs Python's re.
        ("\\p{L}+", "bad escape \\p"),
        ("auc\\z", "bad escape \\z"),
    ],
)
def test_the_spec_refuses_a_regex_python_cannot_compile(regex: str, reason: str) -> None:
    spec = copy.deepcopy(TRAINING_SPEC)
    spec["algorithmSpecification"]["metricDefinitions"].append({"name": "bad", "regex": regex})
    with pytest.raises(ValidationError) as caught:
        TrainingJobSpec.model_validate(spec)
    message = validation_message(caught.value)
    assert message.startswith(
        "spec.algorithmSpecification.metricDefinitions.1.regex: "
        "not a valid Python regular expression: "
    )
    assert reason in message and "\n" not in message


# Python-only syntax: valid for the operator, refused by RE2 (checked with Go's regexp).
PYTHON_ONLY = [
    "(?<=auc:)[0-9.]+",
    "(?<!val-)auc:(\\S+)",
    "auc(?=:)",
    "auc(?!x):(\\S+)",
    "(a)\\1",
    "(?P<v>a)(?P=v)",
    "(?P<é>\\d+)",
    "(?#comment)auc",
    "(?x) auc : (\\d+)",
    "(?a)\\w+",
    "(?>a+)b",
    "a*+",
    "a{1,2}+",
    "(a)?(?(1)b|c)",
    "loss=(\\S+)\\Z",
    "\\u00e9",
    "\\N{DIGIT ONE}",
    "\\é",
    "a{1001}",
    "(a{100}){100}",
    "[\\b]",
    "[x[:alpha:]",
    "[\\][:alpha:]",
]
# Typos: invalid in Python and in RE2, so the apiserver refuses them.
TYPOS = ["auc:([", "auc:(", "auc)", "*auc", "a**", "a{2,1}", "[z-a]", "auc\\", "(?P<v>\\d+"]


@pytest.mark.parametrize("regex", PYTHON_ONLY)
def test_python_only_syntax_is_accepted_and_skips_the_crds_re2_check(regex: str) -> None:
    assert MetricDefinition(name="m", regex=regex).regex == regex
    assert re.search(PYTHON_ONLY_REGEX_SYNTAX, regex), regex


@pytest.mark.parametrize("regex", TYPOS)
def test_a_typo_is_refused_by_the_model_and_checked_by_the_crd(regex: str) -> None:
    with pytest.raises(ValidationError, match="not a valid Python regular expression"):
        MetricDefinition(name="m", regex=regex)
    assert not re.search(PYTHON_ONLY_REGEX_SYNTAX, regex), regex


@pytest.mark.parametrize(
    "regex",
    [r".*\[[0-9]+\].*#011validation-auc:([-+]?[0-9]*\.?[0-9]+)", r"(?i)loss[:=]\s*(\d+)"],
)
def test_common_regexes_get_the_crds_re2_check(regex: str) -> None:
    assert MetricDefinition(name="m", regex=regex).regex == regex
    assert not re.search(PYTHON_ONLY_REGEX_SYNTAX, regex)


def test_the_crd_carries_the_rule_on_the_regex() -> None:
    schema = crd.build_schema(TrainingJob.info)
    algorithm = schema["properties"]["spec"]["properties"]["algorithmSpecification"]
    regex = algorithm["properties"]["metricDefinitions"]["items"]["properties"]["regex"]
    [rule] = regex["x-kubernetes-validations"]
    assert rule["rule"].endswith(" || ''.matches(self) || !''.matches(self)")
    assert cel_string(PYTHON_ONLY_REGEX_SYNTAX) in rule["rule"]


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
