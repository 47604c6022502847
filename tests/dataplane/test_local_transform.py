"""``kubemaker local transform``: the trained bank model's own server and the transformer,
over real files and the loopback S3 server, compared with the booster's own predictions.

The model is trained once per module with ``kubemaker local train``; each test writes a
BatchTransform manifest (the example's, moved to its tmp paths) and runs the command as
a user does.
"""

from __future__ import annotations

import gzip
import signal
import subprocess
import sys
import time
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

TRANSFORM_TIMEOUT = 300.0


@dataclass(frozen=True)
class Trained:
    workdir: Path
    data: Path

    @property
    def rows(self) -> list[str]:
        return (self.data / "test" / "test.csv").read_text().splitlines()

    def predict(self, rows: list[str], *, label: bool = True) -> np.ndarray:
        """What the trained booster itself predicts for the rows."""
        booster = xgb.Booster()
        model = self.workdir / "xgboost-bank" / "host-0" / "model" / "xgboost-model"
        booster.load_model(bytearray(model.read_bytes()))
        values = [r.split(",")[1:] if label else r.split(",") for r in rows]
        features = np.array([[float(v) for v in row] for row in values], dtype=np.float32)
        return np.asarray(booster.inplace_predict(features))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("transform")
    data = prepare_bank(root / "data")
    manifest = bank_manifest(data, (root / "output").as_uri())
    done = local_train(write_manifest(root / "trainingjob.yaml", manifest), root / "work")
    assert done.returncode == 0, output(done)
    return Trained(root / "work", data)


def manifest(input_uri: str, output_uri: str, **spec: Any) -> dict[str, Any]:
    """The example's batchtransform.yaml reading ``input_uri``, writing ``output_uri``."""
    body: dict[str, Any] = yaml.safe_load((EXAMPLE / "batchtransform.yaml").read_text())
    body["spec"]["transformInput"]["uri"] = input_uri
    body["spec"]["transformOutput"]["s3OutputPath"] = output_uri
    for key, value in spec.items():
        if value is None:
            body["spec"].pop(key, None)
        else:
            body["spec"][key] = value
    return body


def transform(path: Path, trained: Trained, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return kubemaker(
        "local", "transform", "-f", str(path), "--workdir", str(trained.workdir),
        timeout=TRANSFORM_TIMEOUT, **kwargs,
    )  # fmt: skip


def scores(lines: list[str]) -> np.ndarray:
    return np.array([float(line.split(",")[-1]) for line in lines], dtype=np.float64)


def test_the_example_joins_each_prediction_to_its_label(trained: Trained, tmp_path: Path) -> None:
    out = tmp_path / "out"
    path = write_manifest(
        tmp_path / "bt.yaml", manifest((trained.data / "test").as_uri() + "/", out.as_uri() + "/")
    )
    done = transform(path, trained)
    assert done.returncode == 0, output(done)
    rows = trained.rows
    lines = (out / "test.csv.out").read_text().splitlines()
    assert len(lines) == len(rows)  # one output line per input line, in order
    assert [line.split(",")[0] for line in lines] == [row.split(",")[0] for row in rows]
    assert all(len(line.split(",")) == 2 for line in lines)  # $[0,-1]: label, score
    np.testing.assert_allclose(scores(lines), trained.predict(rows), rtol=1e-6)
    assert "Completed: 1 of 1 objects" in done.stdout
    record = (trained.workdir / "xgboost-bank-test" / "batchtransform.json").read_text()
    assert '"transformJobStatus": "Completed"' in record


def test_gzip_objects_in_s3_each_get_their_out(
    trained: Trained, tmp_path: Path, s3_endpoint: str, s3_client: Any, s3_bucket: str
) -> None:
    rows = [",".join(r.split(",")[1:]) for r in trained.rows]  # features only
    halves = {
        "part-1.csv.gz": rows[: len(rows) // 2],
        "nested/part-2.csv.gz": rows[len(rows) // 2 :],
    }
    for key, part in halves.items():
        body = gzip.compress(("\n".join(part) + "\n").encode())
        s3_client.put_object(Bucket=s3_bucket, Key=f"in/{key}", Body=body)
    spec = {
        "transformInput": {
            "uri": f"s3://{s3_bucket}/in/",
            "contentType": "text/csv",
            "splitType": "Line",
            "compressionType": "Gzip",
        },
        "dataProcessing": None,
        "maxPayloadInMB": 1,
        "maxConcurrentTransforms": 2,
        "storage": {"s3EndpointUrl": s3_endpoint},
    }
    path = write_manifest(
        tmp_path / "bt.yaml", manifest("s3://unused/", f"s3://{s3_bucket}/out/", **spec)
    )
    done = transform(path, trained)
    assert done.returncode == 0, output(done)
    for key, part in halves.items():
        answer = s3_client.get_object(Bucket=s3_bucket, Key=f"out/{key}.out")["Body"].read()
        lines = answer.decode().splitlines()
        assert len(lines) == len(part)
        np.testing.assert_allclose(scores(lines), trained.predict(part, label=False), rtol=1e-6)


def test_a_record_the_model_refuses_fails_naming_the_object_and_its_position(
    trained: Trained, tmp_path: Path
) -> None:
    rows = trained.rows[:8]
    rows[4] = "0,not-a-number," + ",".join(rows[4].split(",")[2:])
    source = tmp_path / "in"
    source.mkdir()
    (source / "rows.csv").write_text("\n".join(rows) + "\n")
    path = write_manifest(
        tmp_path / "bt.yaml",
        manifest(
            source.as_uri() + "/", (tmp_path / "out").as_uri() + "/", batchStrategy="SingleRecord"
        ),
    )
    done = transform(path, trained)
    assert done.returncode == 1, output(done)
    assert (
        f"{(source / 'rows.csv').as_uri()}, record 5: the model server refused it (4" in done.stderr
    )
    assert not (tmp_path / "out" / "rows.csv.out").exists()  # no partial output


def test_an_interrupted_run_resumes_without_a_line_lost_or_repeated(
    trained: Trained, tmp_path: Path
) -> None:
    source = tmp_path / "in"
    source.mkdir()
    rows = trained.rows
    big = (rows * (2000 // len(rows) + 1))[:2000]
    names = [f"part-{i}.csv" for i in range(3)]
    for name in names:
        (source / name).write_text("\n".join(big) + "\n")
    out = tmp_path / "out"
    path = write_manifest(
        tmp_path / "bt.yaml",
        manifest(source.as_uri() + "/", out.as_uri() + "/", batchStrategy="SingleRecord"),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "kubemaker", "local", "transform", "-f", str(path),
         "--workdir", str(trained.workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + TRANSFORM_TIMEOUT
    while not (out / f"{names[0]}.out").exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "the first object was never written"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    first, _ = process.communicate(timeout=60)
    assert process.returncode == 130, first
    assert "Stopped" in first
    assert not (out / "part-2.csv.out").exists()
    done = transform(path, trained)
    assert done.returncode == 0, output(done)
    assert "already done" in done.stdout
    expected = trained.predict(big)
    for name in names:
        lines = (out / f"{name}.out").read_text().splitlines()
        assert [line.split(",")[0] for line in lines] == [r.split(",")[0] for r in big]
        np.testing.assert_allclose(scores(lines), expected, rtol=1e-6)
