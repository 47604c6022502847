"""The model server under test, as a real process: the models it loads, and starting it.

The models are loaded by the server's worker processes by import path
(``serving_support:SumModel``): ``run_server`` puts this directory on their PYTHONPATH.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests
from process_support import free_port, stop, wait_for

from kubemaker_runtime.serving import InvalidInput, Model

HERE = Path(__file__).resolve().parent
START_TIMEOUT = 60.0
GATE_ENV = "TEST_SERVING_GATE"


class SumModel(Model):
    """Sums each CSV/JSON row; 'sleep' sleeps, 'boom' raises an unexpected error."""

    request_types = ("text/csv", "application/json")
    response_types = ("application/json", "text/csv")
    name = "sum"

    def load(self) -> None:
        gate = os.environ.get(GATE_ENV)
        if gate:
            # Loading finishes only when the test opens the gate: a slow model load.
            deadline = time.monotonic() + START_TIMEOUT
            while not Path(gate).exists():
                if time.monotonic() > deadline:
                    raise TimeoutError("the gate never opened")
                time.sleep(0.02)
        self.ready = True

    def decode(self, body: bytes, content_type: str) -> Any:
        text = body.decode()
        if text.strip() == "boom":
            return "boom"
        if text.strip() == "die":
            os._exit(3)  # a worker crashing in native code
        if text.startswith("sleep"):
            return float(text.split()[1])
        try:
            if content_type == "application/json":
                return np.asarray(json.loads(text)["instances"], dtype=float)
            return np.asarray([[float(v) for v in line.split(",")] for line in text.splitlines()])
        except (ValueError, KeyError) as error:
            raise InvalidInput(f"cannot read the rows: {error}") from None

    def predict(self, inputs: Any) -> Any:
        if isinstance(inputs, str):
            raise RuntimeError("secret internal detail")
        if isinstance(inputs, float):
            time.sleep(inputs)
            return np.zeros(1)
        return np.atleast_2d(inputs).sum(axis=1)

    def encode(self, outputs: Any, accept: str) -> bytes:
        if accept == "text/csv":
            return ",".join(str(v) for v in outputs.tolist()).encode()
        return json.dumps({"sums": outputs.tolist(), "pid": os.getpid()}).encode()


class BrokenModel(Model):
    def load(self) -> None:
        raise FileNotFoundError("no model file in the model directory")

    def predict(self, inputs: Any) -> Any:
        raise AssertionError("never called")


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, body: bytes | str, **headers: str) -> requests.Response:
        return requests.post(self.url + path, data=body, headers=headers, timeout=30)


@contextlib.contextmanager
def run_server(
    command: list[str], tmp_path: Path, env: dict[str, str] | None = None, *, ready: bool = True
) -> Iterator[Server]:
    """Start a server process on a free loopback port; stop its process group after."""
    port = free_port()
    full_env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "KUBEMAKER_BIND_ADDRESS": "127.0.0.1",
        "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
        **(env or {}),
    }
    log = tmp_path / f"server-{port}.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command, env=full_env, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        wait_for(
            lambda: server.get("/v2/health/live").status_code == 200,
            START_TIMEOUT, "the server to listen", process,
        )  # fmt: skip
        if ready:
            wait_for(
                lambda: server.get("/ping").status_code == 200,
                START_TIMEOUT, "the model to load", process,
            )  # fmt: skip
        yield server
    except BaseException:
        print(log.read_text(errors="replace"), file=sys.stderr)
        raise
    finally:
        stop(process, group=True)


def serving_command(model: str, model_dir: Path) -> list[str]:
    return [sys.executable, "-m", "kubemaker_runtime.serving", "--model", model,
            "--model-dir", str(model_dir)]  # fmt: skip
