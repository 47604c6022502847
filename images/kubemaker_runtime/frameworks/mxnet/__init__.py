"""The MXNet framework: runs a user's Gluon script as SageMaker's MXNet container does.

Nothing here imports mxnet at module level: the runner decides what to import only once
it knows which interface the user's script speaks.
"""
