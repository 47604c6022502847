"""The kubemaker object that owns a child: its ownerReference and the child's metadata.

Every child carries a controller ownerReference, so deleting the object deletes its
children (garbage collection) without a finalizer, and a watch of the children names
the object to reconcile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubemaker.api.common import API_VERSION

JSON = dict[str, Any]


@dataclass(frozen=True)
class Owner:
    name: str
    namespace: str
    uid: str
    kind: str

    def reference(self) -> JSON:
        return {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
        }

    def metadata(self, name: str, labels: Mapping[str, str], **extra: Any) -> JSON:
        """A child's metadata: its name in the owner's namespace, labels, the reference."""
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": dict(labels),
            "ownerReferences": [self.reference()],
            **extra,
        }
