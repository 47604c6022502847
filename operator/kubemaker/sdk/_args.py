"""SageMaker's keyword arguments: v1 names renamed in v2, and those kubemaker cannot honour.

SageMaker's SDK v2 renamed many v1 arguments and warns when the old name is used; we do
the same, so notebooks written for either version run. An argument SageMaker knows but
kubemaker cannot honour is an error naming it and what to use instead, never dropped:
a notebook that asks for network isolation must not silently run without it.
"""

from __future__ import annotations

import difflib
import os
import sys
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

V2_GUIDE = "https://sagemaker.readthedocs.io/en/stable/v2.html"

#: v1 name -> v2 name, for every class that takes them (SageMaker's renamed_kwargs).
RENAMED: dict[str, str] = {
    "train_instance_count": "instance_count",
    "train_instance_type": "instance_type",
    "train_volume_size": "volume_size",
    "train_volume_kms_key": "volume_kms_key",
    "train_max_run": "max_run",
    "train_max_wait": "max_wait",
    "train_use_spot_instances": "use_spot_instances",
    "image_name": "image_uri",
    "distributions": "distribution",
}

# SageMaker arguments kubemaker has no counterpart for, and what to do instead.
UNSUPPORTED: dict[str, str] = {
    "subnets": "pods run in the cluster's network; restrict it with a NetworkPolicy",
    "security_group_ids": "pods run in the cluster's network; restrict it with a NetworkPolicy",
    "encrypt_inter_container_traffic": "use a service mesh or the CNI's encryption",
    "enable_network_isolation": "apply a NetworkPolicy to the job's pods",
    "volume_kms_key": "encrypt the nodes' disks or the StorageClass",
    "output_kms_key": "set encryption on the bucket (server-side encryption)",
    "kms_key": "set encryption on the bucket (server-side encryption)",
    "rules": "SageMaker Debugger has no counterpart; log metrics with metric_definitions",
    "debugger_hook_config": "SageMaker Debugger has no counterpart",
    "profiler_config": "SageMaker Profiler has no counterpart",
    "disable_profiler": "SageMaker Profiler has no counterpart",
    "tensorboard_output_config": "write TensorBoard logs to the model or output directory",
    "git_config": "clone the repository and pass its directory as source_dir",
    "instance_groups": "heterogeneous clusters are not supported: use one instance_type",
    "keep_alive_period_in_seconds": "warm pools are not supported",
    "training_repository_access_mode": "private registries: imagePullSecrets in podOverrides",
    "training_repository_credentials_provider_arn": "use imagePullSecrets in podOverrides",
    "accelerator_type": "Elastic Inference is gone from SageMaker too: use a GPU instance type",
    "use_compiled_model": "SageMaker Neo has no counterpart",
    "serverless_inference_config": "use an autoscaled Endpoint with min_capacity 0",
    "async_inference_config": "asynchronous inference is not supported",
    "data_capture_config": "set dataCaptureConfig on the Endpoint (kubectl edit mep NAME)",
    "explainer_config": "SageMaker Clarify has no counterpart",
    "model_data_download_timeout": "the model download waits as long as it takes",
    "vpc_config_override": "pods run in the cluster's network; restrict it with a NetworkPolicy",
    "experiment_config": "SageMaker Experiments has no counterpart",
    "batch_data_capture_config": "batch data capture is not supported",
    "enable_sagemaker_metrics": "kubemaker always reads metric_definitions from the log",
    "sagemaker_client": "kubemaker talks to the Kubernetes API, not SageMaker's",
    "sagemaker_runtime_client": "kubemaker talks to the Kubernetes API, not SageMaker's",
    "sagemaker_featurestore_runtime_client": "SageMaker Feature Store has no counterpart",
    "update_endpoint": "call predictor.update_endpoint(...) on the existing endpoint",
}


_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def caller_level() -> int:
    """The ``stacklevel`` of the first frame outside this package: a warning points at
    the notebook's line, however deep in the SDK it was raised."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level


def warn_renamed(message: str) -> None:
    warnings.warn(message, FutureWarning, stacklevel=caller_level())


class UnsupportedArgument(ValueError):
    """A SageMaker argument kubemaker does not honour; the message says what to do."""


def rename(kwargs: dict[str, Any], owner: str) -> dict[str, Any]:
    """``kwargs`` with v1 names turned into v2's, warning as SageMaker's v2 does."""
    renamed = dict(kwargs)
    for old, new in RENAMED.items():
        if old not in renamed:
            continue
        if new in renamed:
            raise TypeError(f"{owner}: {old} and {new} are the same argument: give one")
        warn_renamed(
            f"{owner}: the {old} argument has been renamed {new} in sagemaker>=2 "
            f"(kubemaker accepts both). See {V2_GUIDE} for details."
        )
        renamed[new] = renamed.pop(old)
    return renamed


def _is_default(value: Any) -> bool:
    return value is None or value is False or value == [] or value == {}


def check_supported(kwargs: Mapping[str, Any], owner: str) -> None:
    """Refuse SageMaker arguments kubemaker cannot honour, unless given their default."""
    for name, value in kwargs.items():
        if name in UNSUPPORTED and not _is_default(value):
            raise UnsupportedArgument(
                f"{owner}: {name} is not supported by kubemaker: {UNSUPPORTED[name]}"
            )


def reject_unknown(kwargs: Mapping[str, Any], known: Iterable[str], owner: str) -> None:
    """A TypeError naming arguments that are neither known here nor SageMaker's
    unsupported ones given their default, with the closest known name."""
    known = set(known)
    unknown = [name for name in kwargs if name not in known and name not in UNSUPPORTED]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
    raise TypeError(f"{owner} got unexpected keyword argument(s): {', '.join(hints)}")


def pop_v1(kwargs: dict[str, Any], owner: str, **current: Any) -> dict[str, Any]:
    """``current`` (arguments by their v2 names) completed with their v1 names taken
    out of ``kwargs``; the rest of ``kwargs`` is left for the base class."""
    result = dict(current)
    for old, new in RENAMED.items():
        if new in result and old in kwargs:
            value = rename({old: kwargs.pop(old)}, owner)[new]
            if result[new] is not None:
                raise TypeError(f"{owner}: {new} is given twice (once by its v1 name)")
            result[new] = value
    return result


def merge(owner: str, params: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``params`` (a signature's own arguments) completed with the v1 names found in
    ``extra`` (its ``**kwargs``); anything else in ``extra`` must be one of SageMaker's
    unsupported arguments at its default, or it is refused."""
    merged = dict(params)
    for name, value in rename(extra, owner).items():
        if name in merged:
            if merged[name] is not None:
                raise TypeError(f"{owner}: {name} is given twice (once by its v1 name)")
            merged[name] = value
            continue
        check_supported({name: value}, owner)
        reject_unknown({name: value}, params, owner)
    return merged
