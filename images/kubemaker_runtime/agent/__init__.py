"""The data-plane agent: the plumbing around an unmodified SageMaker training image.

The Python API (used in-process by local mode) is :class:`Agent`; the command line
(``kubemaker-agent``) is in :mod:`kubemaker_runtime.agent.cli`. Names are imported on
first use, so ``kubemaker-agent probe`` (run by the kubelet every few seconds) loads
nothing but the standard library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubemaker_runtime.agent.core import Agent, host_index_from_env
    from kubemaker_runtime.agent.errors import AgentError, PlatformError, UserError

__all__ = ["Agent", "AgentError", "PlatformError", "UserError", "host_index_from_env"]

_HOMES = {
    "Agent": "kubemaker_runtime.agent.core",
    "host_index_from_env": "kubemaker_runtime.agent.core",
    "AgentError": "kubemaker_runtime.agent.errors",
    "PlatformError": "kubemaker_runtime.agent.errors",
    "UserError": "kubemaker_runtime.agent.errors",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
