"""The TuningJob search (planners/tuning_search.py, tuning_space.py): pure functions."""

from __future__ import annotations

import math
from typing import Any

import pytest

from kubemaker.api.tuning import (
    ContinuousParameterRange,
    HyperParameterTuningJobConfig,
    ParameterRanges,
)
from kubemaker.planners.tuning_search import (
    DEFINITION,
    Space,
    Trial,
    best,
    check_ranges,
    completion_reason,
    grid,
    hyperband_stop,
    median_stop,
    suggest,
)
from kubemaker.planners.tuning_space import (
    Dimension,
    dimensions,
    from_internal,
    resolve_scale,
    to_internal,
)


def config(
    strategy: str = "Bayesian",
    *,
    integer: list[dict[str, Any]] | None = None,
    continuous: list[dict[str, Any]] | None = None,
    categorical: list[dict[str, Any]] | None = None,
    objective: str = "Maximize",
    criteria: dict[str, Any] | None = None,
) -> HyperParameterTuningJobConfig:
    ranges: dict[str, Any] = {}
    if integer:
        ranges["integerParameterRanges"] = integer
    if continuous:
        ranges["continuousParameterRanges"] = continuous
    if categorical:
        ranges["categoricalParameterRanges"] = categorical
    body: dict[str, Any] = {
        "strategy": strategy,
        "hyperParameterTuningJobObjective": {"type": objective, "metricName": "validation:auc"},
        "resourceLimits": {"maxNumberOfTrainingJobs": 50, "maxParallelTrainingJobs": 5},
        "parameterRanges": ranges,
    }
    if criteria:
        body["tuningJobCompletionCriteria"] = criteria
    return HyperParameterTuningJobConfig.model_validate(body)


NUMERIC = config(
    integer=[{"name": "max_depth", "minValue": 1, "maxValue": 10}],
    continuous=[
        {"name": "eta", "minValue": 0.01, "maxValue": 0.5, "scalingType": "Linear"},
        {"name": "lambda", "minValue": 0.001, "maxValue": 100, "scalingType": "Logarithmic"},
    ],
)


def ranges(cfg: HyperParameterTuningJobConfig) -> ParameterRanges:
    assert cfg.parameter_ranges is not None
    return cfg.parameter_ranges


def completed(index: int, objective: float, **hp: str) -> Trial:
    return Trial(index, hp, "completed", objective)


# --- scaling ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scale", "values"),
    [
        ("Linear", [-3.0, 0.0, 0.25, 7.5]),
        ("Logarithmic", [1e-6, 0.3, 1.0, 4000.0]),
        ("ReverseLogarithmic", [0.0, 0.5, 0.9, 0.999999]),
    ],
)
def test_transforms_round_trip(scale: Any, values: list[float]) -> None:
    for value in values:
        assert from_internal(to_internal(value, scale), scale) == pytest.approx(value, rel=1e-12)


def test_auto_scale_rule() -> None:
    assert resolve_scale("Auto", 0.1, 0.5, integer=False) == "Linear"
    assert resolve_scale("Auto", 0.001, 1.0, integer=False) == "Logarithmic"
    assert resolve_scale("Auto", 0.0, 1000.0, integer=False) == "Linear"
    assert resolve_scale("Auto", 1, 4000, integer=True) == "Linear"
    with pytest.raises(ValueError, match="within"):
        resolve_scale("ReverseLogarithmic", 0.5, 1.0, integer=False)
    with pytest.raises(ValueError, match="minValue > 0"):
        resolve_scale("Logarithmic", 0.0, 1.0, integer=False)


def reverse_log_config(scale: str) -> HyperParameterTuningJobConfig:
    return config(
        "Random",
        continuous=[{"name": "momentum", "minValue": 0.9, "maxValue": 0.999, "scalingType": scale}],
    )


@pytest.mark.parametrize("scale", ["ReverseLogarithmic", "Linear"])
def test_reverse_log_is_dense_near_one(scale: str) -> None:
    n = 1000
    samples = [float(s["momentum"]) for s in suggest(reverse_log_config(scale), [], n, seed=3)]
    assert all(0.9 <= x <= 0.999 for x in samples)
    # P(x > 0.99): y = 1 - x log-uniform over [0.001, 0.1] -> (ln .01 - ln .001) / (ln .1 - ln .001)
    if scale == "ReverseLogarithmic":
        expected = (math.log(0.01) - math.log(0.001)) / (math.log(0.1) - math.log(0.001))
    else:
        expected = (0.999 - 0.99) / (0.999 - 0.9)
    share = sum(x > 0.99 for x in samples) / n
    assert share == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / n))


def test_integers_within_bounds_and_log_integers_cover_the_range() -> None:
    cfg = config(
        "Random",
        integer=[{"name": "n", "minValue": 1, "maxValue": 5, "scalingType": "Logarithmic"}],
    )
    values = [s["n"] for s in suggest(cfg, [], 300, seed=1)]
    assert all(v.isdigit() for v in values)
    assert {int(v) for v in values} == {1, 2, 3, 4, 5}
    dim = Dimension("n", "integer", 1, 5, "Logarithmic")
    assert dim.decode(-100.0) == "1" and dim.decode(100.0) == "5"


def test_strings_are_full_precision_and_read_back() -> None:
    [values] = suggest(NUMERIC, [], 1, seed=0)
    assert set(values) == {"max_depth", "eta", "lambda"}
    assert str(int(values["max_depth"])) == values["max_depth"]
    eta = float(values["eta"])
    assert repr(eta) == values["eta"] and 0.01 <= eta <= 0.5
    dim = dimensions(NUMERIC.parameter_ranges)[2]
    encoded = dim.encode(values["lambda"])
    assert isinstance(encoded, float)
    assert dim.decode(encoded) == values["lambda"]
    assert dim.encode("nan") is None and dim.encode("x") is None


# --- suggestions --------------------------------------------------------------------------


def test_grid_order_and_count() -> None:
    cfg = config(
        "Grid",
        categorical=[
            {"name": "booster", "values": ["gbtree", "dart"]},
            {"name": "tree_method", "values": ["hist", "approx", "exact"]},
        ],
    )
    combos = grid(cfg)
    assert len(combos) == 6
    assert combos[:4] == [
        {"booster": "gbtree", "tree_method": "hist"},
        {"booster": "gbtree", "tree_method": "approx"},
        {"booster": "gbtree", "tree_method": "exact"},
        {"booster": "dart", "tree_method": "hist"},
    ]
    tried = [Trial(0, combos[0], "completed", 0.5), Trial(1, combos[1], "running")]
    assert suggest(cfg, tried, 3, seed=0) == combos[2:5]
    assert suggest(cfg, tried, 10, seed=0) == combos[2:]
    assert suggest(cfg, [Trial(i, c, "failed") for i, c in enumerate(combos)], 1, seed=0) == []


@pytest.mark.parametrize("strategy", ["Bayesian", "Random", "Hyperband"])
def test_same_seed_same_suggestions(strategy: str) -> None:
    cfg = NUMERIC.model_copy(update={"strategy": strategy})
    trials = [completed(i, 0.5 + i / 100, **s) for i, s in enumerate(suggest(cfg, [], 12, seed=9))]
    assert suggest(cfg, trials, 3, seed=9) == suggest(cfg, trials, 3, seed=9)
    assert suggest(cfg, trials, 3, seed=9) != suggest(cfg, trials, 3, seed=10)


def test_restart_asks_again_and_gets_the_same_trial() -> None:
    history = suggest(NUMERIC, [], 12, seed=4)
    trials = [completed(i, -((float(s["eta"]) - 0.2) ** 2), **s) for i, s in enumerate(history)]
    batch = suggest(NUMERIC, trials, 3, seed=4)
    # The operator created trials 12 and 13, then restarted before creating 14.
    running = [Trial(12 + i, batch[i], "running") for i in range(2)]
    assert suggest(NUMERIC, trials + running, 1, seed=4) == [batch[2]]
    # The first of a batch is the single suggestion.
    assert suggest(NUMERIC, trials, 1, seed=4) == batch[:1]


def test_tpe_does_not_propose_a_running_point() -> None:
    history = suggest(NUMERIC, [], 15, seed=2)
    trials = [completed(i, float(s["eta"]), **s) for i, s in enumerate(history)]
    running = [
        Trial(15 + i, s, "running") for i, s in enumerate(suggest(NUMERIC, trials, 4, seed=2))
    ]
    more = suggest(NUMERIC, trials + running, 6, seed=2)
    seen = [t.hyperparameters for t in trials + running]
    assert all(s not in seen for s in more)
    assert len({tuple(sorted(s.items())) for s in more}) == len(more)


def test_failed_and_stopped_trials_rebuild_without_error() -> None:
    history = suggest(NUMERIC, [], 12, seed=5)
    trials = [
        completed(0, 0.7, **history[0]),
        Trial(1, history[1], "failed"),
        Trial(2, history[2], "stopped", None, [(1, 0.2), (2, 0.25)]),
        Trial(3, history[3], "stopped"),
        Trial(4, {"eta": "not a number"}, "completed", 0.9),  # not of this space: ignored
        Trial(5, history[5], "completed", None),
    ] + [completed(i, 0.5, **history[i]) for i in range(6, 12)]
    [values] = suggest(NUMERIC, trials, 1, seed=5)
    assert 1 <= int(values["max_depth"]) <= 10


# --- early stopping -----------------------------------------------------------------------


def series(index: int, values: list[float], state: Any = "completed") -> Trial:
    return Trial(index, {}, state, values[-1], list(enumerate(values, start=1)))


def test_median_rule_uses_running_averages() -> None:
    others = [series(0, [0.5, 0.9, 1.0]), series(1, [0.6, 0.6, 0.6]), series(2, [0.4, 0.8, 0.9])]
    # At step 2 the running averages are 0.7, 0.6, 0.6 (median 0.6), the values 0.9, 0.6,
    # 0.8 (median 0.8): 0.7 is kept by SageMaker's rule, a value-median rule would stop it.
    assert not median_stop(series(3, [0.3, 0.7], "running"), others, maximize=True)
    assert median_stop(series(3, [0.3, 0.55], "running"), others, maximize=True)
    assert not median_stop(series(3, [0.3, 0.55], "running"), others, maximize=False)
    assert median_stop(series(3, [0.3, 0.7], "running"), others, maximize=False)


def test_median_rule_waits_for_enough_completed() -> None:
    others = [series(0, [0.9, 0.9]), series(1, [0.9, 0.9]), series(2, [0.9], "running")]
    assert not median_stop(series(3, [0.1, 0.1], "running"), others, maximize=True)
    late = Trial(2, {}, "completed", 0.0, [(5, 0.9)])  # no value by step 2
    assert not median_stop(series(3, [0.1, 0.1], "running"), [*others[:2], late], maximize=True)
    assert median_stop(
        series(3, [0.1, 0.1], "running"), [*others[:2], series(2, [0.9])], maximize=True
    )


def test_hyperband_single_bracket() -> None:
    # min 1, max 2, factor 3: one bracket, rungs at steps 1, 3, 9.
    others = [series(i, [v]) for i, v in enumerate([0.9, 0.8, 0.7, 0.6, 0.5])]
    args: dict[str, Any] = {"min_resource": 1, "max_resource": 2, "maximize": True}
    # 6 values at rung 0: the top 6 // 3 = 2 go on.
    assert hyperband_stop(series(5, [0.1], "running"), others, **args)
    assert not hyperband_stop(series(5, [0.85], "running"), others, **args)
    assert hyperband_stop(series(5, [0.75], "running"), others, **args)
    assert not hyperband_stop(series(5, [0.1], "running"), others, **{**args, "maximize": False})
    assert not hyperband_stop(series(5, [0.1], "stopped"), others, **args)


def test_hyperband_brackets_stop_the_worst_and_keep_the_best() -> None:
    others = [series(i, [0.5 + 0.01 * (i % 7)] * 27) for i in range(40)]
    args: dict[str, Any] = {"min_resource": 1, "max_resource": 27, "maximize": True}
    worst = [series(40 + k, [0.1] * 27, "running") for k in range(4)]
    bestest = [series(40 + k, [0.99] * 27, "running") for k in range(4)]
    assert all(hyperband_stop(t, others, **args) for t in worst)
    assert not any(hyperband_stop(t, others, **args) for t in bestest)


# --- completion and best ------------------------------------------------------------------


def test_target_objective_value() -> None:
    cfg = config(continuous=[{"name": "eta", "minValue": 0, "maxValue": 1}])
    reached = cfg.model_copy(update={"tuning_job_completion_criteria": None})
    assert completion_reason(reached, [completed(0, 0.99)]) is None
    cfg = config(
        continuous=[{"name": "eta", "minValue": 0, "maxValue": 1}],
        criteria={"targetObjectiveMetricValue": 0.9},
    )
    assert completion_reason(cfg, [completed(0, 0.8)]) is None
    reason = completion_reason(cfg, [completed(0, 0.8), completed(1, 0.95)])
    assert reason is not None and "Training job 1" in reason and "0.9" in reason
    low = config(
        continuous=[{"name": "eta", "minValue": 0, "maxValue": 1}],
        criteria={"targetObjectiveMetricValue": 0.9},
        objective="Minimize",
    )
    assert completion_reason(low, [completed(0, 0.95)]) is None
    assert completion_reason(low, [completed(0, 0.85)]) is not None


def test_best_objective_not_improving() -> None:
    cfg = config(
        continuous=[{"name": "eta", "minValue": 0, "maxValue": 1}],
        criteria={"bestObjectiveNotImproving": {"maxNumberOfTrainingJobsNotImproving": 3}},
    )
    trials = [completed(0, 0.5), completed(1, 0.7), completed(2, 0.6), completed(3, 0.7)]
    assert completion_reason(cfg, trials) is None
    trials.append(Trial(4, {}, "failed"))
    assert completion_reason(cfg, trials) is None
    reason = completion_reason(cfg, [*trials, completed(5, 0.69)])
    assert reason is not None and reason.startswith("3 training jobs in a row")
    assert completion_reason(cfg, [*trials, completed(5, 0.71)]) is None


def test_convergence_is_our_rule() -> None:
    cfg = config(
        continuous=[{"name": "eta", "minValue": 0, "maxValue": 1}],
        criteria={"convergenceDetected": {"completeOnConvergence": "Enabled"}},
    )
    spread = [completed(i, 0.5 + 0.03 * i) for i in range(5)]
    flat = [completed(5 + i, 0.9 - 0.0001 * i) for i in range(5)]
    assert completion_reason(cfg, flat) is None  # fewer than 10 completed
    reason = completion_reason(cfg, spread + flat)
    assert reason is not None and "converged" in reason
    assert completion_reason(cfg, [*spread, *flat[:4], completed(9, 0.8)]) is None
    off = cfg.model_copy(update={"tuning_job_completion_criteria": None})
    assert completion_reason(off, spread + flat) is None


def test_best_with_ties() -> None:
    trials = [completed(3, 0.8), completed(1, 0.8), completed(2, 0.5), Trial(0, {}, "running")]
    top = best(trials, maximize=True)
    assert top is not None and top.index == 1
    low = best([*trials, Trial(4, {}, "completed", math.nan)], maximize=False)
    assert low is not None and low.index == 2
    assert best([Trial(0, {}, "failed"), Trial(1, {}, "completed", None)], maximize=True) is None


# --- check_ranges -------------------------------------------------------------------------

XGB_TABLE = {
    "eta": {"type": "Continuous", "minValue": 0.1, "maxValue": 0.5, "allowed": "[0, 1]"},
    "subsample": {"type": "Continuous", "minValue": 0.5, "maxValue": 1, "allowed": "(0, 1]"},
    "max_depth": {"type": "Integer", "minValue": 0, "maxValue": 10, "allowed": "[0, +inf)"},
}


def test_check_ranges_against_the_algorithm() -> None:
    cfg = config(
        integer=[{"name": "max_depth", "minValue": 0, "maxValue": 12}],
        continuous=[
            {"name": "eta", "minValue": 0, "maxValue": 2},
            {"name": "subsample", "minValue": 0, "maxValue": 1},
            {"name": "gamma", "minValue": 0, "maxValue": 99},
        ],
    )
    errors = check_ranges(ranges(cfg), XGB_TABLE, algorithm="xgboost")
    assert errors == [
        "spec.hyperParameterTuningJobConfig.parameterRanges.continuousParameterRanges[0]: "
        "eta range [0, 2] is outside what xgboost accepts [0, 1]",
        "spec.hyperParameterTuningJobConfig.parameterRanges.continuousParameterRanges[1]: "
        "subsample range [0, 1] is outside what xgboost accepts (0, 1]",
    ]
    assert check_ranges(ranges(cfg)) == []
    wrong_kind = config(continuous=[{"name": "max_depth", "minValue": 1, "maxValue": 5}])
    [error] = check_ranges(ranges(wrong_kind), XGB_TABLE, algorithm="xgboost")
    assert "continuousParameterRanges[0]: max_depth is an integer" in error


def test_check_ranges_scales_and_empty_values() -> None:
    cfg = config(continuous=[{"name": "eta", "minValue": 0.1, "maxValue": 0.5}])
    bad = [
        ContinuousParameterRange.model_construct(
            name="a", min_value=0.0, max_value=1.0, scaling_type="Logarithmic"
        ),
        ContinuousParameterRange.model_construct(
            name="b", min_value=0.5, max_value=1.0, scaling_type="ReverseLogarithmic"
        ),
        ContinuousParameterRange.model_construct(
            name="c", min_value=2.0, max_value=1.0, scaling_type="Linear"
        ),
    ]
    cfg.parameter_ranges.continuous_parameter_ranges = bad
    where = "spec.hyperParameterTuningJobConfig.parameterRanges.continuousParameterRanges"
    errors = check_ranges(ranges(cfg))
    assert errors[0].startswith(
        f"{where}[0]: a range [0, 1]: Logarithmic scaling needs minValue > 0"
    )
    assert errors[1].startswith(f"{where}[1]: b range [0.5, 1]: ReverseLogarithmic")
    assert errors[2] == f"{where}[2]: c minValue 2 is above maxValue"
    assert len(errors) == 3
    cats = config(categorical=[{"name": "booster", "values": ["gbtree"]}])
    assert cats.parameter_ranges.categorical_parameter_ranges is not None
    cats.parameter_ranges.categorical_parameter_ranges[0].values = []
    assert check_ranges(ranges(cats)) == [
        "spec.hyperParameterTuningJobConfig.parameterRanges.categoricalParameterRanges[0]: "
        "booster has no values"
    ]


def test_a_warm_starts_parent_outside_the_ranges_teaches_nothing() -> None:
    (dim,) = [d for d in dimensions(ranges(NUMERIC)) if d.kind == "continuous"][:1]
    inside, outside = repr((dim.low + dim.high) / 2), repr(dim.high * 10)
    assert dim.encode(outside) is not None  # a trial of this search: clipped
    assert dim.encode(outside, strict=True) is None
    assert dim.encode(inside, strict=True) == dim.encode(inside)


def test_several_definitions_round_trip_through_the_space() -> None:
    booster = config(categorical=[{"name": "booster", "values": ["gbtree", "dart"]}])
    space = Space.of({"a": ranges(NUMERIC), "b": ranges(booster)})
    assert space.multi
    [first, *_] = suggest(NUMERIC, [], 6, seed=1, space=space)
    definition = first[DEFINITION]
    encoded = space.encode(first)
    assert encoded is not None and encoded[0] == definition
    assert space.decode(*encoded) == first
    assert space.encode({**first, DEFINITION: "c"}) is None  # not one of this search's
    assert space.grid() == [
        {"booster": "gbtree", DEFINITION: "b"},
        {"booster": "dart", DEFINITION: "b"},
    ]  # "a" has no categorical ranges: no combination
