"""``TrainingInput`` (and v1's ``s3_input``): one channel of a training job."""

from __future__ import annotations

from typing import Any

from kubemaker.sdk import _args

JSON = dict[str, Any]


class TrainingInput:
    """A channel's data: ``s3_data`` is an ``s3://`` (or ``file://``, ``pvc://``) URI."""

    def __init__(
        self,
        s3_data: str,
        distribution: str | None = None,
        compression: str | None = None,
        content_type: str | None = None,
        record_wrapping: str | None = None,
        s3_data_type: str = "S3Prefix",
        instance_groups: list[str] | None = None,
        input_mode: str | None = None,
        attribute_names: list[str] | None = None,
        target_attribute_name: str | None = None,
        shuffle_config: Any = None,
    ) -> None:
        unsupported = {
            "record_wrapping": record_wrapping,
            "instance_groups": instance_groups,
            "attribute_names": attribute_names,
            "target_attribute_name": target_attribute_name,
            "shuffle_config": shuffle_config,
        }
        for name, value in unsupported.items():
            if value is not None:
                raise _args.UnsupportedArgument(
                    f"TrainingInput: {name} is not supported by kubemaker (channels are "
                    "plain S3 prefixes or objects)"
                )
        if s3_data_type != "S3Prefix":
            raise _args.UnsupportedArgument(
                f"TrainingInput: s3_data_type {s3_data_type!r} is not supported: kubemaker "
                "reads every object under an S3Prefix (give the prefix)"
            )
        self.s3_data = s3_data
        self.distribution = distribution
        self.compression = compression
        self.content_type = content_type
        self.s3_data_type = s3_data_type
        self.input_mode = input_mode

    def channel(self, name: str) -> JSON:
        """The TrainingJob's ``inputDataConfig`` entry for this input."""
        channel: JSON = {"channelName": name}
        if self.distribution:
            channel["dataSource"] = {
                "s3DataSource": {
                    "s3Uri": self.s3_data,
                    "s3DataType": self.s3_data_type,
                    "s3DataDistributionType": self.distribution,
                }
            }
        else:
            channel["uri"] = self.s3_data
        if self.content_type:
            channel["contentType"] = self.content_type
        if self.compression:
            channel["compressionType"] = self.compression
        if self.input_mode:
            channel["inputMode"] = self.input_mode
        return channel


def s3_input(s3_data: str, distribution: str | None = None, **kwargs: Any) -> TrainingInput:
    """v1's name for :class:`TrainingInput`."""
    _args.warn_renamed(
        f"s3_input has been renamed TrainingInput in sagemaker>=2 (kubemaker accepts both). "
        f"See {_args.V2_GUIDE} for details."
    )
    return TrainingInput(s3_data, distribution, **kwargs)


def channels(inputs: Any) -> list[JSON]:
    """``fit``'s ``inputs`` as channels: a URI (the ``training`` channel, as SageMaker),
    a TrainingInput, or a dict of channel name to either; None for no channels."""
    if inputs is None:
        return []
    if isinstance(inputs, str | TrainingInput):
        inputs = {"training": inputs}
    if not isinstance(inputs, dict):
        raise TypeError(
            "inputs must be a URI, a TrainingInput or a dict of channel name to either, "
            f"not {type(inputs).__name__}"
        )
    result = []
    for name, value in inputs.items():
        if isinstance(value, str):
            value = TrainingInput(value)
        if not isinstance(value, TrainingInput):
            raise TypeError(
                f"inputs[{name!r}] must be a URI or a TrainingInput, not {type(value).__name__}"
            )
        result.append(value.channel(str(name)))
    return result
