"""Training metrics found in log lines by a job's ``metricDefinitions``, as SageMaker does.

Shared by the operator (which reads the algorithm's log through the API) and local mode
(which reads the process's output). Each definition's regex is searched in every line;
its first group is the value (the whole match without a group). The regexes users copy
from SageMaker were written against CloudWatch, which shows a tab as ``#011``: a line
that does not match as printed is tried again in that rendering, so
``.*#011validation-auc:(\\S+)`` matches XGBoost's tab-separated evaluation log.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from kubemaker.api import MetricDefinition
from kubemaker.builders.errors import SpecError

FIELD = "spec.algorithmSpecification.metricDefinitions"


def cloudwatch_rendering(line: str) -> str:
    """A log line as CloudWatch shows it (syslog escapes a tab as ``#011``)."""
    return line.replace("\t", "#011")


@dataclass(frozen=True)
class CompiledMetric:
    name: str
    pattern: re.Pattern[str]

    def find(self, line: str) -> float | None:
        match = self.pattern.search(line)
        if match is None and "\t" in line:
            match = self.pattern.search(cloudwatch_rendering(line))
        if match is None:
            return None
        text = match.group(1) if self.pattern.groups else match.group(0)
        try:
            value = float(text)
        except (TypeError, ValueError):
            return None
        return value if math.isfinite(value) else None


def compile_definitions(definitions: Sequence[MetricDefinition] | None) -> list[CompiledMetric]:
    """The definitions, compiled; a regex Python cannot compile is a user error naming it.

    The model already refuses such a regex when it parses a spec; this covers definitions
    built without validation.
    """
    compiled = []
    for index, definition in enumerate(definitions or ()):
        try:
            pattern = MetricDefinition.compile_regex(definition.regex)
        except ValueError as exc:
            raise SpecError(f"{FIELD}.{index}.regex", str(exc)) from None
        compiled.append(CompiledMetric(definition.name, pattern))
    return compiled


#: The most values of one metric kept in a series (the first ones: early stopping and
#: Hyperband judge trials by their early steps).
MAX_SERIES = 1000


class MetricParser:
    """The latest value of each metric seen so far in the lines fed to it, and each
    metric's series: ``(step, value)`` where step n is the metric's n-th value in the log
    (1, 2, ...), the "epoch" early stopping and Hyperband count in."""

    def __init__(self, definitions: Sequence[MetricDefinition] | None) -> None:
        self.metrics = compile_definitions(definitions)
        self.latest: dict[str, float] = {}
        self.series: dict[str, list[tuple[int, float]]] = {}
        self._counts: dict[str, int] = {}

    def clear(self) -> None:
        self.latest.clear()
        self.series.clear()
        self._counts.clear()

    def feed(self, line: str) -> dict[str, float]:
        """The metrics this line sets (also recorded in ``latest``)."""
        found = {}
        for metric in self.metrics:
            value = metric.find(line)
            if value is not None:
                found[metric.name] = value
        self.latest.update(found)
        for name, value in found.items():
            step = self._counts[name] = self._counts.get(name, 0) + 1
            series = self.series.setdefault(name, [])
            if len(series) < MAX_SERIES:
                series.append((step, value))
        return found

    def feed_lines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.feed(line)


def merge_final_metrics(
    from_logs: Mapping[str, float], reported: Sequence[Mapping[str, float]]
) -> dict[str, float]:
    """Final metrics: the log's last values, overridden by what the hosts reported.

    ``reported`` is each host's own final metrics (``/opt/ml/output/metrics.json``, via
    the agent's report), first host first; the first host's value of a metric wins.
    """
    merged = dict(from_logs)
    for values in reversed(reported):
        merged.update(values)
    return merged
