"""How a built-in algorithm's run fails: the user's fault, or the algorithm's.

SageMaker's built-in algorithms prefix the failure reason with ``ClientError:`` for a
user error (bad hyperparameter, unreadable data) and ``AlgorithmError:`` for anything
else; tools and people already read failure reasons that way, so ours do too.
"""

from __future__ import annotations


class UserError(Exception):
    """The job's spec or data is wrong; retrying the same job fails the same way."""

    prefix = "ClientError"
    exit_code = 1


class AlgorithmError(Exception):
    """The algorithm failed on valid input (a bug, or the platform under it)."""

    prefix = "AlgorithmError"
    exit_code = 2


def failure_reason(error: BaseException) -> str:
    """The failure file's text for an error that ended a run."""
    if isinstance(error, UserError | AlgorithmError):
        return f"{error.prefix}: {error}"
    return f"{AlgorithmError.prefix}: {type(error).__name__}: {error}"
