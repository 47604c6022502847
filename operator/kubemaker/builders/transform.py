"""A BatchTransform's settings for its transformer and its model server. Pure.

Shared by the operator and ``kubemaker local transform``: the spec becomes the
:class:`~kubemaker_runtime.protocol.TransformConfig` each instance's transformer reads,
and the environment SageMaker gives a serving container in a batch transform
(``SAGEMAKER_BATCH``, the payload limit, the batch strategy, the concurrency), so an
unmodified SageMaker serving image answers as it would there.
"""

from __future__ import annotations

from kubemaker.api.transform import BatchTransformSpec
from kubemaker_runtime import contract
from kubemaker_runtime.protocol import StorageConfig, TransformConfig

#: How a SageMaker serving container spells the strategy in its environment.
_STRATEGY_ENV = {"MultiRecord": "MULTI_RECORD", "SingleRecord": "SINGLE_RECORD"}
BATCH_ENV = "SAGEMAKER_BATCH"


def transform_config(
    spec: BatchTransformSpec,
    *,
    job_name: str,
    storage: StorageConfig,
    server_url: str = f"http://127.0.0.1:{contract.DEFAULT_SERVING_PORT}",
) -> TransformConfig:
    """What every instance's transformer is told (its index comes from its pod)."""
    source = spec.transform_input
    processing = spec.data_processing
    client = spec.model_client_config
    return TransformConfig(
        job_name=job_name,
        input_uri=source.source_uri,
        output_uri=spec.transform_output.s3_output_path,
        content_type=source.content_type,
        accept=spec.transform_output.accept,
        compression=source.compression_type,
        split_type=source.split_type,
        assemble_with=spec.transform_output.assemble_with,
        batch_strategy=spec.batch_strategy,
        max_payload_in_mb=spec.max_payload_in_mb,
        max_concurrent_transforms=spec.max_concurrent_transforms,
        input_filter=processing.input_filter if processing else "$",
        output_filter=processing.output_filter if processing else "$",
        join_source=processing.join_source if processing else "None",
        invocations_timeout_in_seconds=(client.invocations_timeout_in_seconds if client else 600),
        invocations_max_retries=client.invocations_max_retries if client else 3,
        storage=storage,
        instance_count=spec.transform_resources.instance_count,
        server_url=server_url,
    )


def server_environment(spec: BatchTransformSpec) -> dict[str, str]:
    """The model server's environment in a batch transform, under the spec's own."""
    env = {BATCH_ENV: "true"}
    if spec.max_payload_in_mb is not None:
        env[contract.SERVING_MAX_PAYLOAD_IN_MB_ENV] = str(spec.max_payload_in_mb)
    if spec.batch_strategy is not None:
        env[contract.SERVING_BATCH_STRATEGY_ENV] = _STRATEGY_ENV[spec.batch_strategy]
    if spec.max_concurrent_transforms:
        env[contract.SERVING_MAX_CONCURRENT_TRANSFORMS_ENV] = str(spec.max_concurrent_transforms)
    return {**env, **(spec.environment or {})}
