"""Hyperparameter ranges, as ``sagemaker.parameter`` defines them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

SCALING_TYPES = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")


class ParameterRange:
    """A range a tuning job searches; ``as_range(name)`` is its TuningJob entry."""

    field: ClassVar[str] = ""

    def __init__(self, min_value: float, max_value: float, scaling_type: str = "Auto") -> None:
        if scaling_type not in SCALING_TYPES:
            raise ValueError(f"scaling_type must be one of {', '.join(SCALING_TYPES)}")
        if min_value > max_value:
            raise ValueError(f"min_value {min_value} is above max_value {max_value}")
        self.min_value = min_value
        self.max_value = max_value
        self.scaling_type = scaling_type

    def as_range(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "minValue": self.min_value,
            "maxValue": self.max_value,
            "scalingType": self.scaling_type,
        }


class ContinuousParameter(ParameterRange):
    field = "continuousParameterRanges"

    def __init__(self, min_value: float, max_value: float, scaling_type: str = "Auto") -> None:
        super().__init__(float(min_value), float(max_value), scaling_type)


class IntegerParameter(ParameterRange):
    field = "integerParameterRanges"

    def __init__(self, min_value: int, max_value: int, scaling_type: str = "Auto") -> None:
        if int(min_value) != min_value or int(max_value) != max_value:
            raise ValueError("IntegerParameter bounds must be whole numbers")
        super().__init__(int(min_value), int(max_value), scaling_type)


class CategoricalParameter(ParameterRange):
    field = "categoricalParameterRanges"

    def __init__(self, values: Sequence[Any] | Any) -> None:
        if isinstance(values, str) or not isinstance(values, Sequence):
            values = [values]
        if not values:
            raise ValueError("CategoricalParameter needs at least one value")
        self.values = [v if isinstance(v, str) else str(v) for v in values]

    def as_range(self, name: str) -> dict[str, Any]:
        return {"name": name, "values": list(self.values)}
