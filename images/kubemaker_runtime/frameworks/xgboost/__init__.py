"""The XGBoost framework: runs a user's XGBoost script as SageMaker's XGBoost container does.

SageMaker's ``sagemaker.xgboost.XGBoost(entry_point=...)`` estimator runs the script in
the same image as the built-in algorithm; so does kubemaker: ``framework: xgboost`` jobs
run ``python -m kubemaker_runtime.frameworks.xgboost train`` in local mode, and the XGBoost
image (entrypoint ``python -m kubemaker_runtime.algorithms.xgboost``) switches to script
mode by SageMaker's rule (:mod:`.mode`). Nothing here imports xgboost at module level.
"""
