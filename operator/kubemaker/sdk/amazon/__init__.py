"""SageMaker's ``sagemaker.amazon`` modules: the v1 names notebooks still import."""
