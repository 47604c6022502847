"""Built-in algorithms (SageMaker-compatible), one package each."""
