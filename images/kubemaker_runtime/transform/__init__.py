"""BatchTransform's data plane: objects split into records, records batched into requests
to the model server, filters and joins on the records (SageMaker's batch transform)."""
