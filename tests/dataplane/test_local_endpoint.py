"""``kubemaker local serve -f endpoint.yaml``: every variant and the router, over HTTP.

Two bank models (the example's TrainingJob with two sets of hyperparameters) are
trained once per module with ``kubemaker local train``; each test writes an Endpoint
manifest naming them by ``trainingJobRef``, starts ``kubemaker local serve -f`` as a
user does, reads what it prints, sends real requests through the router, and stops it
with a signal: every process must be gone, every port free again.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from localmode_support import (
    bank_manifest,
    kubemaker,
    local_train,
    output,
    prepare_bank,
    write_manifest,
)
from process_support import stop, wait_for
from prometheus_client.parser import text_string_to_metric_families

from kubemaker_runtime.routing import INVOKED_VARIANT_HEADER, TARGET_VARIANT_HEADER

START_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
SERVING_LINE = re.compile(r"^Serving Endpoint (\S+) with the router at (http://\S+)$")
VARIANT_LINE = re.compile(r"^  (\S+)\s+(http://127\.0\.0\.1:\d+)\s+(weight|shadow)")
# The model servers' own log line, printed before anything can fail.
SERVER_LOG = re.compile(r" on 127\.0\.0\.1:(\d+) with \d+ worker")


@dataclass(frozen=True)
class Trained:
    workdir: Path
    data: Path

    @property
    def rows(self) -> list[str]:
        """Test rows, label first."""
        return (self.data / "test" / "test.csv").read_text().splitlines()[:4]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("endpoint")
    data = prepare_bank(root / "data")
    for name, depth in (("bank-a", "5"), ("bank-b", "2")):
        manifest = bank_manifest(
            data, (root / "output").as_uri(), name=name, hyperParameters={"max_depth": depth}
        )
        done = local_train(write_manifest(root / f"{name}.yaml", manifest), root / "work")
        assert done.returncode == 0, output(done)
    return Trained(root / "work", data)


def variant(name: str, job: str, weight: float = 1.0, **extra: Any) -> dict[str, Any]:
    return {
        "variantName": name,
        "model": {"trainingJobRef": {"name": job}},
        "instanceType": "ml.m5.large",
        "initialInstanceCount": 1,
        "initialVariantWeight": weight,
        **extra,
    }


def endpoint_manifest(
    path: Path, variants: list[dict[str, Any]], **spec: Any
) -> Path:  # fmt: skip
    manifest = {
        "apiVersion": "kubemaker.io/v1alpha1",
        "kind": "Endpoint",
        "metadata": {"name": "bank-local"},
        "spec": {"productionVariants": variants, **spec},
    }
    return write_manifest(path, manifest)


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str  # the router's; "" when one model is served without it
    variants: dict[str, str]
    lines: list[str] = field(default_factory=list)

    def ports(self) -> list[int]:
        return [int(u.rsplit(":", 1)[1]) for u in [self.url, *self.variants.values()]]


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) != 0


@contextlib.contextmanager
def serving(trained: Trained, *args: str) -> Iterator[Served]:
    """``kubemaker local serve ARGS`` until it prints all it serves; stopped at the end."""
    process = subprocess.Popen(
        [
            sys.executable, "-m", "kubemaker", "local", "serve",
            "--port", "0", "--workdir", str(trained.workdir), *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "KUBEMAKER_ROUTER_CAPTURE_FLUSH_SECONDS": "0.2"},
    )  # fmt: skip
    lines: list[str] = []
    ready: queue.Queue[bool] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if lines[-1].startswith("  stop:"):
                ready.put(True)
        ready.put(False)

    threading.Thread(target=read, daemon=True).start()
    try:
        try:
            started = ready.get(timeout=START_TIMEOUT)
        except queue.Empty:
            pytest.fail("serve printed nothing in time:\n" + "\n".join(lines))
        if not started:
            pytest.fail(f"serve exited with {process.wait()}:\n" + "\n".join(lines))
        url = next((m.group(2) for line in lines if (m := SERVING_LINE.match(line))), "")
        variants = {m.group(1): m.group(2) for line in lines if (m := VARIANT_LINE.match(line))}
        yield Served(process, url, variants, lines)
    finally:
        stop(process, STOP_TIMEOUT, signal.SIGINT)


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def metric(url: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` on ``url``/metrics whose labels include ``labels``."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def invoke(url: str, rows: list[str], target: str | None = None) -> tuple[str, list[float]]:
    """POST the rows' features; the invoked variant and the scores."""
    body = "\n".join(r.split(",", 1)[1] for r in rows).encode()
    headers = {"Content-Type": "text/csv"}
    if target is not None:
        headers[TARGET_VARIANT_HEADER] = target
    request = urllib.request.Request(
        f"{url}/invocations", data=body, headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        text = response.read().decode()
        invoked = response.headers[INVOKED_VARIANT_HEADER]
    return invoked, [float(v) for v in text.replace("\n", ",").split(",") if v]


def test_two_variants_by_header_and_weight_with_capture(trained: Trained, tmp_path: Path) -> None:
    capture = tmp_path / "capture"
    manifest = endpoint_manifest(
        tmp_path / "endpoint.yaml",
        [variant("VariantA", "bank-a"), variant("VariantB", "bank-b")],
        dataCaptureConfig={
            "initialSamplingPercentage": 100,
            "destinationS3Uri": capture.as_uri(),
            "captureContentTypeHeader": {"csvContentTypes": ["text/csv"]},
        },
    )
    with serving(trained, "-f", str(manifest)) as served:
        assert set(served.variants) == {"VariantA", "VariantB"}
        rows = trained.rows
        for name in ("VariantA", "VariantB"):
            invoked, scores = invoke(served.url, rows, target=name)
            assert invoked == name
            assert len(scores) == len(rows) and all(0.0 < s < 1.0 for s in scores)
        # The two models differ: the same rows score differently.
        assert invoke(served.url, rows, "VariantA")[1] != invoke(served.url, rows, "VariantB")[1]

        # Without the header, weights 1:1: both variants get requests.
        seen: set[str] = set()

        def both() -> bool:
            seen.add(invoke(served.url, rows[:1])[0])
            return seen == {"VariantA", "VariantB"}

        wait_for(both, 60, "requests naming no variant to reach both", served.process)

        def records() -> list[dict[str, Any]]:
            files = sorted((capture / "bank-local" / "VariantA").rglob("*.jsonl"))
            return [r for f in files for r in jsonl(f.read_text())]

        record = wait_for(records, 30, "a capture record of VariantA", served.process)[0]
        assert record["captureData"]["endpointInput"]["data"]
        assert record["eventMetadata"]["eventId"]
        assert "--capture-dir" not in " ".join(served.lines)

        ports = served.ports()
        assert served.process.send_signal(signal.SIGTERM) is None
        assert served.process.wait(STOP_TIMEOUT) == 0
    assert all(port_free(p) for p in ports)
    assert not (trained.workdir / "endpoints" / "bank-local").exists()


def test_a_shadow_variant_gets_copies(trained: Trained, tmp_path: Path) -> None:
    manifest = endpoint_manifest(
        tmp_path / "endpoint.yaml",
        [variant("Production", "bank-a")],
        shadowProductionVariants=[variant("Shadow", "bank-b")],
    )
    with serving(trained, "-f", str(manifest)) as served:
        assert set(served.variants) == {"Production", "Shadow"}
        assert any("shadow, 100% copied" in line for line in served.lines)
        for _ in range(5):
            assert invoke(served.url, trained.rows[:1])[0] == "Production"

        def copied() -> bool:
            sent = metric(served.url, "kubemaker_router_shadow_requests_total", outcome="sent")
            return sent >= 5

        wait_for(copied, 30, "5 copies sent to the shadow", served.process)
        ports = served.ports()
        assert served.process.send_signal(signal.SIGINT) is None
        assert served.process.wait(STOP_TIMEOUT) == 0
    assert all(port_free(p) for p in ports)


def test_capture_dir_replaces_the_destination(trained: Trained, tmp_path: Path) -> None:
    manifest = endpoint_manifest(
        tmp_path / "endpoint.yaml",
        [variant("VariantA", "bank-a")],
        dataCaptureConfig={"destinationS3Uri": "s3://nowhere-bucket/capture"},
    )
    capture = tmp_path / "here"
    with serving(trained, "-f", str(manifest), "--capture-dir", str(capture)) as served:
        assert any(capture.as_uri() in line for line in served.lines)
        invoke(served.url, trained.rows[:1])
        wait_for(
            lambda: list(capture.rglob("*.jsonl")), 30, "a capture file", served.process
        )  # fmt: skip


def test_an_unknown_model_names_the_variant(trained: Trained, tmp_path: Path) -> None:
    manifest = endpoint_manifest(
        tmp_path / "endpoint.yaml",
        [variant("VariantA", "bank-a"), variant("VariantB", "no-such-job")],
    )
    done = kubemaker(
        "local", "serve", "-f", str(manifest), "--workdir", str(trained.workdir), "--port", "0",
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, output(done)
    assert "variant VariantB:" in done.stderr and "no-such-job" in done.stderr
    assert "starting" not in done.stderr  # nothing was started


def test_a_variant_that_never_loads_stops_everything(trained: Trained, tmp_path: Path) -> None:
    (tmp_path / "xgboost-model").write_text("not a model\n")
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "xgboost-model", arcname="xgboost-model")
    broken = variant("Broken", "unused")
    broken["model"] = {"modelDataUrl": archive.as_uri(), "algorithmName": "xgboost"}
    manifest = endpoint_manifest(
        tmp_path / "endpoint.yaml", [variant("VariantA", "bank-a"), broken]
    )
    done = kubemaker(
        "local", "serve", "-f", str(manifest), "--workdir", str(trained.workdir), "--port", "0",
        # Long enough for the healthy variant on a loaded machine (it loads in ~3 s):
        # the broken one never answers 200, whatever the wait.
        "--startup-timeout", "20", timeout=180,
    )  # fmt: skip
    assert done.returncode == 1, output(done)
    assert "variant Broken: the model server did not answer GET" in done.stderr
    # Both model servers had started: neither is left listening.
    ports = [int(p) for p in SERVER_LOG.findall(done.stderr)]
    assert len(ports) == 2, output(done)
    assert all(port_free(p) for p in ports)


def test_serve_model_without_variant_uses_the_router(trained: Trained, tmp_path: Path) -> None:
    """``--model endpoint.yaml`` with several variants serves them all; ``--variant``
    keeps serving one, without the router."""
    manifest = endpoint_manifest(
        tmp_path / "endpoint.yaml",
        [variant("VariantA", "bank-a"), variant("VariantB", "bank-b")],
    )
    done = kubemaker(
        "local", "serve", "--model", str(manifest), "--workdir", str(trained.workdir),
        "--port", "0", "--image", "some/image", timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, output(done)
    assert "--image: only for a bare model.tar.gz" in done.stderr
    for option in ("-f", "--model"):
        with serving(trained, option, str(manifest), "--variant", "VariantB") as served:
            assert served.url == ""
            assert any(
                line.startswith("Serving TrainingJob bank-b with the built-in")
                for line in served.lines
            )
            assert stop(served.process, STOP_TIMEOUT, signal.SIGINT) == 0
    with serving(trained, "--model", str(manifest)) as served:
        assert set(served.variants) == {"VariantA", "VariantB"}


def test_the_routing_table_is_the_operators(tmp_path: Path) -> None:
    """What the router reads: weights, the shadow's mirror percentage, capture."""
    from kubemaker.api import Endpoint
    from kubemaker.local.endpoint import local_routing_table

    manifest = endpoint_manifest(
        tmp_path / "endpoint.yaml",
        [variant("A", "bank-a", weight=0.5)],
        shadowProductionVariants=[variant("S", "bank-b", weight=0.1)],
        dataCaptureConfig={
            "initialSamplingPercentage": 20,
            "destinationS3Uri": "s3://bucket/capture",
            "captureOptions": [{"captureMode": "Input"}],
        },
    )
    import yaml

    endpoint = Endpoint.model_validate(yaml.safe_load(manifest.read_text()))
    table = local_routing_table(endpoint, {"A": 1001, "S": 1002})
    assert [(v.name, v.weight, v.fleets[0].url) for v in table.variants] == [
        ("A", 0.5, "http://127.0.0.1:1001")
    ]
    assert table.shadow is not None and table.shadow.variant.name == "S"
    assert table.shadow.mirror_percentage == pytest.approx(20.0)
    assert table.capture is not None
    assert (table.capture.destination, table.capture.sampling_percentage) == (
        "s3://bucket/capture",
        20,
    )
    assert table.capture.capture_input and not table.capture.capture_output
    moved = local_routing_table(endpoint, {"A": 1001, "S": 1002}, tmp_path / "cap")
    assert moved.capture is not None
    assert moved.capture.destination == (tmp_path / "cap").resolve().as_uri()
    assert moved.version and moved.version != table.version
    assert json.loads(moved.to_json())["endpoint"] == "bank-local"
