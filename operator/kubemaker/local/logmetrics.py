"""Moved to :mod:`kubemaker.metric_definitions`, shared with the operator.

Kept only so that older imports keep working; import from the new module.
"""

from kubemaker.metric_definitions import MetricParser

__all__ = ["MetricParser"]
