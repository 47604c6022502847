"""``sagemaker.local``: ``LocalSession`` runs everything on this machine."""

from kubemaker.sdk.session import LocalSession

__all__ = ["LocalSession"]
