"""Security contexts of the pods the operator builds, for every kind.

By default every pod satisfies Pod Security "restricted", so it is admitted in a
namespace that enforces it: the pod runs as non-root with the runtime's default seccomp
profile, and no container may escalate privileges or keep a capability. The operator's
own containers (the agent) also get a read-only root filesystem. ``podOverrides``
replaces any of these, field by field, for an image that needs otherwise (one that
runs as root needs ``securityContext.runAsUser`` or ``runAsNonRoot: false``).
"""

from __future__ import annotations

from typing import Any

from kubemaker.api.common import PodOverrides

JSON = dict[str, Any]

RESTRICTED_POD: JSON = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER: JSON = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
# The operator's own containers: their images run as a numeric non-root user and write
# only to their volumes.
OWN_CONTAINER: JSON = {**RESTRICTED_CONTAINER, "readOnlyRootFilesystem": True}


def pod_security_context(overrides: PodOverrides | None) -> JSON:
    own = overrides.security_context if overrides is not None else None
    return {**RESTRICTED_POD, **(own.dump() if own is not None else {})}


def container_security_context(overrides: PodOverrides | None) -> JSON:
    """The image's container (algorithm, model server): restricted unless overridden."""
    own = overrides.container_security_context if overrides is not None else None
    return {**RESTRICTED_CONTAINER, **(own.dump() if own is not None else {})}
