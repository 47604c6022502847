"""A SageMaker ``train()`` entry point with ``dist_sync``: a parameter server per host.

Shared by the tests that run MXNet on two hosts (local processes, and containers of the
MXNet image). Each host starts from its own seed and data; ``dist_sync`` must keep them
in step. Writes ``dist.json`` (rank, workers, the weights) to the output data dir.
"""

import json
import os

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
    report = {
        "rank": kv.rank,
        "num_workers": kv.num_workers,
        "type": kv.type,
        "weight": net[0].weight.data().asnumpy().tolist(),
    }
    with open(os.path.join(kwargs["output_data_dir"], "dist.json"), "w") as f:
        json.dump(report, f)
    # Also in the log: on a cluster each host's output data is its own pod's.
    print("dist.json " + json.dumps(report), flush=True)
    return None  # nothing to export: the test reads dist.json
