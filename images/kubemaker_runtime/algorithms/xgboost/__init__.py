"""The built-in XGBoost algorithm.

Run as ``python -m kubemaker_runtime.algorithms.xgboost train|serve``.
"""
