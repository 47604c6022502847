"""Processes and servers in the data-plane tests: free ports, waiting, stopping.

A plain module (not a test module): the tests import it by name, because pytest puts
this directory on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], T],
    timeout: float = 30.0,
    what: str = "",
    process: subprocess.Popen[Any] | None = None,
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that; fail the
    test at the deadline, or as soon as ``process`` (the server being waited on) exits.

    An OSError from the condition counts as "not yet": a server that is not listening
    yet refuses connections (urllib's and requests' errors are OSErrors). The last one
    is in the failure message.
    """
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while True:
        if process is not None and process.poll() is not None:
            pytest.fail(f"the process exited ({process.returncode}) while waiting for {what}")
        try:
            value = condition()
        except OSError as error:
            last_error = error
        else:
            if value:
                return value
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            pytest.fail(f"timed out after {timeout} s waiting for {what or condition}{detail}")
        time.sleep(0.05)


def stop(
    process: subprocess.Popen[Any],
    timeout: float = 20.0,
    sig: int = signal.SIGTERM,
    *,
    group: bool = False,
) -> int:
    """Send ``sig`` (to the process group with ``group``) and wait; SIGKILL after the
    timeout. Returns the exit code."""
    with contextlib.suppress(ProcessLookupError):
        if group:  # even when the leader is gone: its children may not be
            os.killpg(process.pid, sig)
        elif process.poll() is None:
            process.send_signal(sig)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
        return process.wait()
