"""``kubemaker-agent transform``, the main container of a BatchTransform pod, as the pod
runs it: a real process beside the XGBoost algorithm's own server, its settings from the
operator's builder, its report in the termination log and its exit code read by the
Job's pod failure policy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from serving_support import Server, run_server
from xgboost_support import assert_succeeded, make_classification, run_train, write_job

from kubemaker.api.transform import BatchTransformSpec
from kubemaker.builders.transform import transform_config
from kubemaker_runtime.protocol import TRANSFORM_USER_ERROR_EXIT, StorageConfig, TransformReport

TIMEOUT = 120.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("model")
    x, y = make_classification(400, 5)
    write_job(base, {"num_round": 10, "objective": "binary:logistic"}, {"train": (x, y)})
    assert_succeeded(run_train(base))
    command = [sys.executable, "-m", "kubemaker_runtime.algorithms.xgboost", "serve",
               "--base-dir", str(base)]  # fmt: skip
    with run_server(command, base, {"SAGEMAKER_BATCH": "true"}) as running:
        yield running


def rows(count: int, seed: int) -> str:
    x, _ = make_classification(count, seed)
    return "\n".join(",".join(repr(float(v)) for v in row) for row in x) + "\n"


def run_instance(
    tmp_path: Path, server: Server, source: Path, out: Path, *, index: int, count: int
) -> tuple[subprocess.CompletedProcess[str], TransformReport]:
    spec = BatchTransformSpec.model_validate(
        {
            "model": {"modelDataUrl": "s3://unused/model.tar.gz", "algorithmName": "xgboost"},
            "transformInput": {"uri": source.as_uri() + "/", "contentType": "text/csv",
                               "splitType": "Line"},
            "transformOutput": {"s3OutputPath": out.as_uri() + "/", "assembleWith": "Line"},
            "transformResources": {"instanceType": "ml.m5.large", "instanceCount": count},
            "batchStrategy": "MultiRecord",
        }
    )  # fmt: skip
    config = transform_config(spec, job_name="bt", storage=StorageConfig(), server_url=server.url)
    log = tmp_path / f"termination-{index}.log"
    done = subprocess.run(
        [sys.executable, "-m", "kubemaker_runtime.agent", "transform", "--termination-log",
         str(log)],
        env={**os.environ, "KUBEMAKER_TRANSFORM_CONFIG": config.model_dump_json(by_alias=True),
             "JOB_COMPLETION_INDEX": str(index)},
        capture_output=True, text=True, timeout=TIMEOUT,
    )  # fmt: skip
    return done, TransformReport.model_validate_json(log.read_text())


def test_each_instance_transforms_its_own_share_and_reports_it(
    server: Server, tmp_path: Path
) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for part, count in (("a.csv", 30), ("b.csv", 20), ("c.csv", 10)):
        (source / part).write_text(rows(count, len(part) + count))
    reports = []
    for index in (0, 1):
        done, report = run_instance(tmp_path, server, source, out, index=index, count=2)
        assert done.returncode == 0, done.stderr
        assert report.outcome == "Completed" and report.objects_found == 3
        reports.append(report)
    # Every object read by exactly one instance: by bytes, a.csv alone, b and c together.
    assert sorted(r.objects_total for r in reports) == [1, 2]
    assert sum(r.records for r in reports) == 60
    assert sorted(p.name for p in out.iterdir()) == ["a.csv.out", "b.csv.out", "c.csv.out"]
    for part, count in (("a.csv", 30), ("b.csv", 20), ("c.csv", 10)):
        scores = np.array([float(v) for v in (out / f"{part}.out").read_text().split()])
        assert len(scores) == count and ((scores >= 0) & (scores <= 1)).all()


def test_a_refused_record_exits_with_the_code_that_fails_the_job(
    server: Server, tmp_path: Path
) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    lines = rows(5, 3).splitlines()
    lines[2] = "yes," + lines[2].split(",", 1)[1]
    (source / "bad.csv").write_text("\n".join(lines) + "\n")
    done, report = run_instance(tmp_path, server, source, out, index=0, count=1)
    assert done.returncode == TRANSFORM_USER_ERROR_EXIT, done.stderr
    assert report.outcome == "Failed" and report.error_kind == "user"
    assert report.failure_reason is not None
    assert f"{(source / 'bad.csv').as_uri()}, records 1-5" in report.failure_reason
    assert not out.exists() or list(out.iterdir()) == []
    assert json.loads(report.to_message())["errorKind"] == "user"
