"""``sagemaker.amazon.amazon_estimator``: SageMaker v1's ``get_image_uri``."""

from __future__ import annotations

import warnings

from kubemaker.sdk import image_uris
from kubemaker.sdk._args import V2_GUIDE

__all__ = ["get_image_uri"]


def get_image_uri(region_name: str | None, repo_name: str, repo_version: str | int = "1") -> str:
    """The image for ``repo_name``: :func:`kubemaker.sdk.image_uris.retrieve`, under its
    v1 name, with the warning SageMaker v2 gives for it."""
    warnings.warn(
        "get_image_uri has been renamed in sagemaker>=2 (kubemaker accepts both): use "
        f"image_uris.retrieve(framework, region, version). See {V2_GUIDE} for details.",
        FutureWarning,
        stacklevel=2,
    )
    return image_uris.retrieve(repo_name, region_name, str(repo_version))
