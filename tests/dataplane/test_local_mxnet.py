"""Local mode with a script-mode framework: MXNet in its own environment, two hosts.

``kubemaker local train`` runs the framework's ``train`` with the interpreter of the
MXNet environment (scripts/mxnet-env.sh); two hosts meet on loopback through the
addresses and the scheduler port local mode gives them.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from localmode_support import local_train, output, read_record, status_metrics, write_manifest

pytestmark = pytest.mark.mxnet

# The original SageMaker train() interface with dist_sync: a parameter server per host.
DIST = """
    import json, os
    import mxnet as mx
    import numpy as np
    from mxnet import autograd, gluon

    def train(hyperparameters, hosts, current_host, model_dir, **kwargs):
        kv = mx.kv.create("dist_sync")
        rank = hosts.index(current_host)
        mx.random.seed(rank)  # different initial weights: dist_sync must align them
        net = gluon.nn.HybridSequential()
        net.add(gluon.nn.Dense(1, in_units=3))
        net.initialize(mx.init.Normal(1.0))
        trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1}, kvstore=kv)
        rng = np.random.RandomState(rank)  # and each host its own data
        x = mx.nd.array(rng.rand(32, 3))
        y = mx.nd.array(x.asnumpy() @ np.array([1.0, -2.0, 3.0]))
        for epoch in range(int(hyperparameters.get("epochs", 10))):
            with autograd.record():
                loss = gluon.loss.L2Loss()(net(x), y)
            loss.backward()
            trainer.step(32)
            print(f"epoch {epoch} loss={loss.mean().asscalar():.6f}", flush=True)
        report = {"rank": kv.rank, "num_workers": kv.num_workers, "type": kv.type,
                  "weight": net[0].weight.data().asnumpy().tolist()}
        with open(os.path.join(kwargs["output_data_dir"], "dist.json"), "w") as f:
            json.dump(report, f)
        return None  # nothing to export: the test reads dist.json
"""


def test_two_mxnet_hosts_train_with_dist_sync(mxnet_python: str, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "dist.py").write_text(textwrap.dedent(DIST))
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
