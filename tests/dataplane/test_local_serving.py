"""``kubemaker local serve``: the trained bank model behind the real model server, over HTTP.

The model is trained once per module with ``kubemaker local train``; each test starts
the server as a user does, reads the URL it prints, sends real requests, and stops it
with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import contextlib
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xgboost as xgb
import yaml
from localmode_support import (
    EXAMPLE,
    bank_manifest,
    kubemaker,
    local_train,
    output,
    prepare_bank,
    write_manifest,
)
from process_support import stop

START_TIMEOUT = 120.0
STOP_TIMEOUT = 40.0
SERVING_LINE = re.compile(r"^Serving (.+) with (.+) at (http://\S+)$")


@dataclass(frozen=True)
class Trained:
    workdir: Path
    data: Path
    archive: Path

    @property
    def test_rows(self) -> list[str]:
        return (self.data / "test" / "test.csv").read_text().splitlines()[:8]

    def expected(self, rows: list[str]) -> np.ndarray:
        """What the trained booster itself predicts for the rows (label first)."""
        booster = xgb.Booster()
        model = self.workdir / "xgboost-bank" / "host-0" / "model" / "xgboost-model"
        booster.load_model(bytearray(model.read_bytes()))
        features = np.array([[float(v) for v in r.split(",")[1:]] for r in rows], dtype=np.float32)
        return np.asarray(booster.inplace_predict(features))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("served")
    data = prepare_bank(root / "data")
    manifest = bank_manifest(data, (root / "output").as_uri())
    done = local_train(write_manifest(root / "trainingjob.yaml", manifest), root / "work")
    assert done.returncode == 0, output(done)
    return Trained(
        root / "work", data, root / "output" / "xgboost-bank" / "output" / "model.tar.gz"
    )


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str
    label: str
    lines: list[str]

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(STOP_TIMEOUT)


@contextlib.contextmanager
def serving(*args: str) -> Iterator[Server]:
    """``kubemaker local serve ARGS`` until it prints its URL; stopped (Ctrl-C) at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kubemaker", "local", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    found: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if SERVING_LINE.match(lines[-1]):
                found.put(lines[-1])
        found.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        try:
            line = found.get(timeout=START_TIMEOUT)
        except queue.Empty:
            pytest.fail("the server printed no URL in time:\n" + "\n".join(lines))
        if line is None:
            pytest.fail(f"serve exited with {process.wait()}:\n" + "\n".join(lines))
        match = SERVING_LINE.match(line)
        assert match is not None
        yield Server(process, match.group(3), match.group(1), lines)
    finally:
        stop(process, STOP_TIMEOUT, signal.SIGINT)


def invoke(url: str, rows: list[str], **headers: str) -> bytes:
    body = "\n".join(r.split(",", 1)[1] for r in rows).encode()
    request = urllib.request.Request(
        f"{url}/invocations",
        data=body,
        headers={"Content-Type": "text/csv", **headers},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return bytes(response.read())


def scores(body: bytes) -> np.ndarray:
    return np.array([float(v) for v in body.decode().replace("\n", ",").split(",") if v])


def port_open(url: str) -> bool:
    host, _, port = url.removeprefix("http://").partition(":")
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, int(port))) == 0


def test_serves_the_workdirs_latest_job(trained: Trained) -> None:
    with serving("--workdir", str(trained.workdir)) as server:
        assert server.label == "TrainingJob xgboost-bank"
        with urllib.request.urlopen(f"{server.url}/ping", timeout=10) as response:
            assert response.status == 200
        rows = trained.test_rows
        predicted = scores(invoke(server.url, rows))
        assert predicted.shape == (len(rows),)
        np.testing.assert_allclose(predicted, trained.expected(rows), rtol=1e-5)

        # The hint it prints is a working request made of a real row of the job's data.
        hint = next(line for line in server.lines if line.strip().startswith("try:"))
        command = hint.strip().removeprefix("try:").strip()
        if shutil.which("curl"):
            done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stderr
            assert 0.0 < float(done.stdout.strip()) < 1.0

        served_dir = next(
            m.group(1)
            for line in server.lines
            if (m := re.search(r"from (/\S+)/model on ", line)) is not None
        )
        assert Path(served_dir).is_dir()
        assert server.stop() == 0
    assert not port_open(server.url)
    assert not Path(served_dir).exists()


def test_serves_a_model_archive(trained: Trained) -> None:
    with serving("--model", str(trained.archive)) as server:
        assert "the built-in algorithm xgboost" in " ".join(server.lines)
        rows = trained.test_rows[:3]
        np.testing.assert_allclose(
            scores(invoke(server.url, rows)), trained.expected(rows), rtol=1e-5
        )
        assert server.stop() == 0


def test_serves_the_examples_endpoint_manifest(trained: Trained) -> None:
    endpoint = EXAMPLE / "endpoint.yaml"
    with serving("--model", str(endpoint), "--workdir", str(trained.workdir)) as server:
        assert server.label == "TrainingJob xgboost-bank"
        rows = trained.test_rows[:2]
        assert scores(invoke(server.url, rows)).shape == (2,)


def test_serves_an_endpoint_with_a_model_in_s3(
    trained: Trained, tmp_path: Path, s3_client: Any, s3_bucket: str
) -> None:
    s3_client.upload_file(str(trained.archive), s3_bucket, "models/bank/model.tar.gz")
    manifest = yaml.safe_load((EXAMPLE / "endpoint.yaml").read_text())
    manifest["spec"]["productionVariants"][0]["model"] = {
        "modelDataUrl": f"s3://{s3_bucket}/models/bank/model.tar.gz",
        "algorithmName": "xgboost",
    }
    path = write_manifest(tmp_path / "endpoint.yaml", manifest)
    with serving("--model", str(path), "--workdir", str(tmp_path)) as server:
        assert server.label == "Endpoint xgboost-bank variant AllTraffic"
        rows = trained.test_rows[:4]
        np.testing.assert_allclose(
            scores(invoke(server.url, rows)), trained.expected(rows), rtol=1e-5
        )


def test_a_busy_port_is_a_clear_error(trained: Trained) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        done = kubemaker(
            "local", "serve", "--workdir", str(trained.workdir), "--port", str(port), timeout=60
        )
    assert done.returncode == 2, output(done)
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert time.monotonic() - started < 30


def test_no_trained_job_is_a_clear_error(tmp_path: Path) -> None:
    done = kubemaker("local", "serve", "--workdir", str(tmp_path), timeout=60)
    assert done.returncode == 2, output(done)
    assert "no completed training job in" in done.stderr


def test_a_model_that_never_loads_fails_the_start(tmp_path: Path) -> None:
    import tarfile

    (tmp_path / "xgboost-model").write_text("not a model\n")
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "xgboost-model", arcname="xgboost-model")
    done = kubemaker(
        "local", "serve", "--model", str(archive), "--port", "0", "--startup-timeout", "5",
        timeout=120,
    )  # fmt: skip
    # The server runs but its /ping never says 200: the start fails at the deadline.
    assert done.returncode == 1, output(done)
    assert "did not answer GET" in done.stderr and "/ping with 200 in 5 s" in done.stderr
