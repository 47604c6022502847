"""``sagemaker.mxnet``: the MXNet framework estimator and its predictor."""

from kubemaker.sdk.mxnet.estimator import MXNet, MXNetPredictor

__all__ = ["MXNet", "MXNetPredictor"]
