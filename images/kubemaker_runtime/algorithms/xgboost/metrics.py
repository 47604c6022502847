"""The evaluation log and the metrics it exposes, as SageMaker's XGBoost prints them.

Each round prints one line, tab-separated, on the first host only::

    [3]<TAB>train-auc:0.91234<TAB>validation-auc:0.89120

That is what SageMaker's container writes too. CloudWatch shows a tab as ``#011``, so
the metric definitions users copy from SageMaker (and SageMaker's own, below) look for
``#011validation-auc:(\\S+)``. A log reader matches both renderings by also trying
each regex on :func:`cloudwatch_rendering` of the line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import xgboost as xgb

logger = logging.getLogger(__name__)


def cloudwatch_rendering(line: str) -> str:
    """A log line as CloudWatch shows it (syslog escapes a tab as ``#011``)."""
    return line.replace("\t", "#011")


def metric_name(data_name: str, metric: str) -> str:
    """SageMaker's name for a metric of one channel: ``validation:auc``."""
    return f"{data_name}:{metric}"


def format_round(epoch: int, scores: list[tuple[str, str, float]]) -> str:
    return f"[{epoch}]" + "".join(
        f"\t{data}-{metric}:{score:.5f}" for data, metric, score in scores
    )


class EvaluationLog(xgb.callback.TrainingCallback):
    """Print each round's metrics in SageMaker's format (stdout, flushed, rank 0 only)."""

    def __init__(self, printing: bool, first_round: int = 0) -> None:
        super().__init__()
        self.printing = printing
        self.first_round = first_round
        self.last: dict[str, float] = {}

    def after_iteration(self, model: xgb.Booster, epoch: int, evals_log: Any) -> bool:
        scores = []
        for data_name, metrics in evals_log.items():
            for metric, history in metrics.items():
                value = history[-1]
                score = float(value[0] if isinstance(value, tuple) else value)
                scores.append((data_name, metric, score))
                self.last[metric_name(data_name, metric)] = score
        if self.printing and scores:
            print(format_round(self.first_round + epoch, scores), file=sys.stdout, flush=True)
        return False


def parse_eval_line(line: str) -> dict[str, float]:
    """Metrics from one of XGBoost's eval strings (``Booster.eval_set``'s result)."""
    values: dict[str, float] = {}
    for field in line.split("\t")[1:]:
        name, _, value = field.rpartition(":")
        data_name, _, metric = name.partition("-")
        try:
            values[metric_name(data_name, metric)] = float(value)
        except ValueError:
            logger.warning("unparsable evaluation field %r", field)
    return values
