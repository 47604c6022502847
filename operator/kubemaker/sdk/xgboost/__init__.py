"""``sagemaker.xgboost``: XGBoost script mode and its predictor."""

from kubemaker.sdk.xgboost.estimator import XGBoost, XGBoostPredictor

__all__ = ["XGBoost", "XGBoostPredictor"]
