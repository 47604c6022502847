"""The XGBoost algorithm's hyperparameters, declared once.

Names, types, ranges and defaults are SageMaker's XGBoost algorithm's ("XGBoost
hyperparameters" in SageMaker's documentation), so a SageMaker job's
``HyperParameters`` run unchanged. The same declarations serve two purposes:

- :func:`validate` turns hyperparameters.json's strings into typed values, or raises
  :class:`HyperparameterError` naming the hyperparameter (a user error);
- :func:`tunable_ranges` tells a TuningJob what can be searched, and over which range.

Defaults are documentation: like SageMaker's container, only what the user set is
passed to XGBoost, whose own defaults are the documented ones. Hyperparameters that
XGBoost 3 dropped (``predictor``, ``dsplit``, ...) are accepted and ignored with a log
line, and ``tree_method=gpu_hist`` becomes ``tree_method=hist`` with ``device=cuda``.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["integer", "continuous", "categorical", "list", "string"]
Scale = Literal["Auto", "Linear", "Logarithmic", "ReverseLogarithmic"]


class HyperparameterError(ValueError):
    """A hyperparameter is missing, unknown or out of range: the user's error."""


@dataclass(frozen=True)
class Interval:
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (
            self.high is not None and (value >= self.high if self.high_open else value > self.high)
        )

    def __str__(self) -> str:
        low = "-inf" if self.low is None else _number(self.low)
        high = "+inf" if self.high is None else _number(self.high)
        return f"{'(' if self.low_open or self.low is None else '['}{low}, {high}" + (
            ")" if self.high_open or self.high is None else "]"
        )


@dataclass(frozen=True)
class Hyperparameter:
    name: str
    kind: Kind
    #: Interval for numbers, the allowed values for categorical and list kinds.
    allowed: Interval | tuple[str, ...] | None = None
    default: Any = None
    required: bool = False
    #: The range a TuningJob searches by default (None: not tunable).
    tuning: Interval | None = None
    scale: Scale = "Auto"
    #: Passed to XGBoost's parameters (False: consumed by the algorithm itself).
    xgboost: bool = True
    #: Accepted for compatibility; XGBoost 3 no longer has it.
    obsolete: bool = False
    description: str = ""
    #: Names of the hyperparameters ``check`` reads.
    depends_on: tuple[str, ...] = ()
    check: Callable[[Any, Mapping[str, Any]], None] | None = field(default=None, compare=False)

    def parse(self, raw: str) -> Any:
        """Typed value of a hyperparameters.json string, or HyperparameterError."""
        text = raw.strip()
        if len(text) >= 2 and text[0] == text[-1] == '"':
            # Some SDK paths JSON-encode every value, strings included.
            text = text[1:-1]
        if self.kind == "integer":
            value: Any = _parse_int(self.name, text)
            self._check_interval(value)
        elif self.kind == "continuous":
            value = _parse_float(self.name, text)
            self._check_interval(value)
        elif self.kind == "categorical":
            value = text
            if isinstance(self.allowed, tuple) and value not in self.allowed:
                raise HyperparameterError(
                    f"Hyperparameter {self.name}: {raw!r} is not one of {', '.join(self.allowed)}"
                )
        elif self.kind == "list":
            value = [item.strip() for item in text.strip("[]").split(",") if item.strip()]
            value = [item.strip("'\"") for item in value]
            if not value:
                raise HyperparameterError(f"Hyperparameter {self.name}: empty list")
            if isinstance(self.allowed, tuple):
                bad = [item for item in value if item not in self.allowed]
                if bad:
                    raise HyperparameterError(
                        f"Hyperparameter {self.name}: {', '.join(bad)} not allowed; "
                        f"choose from {', '.join(self.allowed)}"
                    )
        else:
            value = text
        return value

    def _check_interval(self, value: float) -> None:
        if isinstance(self.allowed, Interval) and not self.allowed.contains(value):
            raise HyperparameterError(
                f"Hyperparameter {self.name}: {_number(value)} is out of range {self.allowed}"
            )


# --- dependency checks --------------------------------------------------------------------

MULTICLASS_OBJECTIVES = ("multi:softmax", "multi:softprob")


def _check_objective(value: Any, values: Mapping[str, Any]) -> None:
    if value in MULTICLASS_OBJECTIVES and "num_class" not in values:
        raise HyperparameterError(f"Hyperparameter num_class: required when objective is {value}")


def _check_num_class(value: Any, values: Mapping[str, Any]) -> None:
    objective = values.get("objective", "reg:squarederror")
    if objective not in MULTICLASS_OBJECTIVES:
        raise HyperparameterError(
            f"Hyperparameter num_class: only for multi:softmax / multi:softprob, "
            f"not objective {objective}"
        )


def _check_eval_metric(value: Any, values: Mapping[str, Any]) -> None:
    objective = str(values.get("objective", "reg:squarederror"))
    for metric in value:
        name, at, threshold = metric.partition("@")
        if name not in EVAL_METRICS:
            raise HyperparameterError(
                f"Hyperparameter eval_metric: {metric!r} is not one of {', '.join(EVAL_METRICS)}"
            )
        if at:
            if name not in ("error", "ndcg", "map", "pre"):
                raise HyperparameterError(
                    f"Hyperparameter eval_metric: {metric!r}: only error, ndcg, map and pre "
                    "take @threshold"
                )
            try:
                float(threshold.rstrip("-"))
            except ValueError:
                raise HyperparameterError(
                    f"Hyperparameter eval_metric: threshold in {metric!r} is not a number"
                ) from None
        if name in ("auc", "aucpr") and not objective.startswith(("binary:", "rank:", "multi:")):
            raise HyperparameterError(
                f"Hyperparameter eval_metric: {name} needs a classification or ranking "
                f"objective, not {objective}"
            )
        if name.startswith("aft-") and objective != "survival:aft":
            raise HyperparameterError(
                f"Hyperparameter eval_metric: {name} needs objective survival:aft"
            )


def _check_tree_method_constraint(value: Any, values: Mapping[str, Any], name: str) -> None:
    method = values.get("tree_method", "auto")
    if method not in ("exact", "hist", "approx", "auto", "gpu_hist"):
        raise HyperparameterError(f"Hyperparameter {name}: not supported with tree_method {method}")


def _check_monotone(value: Any, values: Mapping[str, Any]) -> None:
    _check_tree_method_constraint(value, values, "monotone_constraints")
    text = str(value).strip()
    items = [i.strip() for i in text.strip("()[]").split(",") if i.strip()]
    if not items or any(i not in ("-1", "0", "1") for i in items):
        raise HyperparameterError(
            "Hyperparameter monotone_constraints: expected a tuple of -1, 0 and 1, e.g. (1,0,-1)"
        )


def _check_interaction(value: Any, values: Mapping[str, Any]) -> None:
    _check_tree_method_constraint(value, values, "interaction_constraints")
    try:
        groups = json.loads(str(value))
        valid = isinstance(groups, list) and all(
            isinstance(g, list) and all(isinstance(i, int) and i >= 0 for i in g) for g in groups
        )
    except ValueError:
        valid = False
    if not valid:
        raise HyperparameterError(
            "Hyperparameter interaction_constraints: expected nested lists of feature "
            "indices, e.g. [[0, 1], [2, 3, 4]]"
        )


# --- the declarations ---------------------------------------------------------------------

OBJECTIVES = (
    "binary:logistic", "binary:logitraw", "binary:hinge", "count:poisson",
    "multi:softmax", "multi:softprob", "rank:pairwise", "rank:ndcg", "rank:map",
    "reg:linear", "reg:squarederror", "reg:logistic", "reg:gamma", "reg:pseudohubererror",
    "reg:squaredlogerror", "reg:absoluteerror", "reg:quantileerror", "reg:tweedie",
    "survival:aft", "survival:cox",
)  # fmt: skip
# Metrics where larger is better: the direction a TuningJob optimises them in.
MAXIMIZE_METRICS = ("auc", "aucpr", "map", "ndcg", "pre", "accuracy", "f1", "mcc", "precision")
MINIMIZE_METRICS = (
    "rmse", "rmsle", "mae", "mape", "mphe", "logloss", "error", "merror", "mlogloss",
    "poisson-nloglik", "gamma-nloglik", "gamma-deviance", "tweedie-nloglik", "cox-nloglik",
    "aft-nloglik", "interval-regression-accuracy", "quantile", "mse", "r2",
)  # fmt: skip
EVAL_METRICS = MAXIMIZE_METRICS + MINIMIZE_METRICS
UPDATERS = (
    "grow_colmaker", "grow_histmaker", "grow_quantile_histmaker", "grow_gpu_hist",
    "grow_gpu_approx", "sync", "refresh", "prune", "shotgun", "coord_descent",
)  # fmt: skip
_UNIT = Interval(0, 1)
_UNIT_OPEN_LOW = Interval(0, 1, low_open=True)
_NON_NEGATIVE = Interval(0)

DECLARATIONS: tuple[Hyperparameter, ...] = (
    Hyperparameter("num_round", "integer", Interval(1), required=True, xgboost=False,
                   tuning=Interval(1, 4000), description="Boosting rounds."),
    Hyperparameter("num_class", "integer", Interval(2), depends_on=("objective",),
                   check=_check_num_class,
                   description="Classes; required for multi:softmax and multi:softprob."),
    Hyperparameter("objective", "categorical", OBJECTIVES, default="reg:squarederror",
                   depends_on=("num_class",), check=_check_objective),
    Hyperparameter("eta", "continuous", _UNIT, default=0.3, tuning=Interval(0.1, 0.5)),
    Hyperparameter("gamma", "continuous", _NON_NEGATIVE, default=0, tuning=Interval(0, 5)),
    Hyperparameter("max_depth", "integer", _NON_NEGATIVE, default=6, tuning=Interval(0, 10)),
    Hyperparameter("min_child_weight", "continuous", _NON_NEGATIVE, default=1,
                   tuning=Interval(0, 120)),
    Hyperparameter("max_delta_step", "continuous", _NON_NEGATIVE, default=0,
                   tuning=Interval(0, 10)),
    Hyperparameter("subsample", "continuous", _UNIT_OPEN_LOW, default=1,
                   tuning=Interval(0.5, 1)),
    Hyperparameter("colsample_bytree", "continuous", _UNIT_OPEN_LOW, default=1,
                   tuning=Interval(0.5, 1)),
    Hyperparameter("colsample_bylevel", "continuous", _UNIT_OPEN_LOW, default=1,
                   tuning=Interval(0.1, 1)),
    Hyperparameter("colsample_bynode", "continuous", _UNIT_OPEN_LOW, default=1,
                   tuning=Interval(0.1, 1)),
    Hyperparameter("lambda", "continuous", _NON_NEGATIVE, default=1, tuning=Interval(0, 1000)),
    Hyperparameter("alpha", "continuous", _NON_NEGATIVE, default=0, tuning=Interval(0, 1000)),
    Hyperparameter("scale_pos_weight", "continuous", Interval(0, low_open=True), default=1),
    Hyperparameter("base_score", "continuous", None, default=0.5),
    Hyperparameter("booster", "categorical", ("gbtree", "gblinear", "dart"), default="gbtree"),
    Hyperparameter("tree_method", "categorical", ("auto", "exact", "approx", "hist", "gpu_hist"),
                   default="auto"),
    Hyperparameter("device", "string", None, default="cpu",
                   description="cpu, cuda or cuda:<n>; cuda by default when a GPU is visible."),
    Hyperparameter("grow_policy", "categorical", ("depthwise", "lossguide"), default="depthwise"),
    Hyperparameter("max_leaves", "integer", _NON_NEGATIVE, default=0),
    Hyperparameter("max_bin", "integer", Interval(2), default=256),
    Hyperparameter("max_cat_to_onehot", "integer", Interval(1)),
    Hyperparameter("num_parallel_tree", "integer", Interval(1), default=1),
    Hyperparameter("sampling_method", "categorical", ("uniform", "gradient_based"),
                   default="uniform"),
    Hyperparameter("refresh_leaf", "integer", Interval(0, 1), default=1),
    Hyperparameter("process_type", "categorical", ("default", "update"), default="default"),
    Hyperparameter("updater", "list", UPDATERS),
    Hyperparameter("monotone_constraints", "string", depends_on=("tree_method",),
                   check=_check_monotone),
    Hyperparameter("interaction_constraints", "string", depends_on=("tree_method",),
                   check=_check_interaction),
    Hyperparameter("sample_type", "categorical", ("uniform", "weighted"), default="uniform"),
    Hyperparameter("normalize_type", "categorical", ("tree", "forest"), default="tree"),
    Hyperparameter("rate_drop", "continuous", _UNIT, default=0),
    Hyperparameter("one_drop", "integer", Interval(0, 1), default=0),
    Hyperparameter("skip_drop", "continuous", _UNIT, default=0),
    Hyperparameter("feature_selector", "categorical",
                   ("cyclic", "shuffle", "random", "greedy", "thrifty")),
    Hyperparameter("top_k", "integer", _NON_NEGATIVE),
    Hyperparameter("tweedie_variance_power", "continuous",
                   Interval(1, 2, low_open=True, high_open=True), default=1.5),
    Hyperparameter("huber_slope", "continuous", Interval(0, low_open=True)),
    Hyperparameter("quantile_alpha", "string"),
    Hyperparameter("aft_loss_distribution", "categorical", ("normal", "logistic", "extreme"),
                   default="normal"),
    Hyperparameter("aft_loss_distribution_scale", "continuous", _NON_NEGATIVE, default=1),
    Hyperparameter("eval_metric", "list", None, depends_on=("objective",),
                   check=_check_eval_metric,
                   description="Default from the objective: rmse, logloss, mlogloss, ..."),
    Hyperparameter("seed", "integer", Interval(-(2**31), 2**31 - 1), default=0),
    Hyperparameter("nthread", "integer", Interval(1),
                   description="Default: SM_NUM_CPUS, else the CPUs the container may use."),
    Hyperparameter("verbosity", "integer", Interval(0, 3), default=1),
    # XGBoost 1.0 removed it; SageMaker's notebooks (direct marketing) still pass it.
    Hyperparameter("silent", "integer", Interval(0, 1), xgboost=False,
                   description="SageMaker's older name: 1 means verbosity 0."),
    Hyperparameter("early_stopping_rounds", "integer", Interval(1), xgboost=False,
                   description="Stop when the validation metric has not improved for this "
                   "many rounds; the model keeps the best round."),
    Hyperparameter("csv_weights", "integer", Interval(0, 1), default=0, xgboost=False,
                   description="1: the CSV column after the label is the instance weight."),
    Hyperparameter("save_model_on_termination", "categorical", ("true", "false"),
                   default="false", xgboost=False,
                   description="On SIGTERM (a stopped job), save the model trained so far."),
    Hyperparameter("checkpoint_frequency", "integer", Interval(1), default=1, xgboost=False,
                   description="kubemaker: save a checkpoint every this many rounds."),
    Hyperparameter("_tuning_objective_metric", "string", xgboost=False,
                   description="Set by a TuningJob: the metric early stopping watches."),
    # Accepted for SageMaker compatibility; XGBoost 3 has no such parameter.
    *(
        Hyperparameter(name, "string", obsolete=True, xgboost=False)
        for name in (
            "predictor", "dsplit", "lambda_bias", "sketch_eps", "deterministic_histogram",
            "prob_buffer_row", "use_dask_gpu_training", "single_precision_histogram",
        )
    ),
)  # fmt: skip
ALIASES = {
    "learning_rate": "eta",
    "min_split_loss": "gamma",
    "reg_lambda": "lambda",
    "reg_alpha": "alpha",
    "num_boost_round": "num_round",
}
# SageMaker features kubemaker does not implement: a clear error beats a silent ignore.
UNSUPPORTED = {
    "_kfold": "k-fold cross-validation is not supported",
    "_num_cv_round": "k-fold cross-validation is not supported",
}
BY_NAME = {h.name: h for h in DECLARATIONS}


def validate(raw: Mapping[str, str]) -> dict[str, Any]:
    """Typed, checked hyperparameters from hyperparameters.json's strings.

    Keys starting with ``sagemaker_`` (the SDK's own) are skipped. Raises
    :class:`HyperparameterError` whose message starts with the hyperparameter's name.
    """
    values: dict[str, Any] = {}
    for given_name, raw_value in raw.items():
        if given_name.startswith("sagemaker_"):
            continue
        name = ALIASES.get(given_name, given_name)
        if name in UNSUPPORTED:
            raise HyperparameterError(f"Hyperparameter {given_name}: {UNSUPPORTED[name]}")
        declaration = BY_NAME.get(name)
        if declaration is None:
            close = difflib.get_close_matches(name, [*BY_NAME, *ALIASES], n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise HyperparameterError(f"Hyperparameter {given_name}: unknown{hint}")
        if name in values:
            raise HyperparameterError(f"Hyperparameter {given_name}: given twice (with an alias)")
        values[name] = declaration.parse(str(raw_value))
    missing = [h.name for h in DECLARATIONS if h.required and h.name not in values]
    if missing:
        raise HyperparameterError(f"Hyperparameter {missing[0]}: required")
    for name, value in values.items():
        declaration = BY_NAME[name]
        if declaration.check is not None:
            declaration.check(value, values)
    return values


def xgboost_params(values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """XGBoost's ``params`` for ``xgb.train`` from validated values, and notes to log."""
    params: dict[str, Any] = {}
    notes: list[str] = []
    for name, value in values.items():
        declaration = BY_NAME[name]
        if declaration.obsolete:
            notes.append(f"hyperparameter {name} has no effect in XGBoost 3 and is ignored")
            continue
        if not declaration.xgboost:
            continue
        params[name] = value
    if values.get("silent") == 1:
        params.setdefault("verbosity", 0)
        notes.append("hyperparameter silent 1 is verbosity 0 in XGBoost 3")
    if params.get("tree_method") == "gpu_hist":
        params["tree_method"] = "hist"
        params.setdefault("device", "cuda")
        notes.append("tree_method gpu_hist is tree_method hist with device cuda in XGBoost 3")
    if params.get("objective") == "reg:linear":
        params["objective"] = "reg:squarederror"
        notes.append("objective reg:linear is reg:squarederror in XGBoost 3")
    if "updater" in params:
        params["updater"] = ",".join(params["updater"])
    if "monotone_constraints" in params:
        params["monotone_constraints"] = (
            "(" + str(params["monotone_constraints"]).strip("()[] ") + ")"
        )
    return params, notes


CHANNELS = ("train", "validation")


def metric_definitions() -> list[dict[str, str]]:
    """SageMaker's built-in metric definitions for XGBoost: name, regex, direction.

    Here, not in :mod:`.metrics`, because the operator reads them (a TuningJob's
    objective must be one of them) and must not import xgboost.
    """
    definitions = []
    for channel in CHANNELS:
        for metrics, direction in ((MAXIMIZE_METRICS, "Maximize"), (MINIMIZE_METRICS, "Minimize")):
            for metric in metrics:
                definitions.append(
                    {
                        "Name": f"{channel}:{metric}",
                        "Regex": rf".*\[[0-9]+\].*#011{channel}-{metric}:(\S+)",
                        "Direction": direction,
                    }
                )
    return definitions


def tunable_ranges() -> dict[str, dict[str, Any]]:
    """What a TuningJob may search: SageMaker's ParameterRanges shape, by name."""
    ranges: dict[str, dict[str, Any]] = {}
    for h in DECLARATIONS:
        if h.tuning is None:
            continue
        entry: dict[str, Any] = {
            "type": "Integer" if h.kind == "integer" else "Continuous",
            "minValue": h.tuning.low,
            "maxValue": h.tuning.high,
            "scalingType": h.scale,
        }
        if isinstance(h.allowed, Interval):
            entry["allowed"] = str(h.allowed)
        ranges[h.name] = entry
    return ranges


def _parse_int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        raise HyperparameterError(f"Hyperparameter {name}: {text!r} is not an integer") from None
    # A tuner or an SDK may send "10.0" for 10.
    if not number.is_integer():
        raise HyperparameterError(f"Hyperparameter {name}: {text!r} is not an integer")
    return int(number)


def _parse_float(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise HyperparameterError(f"Hyperparameter {name}: {text!r} is not a number") from None
    if math.isnan(value):
        raise HyperparameterError(f"Hyperparameter {name}: NaN is not allowed")
    return value


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)
