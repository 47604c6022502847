"""Local mode with a script-mode framework: MXNet in its own environment, two hosts.

``kubemaker local train`` runs the framework's ``train`` with the interpreter of the
MXNet environment (scripts/mxnet-env.sh); two hosts meet on loopback through the
addresses and the scheduler port local mode gives them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from localmode_support import local_train, output, read_record, status_metrics, write_manifest

pytestmark = pytest.mark.mxnet

# The original SageMaker train() interface with dist_sync: a parameter server per host.
DIST = Path(__file__).resolve().parents[1] / "scripts" / "mxnet_dist_sync.py"


def test_two_mxnet_hosts_train_with_dist_sync(mxnet_python: str, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    shutil.copy(DIST, code / "dist.py")
    manifest = {
        "apiVersion": "kubemaker.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "mxnet-dist"},
        "spec": {
            "algorithmSpecification": {
                "framework": "mxnet",
                "entryPoint": "dist.py",
                "sourceDir": "file://code",  # relative: resolved against the manifest
                "metricDefinitions": [{"name": "loss", "regex": r"epoch \d+ loss=(\S+)"}],
            },
            "hyperParameters": {"epochs": "20"},
            "outputDataConfig": {"s3OutputPath": "file://output"},
            "resourceConfig": {"instanceType": "ml.m5.large", "instanceCount": 2},
        },
    }
    path = write_manifest(tmp_path / "job.yaml", manifest)

    done = local_train(path, tmp_path / "work")

    assert done.returncode == 0, output(done)
    job_dir = tmp_path / "work" / "mxnet-dist"
    seen = [
        json.loads((job_dir / f"host-{i}" / "output" / "data" / "dist.json").read_text())
        for i in range(2)
    ]
    assert sorted(s["rank"] for s in seen) == [0, 1]
    assert all(s["num_workers"] == 2 and s["type"] == "dist_sync" for s in seen)
    # Different seeds and data, one model: the parameter servers kept the hosts in step.
    assert seen[0]["weight"] == seen[1]["weight"]
    assert "mxnet-dist-1 | epoch 19 loss=" in done.stdout
    record = read_record(tmp_path / "work", "mxnet-dist")
    assert record["status"]["trainingJobStatus"] == "Completed"
    assert set(status_metrics(record)) == {"loss"}
    model = tmp_path / "output" / "mxnet-dist" / "output" / "model.tar.gz"
    assert model.is_file()
    assert (tmp_path / "output" / "mxnet-dist" / "output" / "output.tar.gz").is_file()
