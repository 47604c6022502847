"""Shared fixtures for the data-plane tests: a real S3 server on loopback, the MXNet
environment.

The S3 server is moto in *server* mode, started once per session as its own process
on a free 127.0.0.1 port. The session's environment points boto3 at it (dummy
credentials, ``AWS_ENDPOINT_URL_S3``), so agents and algorithms started as
subprocesses talk to it through boto3's standard chain, as they would to MinIO.

Helpers that are not fixtures live in the ``*_support`` modules next to this file.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from process_support import free_port, stop, wait_for

from kubemaker_runtime import frameworks

SERVER_START_TIMEOUT = 30.0

# Everything boto3 needs to reach the loopback server and nothing else: no profile,
# no shared files, no instance metadata lookups.
_AWS_ENV_REMOVE = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.dataplane)


def _started(process: subprocess.Popen[bytes], url: str) -> bool:
    """The server answers HTTP (any status), or its process has exited."""
    if process.poll() is not None:
        return True
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True


@pytest.fixture(scope="session")
def aws_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The AWS_* variables (minus the endpoint) every boto3 client in the session uses."""
    home = tmp_path_factory.mktemp("aws")
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
    }


@pytest.fixture(scope="session")
def s3_endpoint(aws_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a moto S3 server (its own process) on a free loopback port."""
    log_path = tmp_path_factory.mktemp("moto") / "server.log"
    process: subprocess.Popen[bytes] | None = None
    url = ""
    with log_path.open("wb") as log:
        for _attempt in range(5):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_for(
                    functools.partial(_started, process, url + "/moto-api/"),
                    SERVER_START_TIMEOUT, "the moto server to answer",
                )  # fmt: skip
            except BaseException:
                stop(process, timeout=10)
                raise
            if process.poll() is None:
                break
            # Most likely the port was taken between free_port() and the bind: retry.
            process = None
        if process is None:
            pytest.fail(f"moto server did not start; log:\n{log_path.read_text()[-2000:]}")

    saved = {
        name: os.environ.get(name) for name in (*aws_env, "AWS_ENDPOINT_URL_S3", *_AWS_ENV_REMOVE)
    }
    for name in _AWS_ENV_REMOVE:
        os.environ.pop(name, None)
    os.environ.update(aws_env)
    os.environ["AWS_ENDPOINT_URL_S3"] = url
    try:
        yield url
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        stop(process, timeout=10)


@pytest.fixture(scope="session")
def s3_client(s3_endpoint: str) -> Any:
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def s3_bucket(s3_client: Any) -> Iterator[str]:
    """A fresh, empty bucket for one test (emptied and deleted afterwards)."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    yield name
    paginator = s3_client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=name):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3_client.delete_objects(Bucket=name, Delete={"Objects": keys})
    s3_client.delete_bucket(Bucket=name)


class _Unavailable(BaseHTTPRequestHandler):
    """Answers every request as an overloaded S3 would: 503 SlowDown."""

    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
    )

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(self.body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _reply

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def unavailable_s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A loopback S3 endpoint that fails every request with 503 (a platform fault).

    boto3's retries are cut to one attempt so the failure arrives fast.
    """
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# --- the MXNet environment ------------------------------------------------------------------


def _with_checkout(env: dict[str, str], python: str) -> dict[str, str]:
    env["KUBEMAKER_MXNET_PYTHON"] = python
    # This checkout's runtime, whatever checkout the environment was built from.
    repo = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo / "images"), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="session")
def mxnet_python() -> str:
    """The MXNet environment's interpreter, checked to import this checkout's runtime."""
    try:
        python = frameworks.get("mxnet").interpreter()
    except frameworks.FrameworkUnavailable as exc:
        pytest.fail(str(exc))
    check = subprocess.run(
        [python, "-c", "import mxnet, numpy, kubemaker_runtime.frameworks.mxnet.training"],
        env=_with_checkout(dict(os.environ), python),
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        pytest.fail(
            "the MXNet environment is broken; rebuild it with scripts/mxnet-env.sh --force\n"
            + check.stderr[-1500:]
        )
    return python


@pytest.fixture
def mxnet_env(mxnet_python: str) -> dict[str, str]:
    """The environment of processes in the MXNet environment (read per test: S3 settings)."""
    return _with_checkout(dict(os.environ), mxnet_python)
