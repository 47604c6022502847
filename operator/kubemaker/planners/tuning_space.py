"""A TuningJob's search space: SageMaker's parameter ranges, their scales and strings.

Optuna samples each numeric range in a *transformed* space where the scale is uniform;
:meth:`Dimension.decode` maps a sample back, clips it to [minValue, maxValue] and writes
the string a child TrainingJob gets (integers as ``"5"``, floats with ``repr``'s full
precision); :meth:`Dimension.encode` reads a child's string back into that space, so a
search rebuilt from the children sees exactly what a live one would.

Scales (SageMaker's "Define hyperparameter ranges"):

- ``Linear``: uniform over [min, max].
- ``Logarithmic``: log-uniform; min > 0.
- ``ReverseLogarithmic``: continuous ranges within [0, 1): x = 1 - y, y log-uniform over
  (1 - max, 1 - min], so values close to 1 are dense.
- ``Auto``: SageMaker says only that it "chooses the best scale". Its guidance is Linear
  for a range within one order of magnitude and Logarithmic for one spanning several, so
  ours (not SageMaker's) is: Logarithmic for a continuous range with min > 0 and
  max / min >= ``AUTO_LOG_RATIO`` (two orders of magnitude), Linear otherwise and for
  every integer range.

Integers on a log scale are sampled as floats over [min - 0.5, max + 0.5] in the
transformed space and rounded, so each integer gets the share its log-width gives it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from kubemaker.api.tuning import ParameterRanges, ScalingType

Kind = Literal["integer", "continuous", "categorical"]
Scale = Literal["Linear", "Logarithmic", "ReverseLogarithmic"]
AUTO_LOG_RATIO = 100.0
Value = int | float | str


def resolve_scale(scaling_type: ScalingType, low: float, high: float, *, integer: bool) -> Scale:
    """The scale a range is searched on (``Auto`` resolved as the module docstring says)."""
    if scaling_type == "Auto":
        if not integer and low > 0 and high / low >= AUTO_LOG_RATIO:
            return "Logarithmic"
        return "Linear"
    if scaling_type == "Logarithmic" and low <= 0:
        raise ValueError("Logarithmic scaling needs minValue > 0")
    if scaling_type == "ReverseLogarithmic" and (integer or low < 0 or high >= 1):
        raise ValueError("ReverseLogarithmic scaling needs a continuous range within [0, 1)")
    return scaling_type


def to_internal(value: float, scale: Scale) -> float:
    """A hyperparameter value in the space where ``scale`` is uniform."""
    if scale == "Logarithmic":
        return math.log(value)
    if scale == "ReverseLogarithmic":
        return math.log1p(-value)  # log(1 - x): decreasing in x
    return value


def from_internal(internal: float, scale: Scale) -> float:
    """Inverse of :func:`to_internal`."""
    if scale == "Logarithmic":
        return math.exp(internal)
    if scale == "ReverseLogarithmic":
        return -math.expm1(internal)  # 1 - exp(u)
    return internal


def internal_bounds(low: float, high: float, scale: Scale) -> tuple[float, float]:
    """[low, high] in the transformed space, in increasing order."""
    a, b = to_internal(low, scale), to_internal(high, scale)
    return (min(a, b), max(a, b))


@dataclass(frozen=True)
class Dimension:
    """One tuned hyperparameter: its range and how Optuna sees it."""

    name: str
    kind: Kind
    low: float = 0.0
    high: float = 0.0
    scale: Scale = "Linear"
    values: tuple[str, ...] = ()

    def _float_bounds(self) -> tuple[float, float]:
        if self.kind == "integer":
            return internal_bounds(self.low - 0.5, self.high + 0.5, self.scale)
        return internal_bounds(self.low, self.high, self.scale)

    def distribution(self) -> BaseDistribution:
        if self.kind == "categorical":
            return CategoricalDistribution(self.values)
        if self.kind == "integer" and self.scale == "Linear":
            return IntDistribution(int(self.low), int(self.high))
        low, high = self._float_bounds()
        return FloatDistribution(low, high)

    def encode(self, text: str, *, strict: bool = False) -> Value | None:
        """A child's string in Optuna's space; None when it does not fit this range.

        A number outside [min, max] is clipped to it, or is None when ``strict`` (a warm
        start's parent trial from wider ranges teaches nothing about a point it never
        tried)."""
        if self.kind == "categorical":
            return text if text in self.values else None
        try:
            number = float(text)
        except ValueError:
            return None
        if not math.isfinite(number) or (strict and not self.low <= number <= self.high):
            return None
        number = min(max(number, self.low), self.high)
        if self.kind == "integer" and self.scale == "Linear":
            return round(number)
        low, high = self._float_bounds()
        return min(max(to_internal(number, self.scale), low), high)

    def decode(self, internal: Value) -> str:
        """Optuna's sample as the string the child gets, within [low, high]."""
        if self.kind == "categorical":
            return str(internal)
        value = min(max(from_internal(float(internal), self.scale), self.low), self.high)
        if self.kind == "integer":
            return str(int(min(max(round(value), self.low), self.high)))
        return repr(float(value))


def dimensions(ranges: ParameterRanges) -> list[Dimension]:
    """The search space of a TuningJob's parameterRanges, in the spec's order."""
    dims: list[Dimension] = []
    for r in ranges.integer_parameter_ranges or ():
        scale = resolve_scale(r.scaling_type, r.min_value, r.max_value, integer=True)
        dims.append(Dimension(r.name, "integer", r.min_value, r.max_value, scale))
    for c in ranges.continuous_parameter_ranges or ():
        scale = resolve_scale(c.scaling_type, c.min_value, c.max_value, integer=False)
        dims.append(Dimension(c.name, "continuous", c.min_value, c.max_value, scale))
    for g in ranges.categorical_parameter_ranges or ():
        dims.append(Dimension(g.name, "categorical", values=tuple(g.values)))
    return dims
