"""The AgentReport: built from what the agent did, written to the termination message."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from kubemaker_runtime.contract import Paths
from kubemaker_runtime.protocol import FAILURE_REASON_LIMIT, AgentReport

logger = logging.getLogger(__name__)

DEFAULT_TERMINATION_LOG = "/dev/termination-log"


def read_metrics(paths: Paths) -> dict[str, float]:
    """Numbers from /opt/ml/output/metrics.json; anything else there is ignored."""
    try:
        raw = json.loads(paths.metrics_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("ignoring %s: %s", paths.metrics_file, exc)
        return {}
    if not isinstance(raw, dict):
        logger.warning("ignoring %s: not a JSON object", paths.metrics_file)
        return {}
    metrics: dict[str, float] = {}
    for name, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            logger.warning("ignoring metric %r: %r is not a number", name, value)
            continue
        if math.isfinite(value):
            metrics[str(name)] = float(value)
    return metrics


def clip(text: str | None, limit: int = FAILURE_REASON_LIMIT) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 3] + "..."


def write_report(report: AgentReport, path: str | Path) -> str:
    """Write the report as its termination message; the text written."""
    message = report.to_message()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(message, encoding="utf-8")
    return message
