"""Lab: MNIST with a multi-layer perceptron (MXNet Gluon).

Written for SageMaker's original MXNet interface, which kubemaker's MXNet image still
runs: the container imports this module, calls ``train(...)`` with the job's channels,
hyperparameters and hosts, then hands the returned network to ``save(net, model_dir)``.
Serving uses ``model_fn`` and ``transform_fn`` below.

The workshop's settings: batch 100, 10 epochs, SGD with momentum 0.9, learning rate 0.1,
Xavier initialisation (magnitude 2.24), a 128-64-10 network. ``seed`` (our addition)
fixes the initial weights and the shuffling, so two runs give the same accuracy. The
fashion-mnist-mlp lab runs this script on Fashion-MNIST (same format), learning rate 0.01.

Run it without kubemaker (what the "direct" column of the labs' table measures)::

    python -c "import mnist_mlp as m; m.save(m.train({'train': 'data/train', \
        'test': 'data/test'}, {}, ['local'], 0), '/tmp/model')"
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import random
import struct
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import nn

logging.basicConfig(level=logging.INFO)

# ------------------------------------------------------------ #
# Training                                                      #
# ------------------------------------------------------------ #


def train(channel_input_dirs, hyperparameters, hosts, num_gpus, **kwargs):
    batch_size = int(hyperparameters.get("batch_size", 100))
    epochs = int(hyperparameters.get("epochs", 10))
    learning_rate = float(hyperparameters.get("learning_rate", 0.1))
    momentum = float(hyperparameters.get("momentum", 0.9))
    log_interval = int(hyperparameters.get("log_interval", 100))
    seed = int(hyperparameters.get("seed", 42))
    # A smaller training set for quick checks (0: all of it).
    max_train_samples = int(hyperparameters.get("max_train_samples", 0))

    set_seed(seed)
    ctx = [mx.gpu(i) for i in range(num_gpus)] if num_gpus > 0 else [mx.cpu()]

    train_images, train_labels = load_idx(channel_input_dirs["train"], "train")
    test_images, test_labels = load_idx(channel_input_dirs["test"], "t10k")
    if max_train_samples:
        train_images = train_images[:max_train_samples]
        train_labels = train_labels[:max_train_samples]
    if len(hosts) > 1:
        # Each host trains on its own shard; dist_sync adds up their gradients.
        rank = hosts.index(kwargs.get("current_host", hosts[0]))
        train_images = train_images[rank :: len(hosts)]
        train_labels = train_labels[rank :: len(hosts)]
    train_data = gluon.data.DataLoader(
        gluon.data.ArrayDataset(to_input(train_images), train_labels),
        batch_size=batch_size,
        shuffle=True,
        last_batch="rollover",
    )
    val_data = gluon.data.DataLoader(
        gluon.data.ArrayDataset(to_input(test_images), test_labels),
        batch_size=batch_size,
        shuffle=False,
    )

    net = define_network()
    net.initialize(mx.init.Xavier(magnitude=2.24), ctx=ctx)
    if len(hosts) == 1:
        kvstore = "device" if num_gpus > 0 else "local"
    else:
        kvstore = "dist_device_sync" if num_gpus > 0 else "dist_sync"
    trainer = gluon.Trainer(
        net.collect_params(),
        "sgd",
        {"learning_rate": learning_rate, "momentum": momentum},
        kvstore=kvstore,
    )
    metric = mx.metric.Accuracy()
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    net.hybridize()

    for epoch in range(epochs):
        metric.reset()
        btic = time.time()
        for i, (data, label) in enumerate(train_data):
            datas = gluon.utils.split_and_load(data, ctx, even_split=False)
            labels = gluon.utils.split_and_load(label, ctx, even_split=False)
            with autograd.record():
                outputs = [net(x) for x in datas]
                losses = [loss(o, y) for o, y in zip(outputs, labels, strict=True)]
            for batch_loss in losses:
                batch_loss.backward()
            trainer.step(data.shape[0])
            metric.update(labels, outputs)
            if i % log_interval == 0 and i > 0:
                name, acc = metric.get()
                speed = batch_size / (time.time() - btic)
                print(f"[Epoch {epoch} Batch {i}] Training: {name}={acc:f}, {speed:f} samples/s")
            btic = time.time()
        name, acc = metric.get()
        print(f"[Epoch {epoch}] Training: {name}={acc:f}")
        name, val_acc = test(ctx, net, val_data)
        print(f"[Epoch {epoch}] Validation: {name}={val_acc:f}")
    return net


def save(net, model_dir):
    # model-symbol.json + model-0000.params: what model_fn (or the image's default) loads.
    net.export(os.path.join(model_dir, "model"))


def define_network():
    net = nn.HybridSequential()
    with net.name_scope():
        net.add(nn.Dense(128, activation="relu"))
        net.add(nn.Dense(64, activation="relu"))
        net.add(nn.Dense(10))
    return net


def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)  # the DataLoader's shuffling
    mx.random.seed(seed)  # the Xavier initialisation


def load_idx(directory, prefix):
    """The IDX image and label files named ``<prefix>-*-idx?-ubyte[.gz]`` in a directory."""
    images = _read_idx(_find(directory, prefix + "-images-idx3-ubyte"))
    labels = _read_idx(_find(directory, prefix + "-labels-idx1-ubyte"))
    return images, labels.astype(np.float32)


def _find(directory, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    found = sorted(os.listdir(directory))
    raise FileNotFoundError(f"no {stem}[.gz] in {directory}: {found}")


def _read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, count = struct.unpack(">II", data[:8])
    if magic == 2049:
        return np.frombuffer(data, dtype=np.uint8, offset=8, count=count)
    rows, cols = struct.unpack(">II", data[8:16])
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def to_input(images):
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def test(ctx, net, val_data):
    metric = mx.metric.Accuracy()
    for data, label in val_data:
        output = net(data.as_in_context(ctx[0]))
        metric.update([label.as_in_context(ctx[0])], [output])
    return metric.get()


# ------------------------------------------------------------ #
# Hosting                                                       #
# ------------------------------------------------------------ #


def model_fn(model_dir):
    """Load the exported network; called once when the model server starts."""
    return gluon.SymbolBlock.imports(
        os.path.join(model_dir, "model-symbol.json"),
        ["data"],
        os.path.join(model_dir, "model-0000.params"),
    )


def transform_fn(net, data, input_content_type, output_content_type):
    """A JSON list of 784-pixel rows (0-255) in; the predicted class (0-9) of each row out."""
    rows = np.asarray(json.loads(data), dtype=np.float32).reshape(-1, 784) / 255.0
    output = net(mx.nd.array(rows))
    prediction = mx.nd.argmax(output, axis=1).asnumpy().astype(int).tolist()
    return json.dumps(prediction), output_content_type
