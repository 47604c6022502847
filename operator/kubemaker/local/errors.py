"""Why a local run could not start or did not succeed, and its exit code."""

from __future__ import annotations

EXIT_OK = 0
# The job ran and failed (the algorithm's error, or the agent's: missing data, upload).
EXIT_FAILED = 1
# Nothing ran: the manifest, the command line or this machine cannot run the job.
EXIT_USAGE = 2
# Stopped before it finished: maxRuntimeInSeconds reached.
EXIT_STOPPED = 3
# Interrupted with Ctrl-C (128 + SIGINT, the shell's convention).
EXIT_INTERRUPTED = 130


class LocalError(Exception):
    """A problem found before anything ran, with the message the user sees."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ManifestError(LocalError):
    """The manifest is unreadable or invalid; the message names the field."""


class UnsupportedError(LocalError):
    """The job is valid but this machine cannot run it locally (no Docker, pvc://, ...)."""


class RunError(LocalError):
    """What was started failed (a model server that died)."""

    exit_code = EXIT_FAILED
