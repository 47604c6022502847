"""Lab: MNIST with a convolutional network (MXNet Gluon), in SageMaker's script mode.

The container runs this file as a script: hyperparameters arrive as command-line
arguments (``--epochs 10``), and the job's layout as ``SM_*`` environment variables
(``SM_CHANNEL_TRAIN``, ``SM_MODEL_DIR``, ``SM_HOSTS``, ...). Serving needs no code:
the MXNet image's defaults load the exported network and answer JSON or CSV rows.

The workshop's settings: batch 100, 10 epochs, SGD with momentum 0.9, learning rate 0.1,
Xavier initialisation (magnitude 2.24); conv 20 (5x5) - max pool - conv 50 (5x5) -
max pool - dense 512 - dense 10. ``--seed`` (our addition) makes runs repeatable. The
fashion-mnist-cnn lab runs this script on Fashion-MNIST (same format), learning rate 0.01.

Run it without kubemaker, with MXNet 1.9.1's Python (``scripts/mxnet-env.sh`` prints it;
see this lab's README)::

    python mnist_cnn.py --train data/train --test data/test --model-dir /tmp/model
"""

from __future__ import annotations

import argparse
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


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--log-interval", type=int, default=100)
    parser.add_argument("--seed", type=int, default=42)
    # A smaller training set for quick checks (0: all of it).
    parser.add_argument("--max-train-samples", type=int, default=0)
    # Where SageMaker (and kubemaker) put things; flags for runs without them.
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN"))
    parser.add_argument("--test", default=os.environ.get("SM_CHANNEL_TEST"))
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR"))
    parser.add_argument("--hosts", type=json.loads, default=os.environ.get("SM_HOSTS", '["local"]'))
    parser.add_argument("--current-host", default=os.environ.get("SM_CURRENT_HOST", "local"))
    parser.add_argument("--num-gpus", type=int, default=int(os.environ.get("SM_NUM_GPUS", "0")))
    args = parser.parse_args()
    for name in ("train", "test", "model_dir"):
        if not getattr(args, name):
            flag = name.replace("_", "-")
            parser.error(f"--{flag} is required outside a training container")
    return args


def main():
    args = parse_args()
    set_seed(args.seed)
    ctx = [mx.gpu(i) for i in range(args.num_gpus)] if args.num_gpus > 0 else [mx.cpu()]

    train_images, train_labels = load_idx(args.train, "train")
    test_images, test_labels = load_idx(args.test, "t10k")
    if args.max_train_samples:
        train_images = train_images[: args.max_train_samples]
        train_labels = train_labels[: args.max_train_samples]
    hosts = args.hosts
    if len(hosts) > 1:
        rank = hosts.index(args.current_host)
        train_images = train_images[rank :: len(hosts)]
        train_labels = train_labels[rank :: len(hosts)]
    train_data = gluon.data.DataLoader(
        gluon.data.ArrayDataset(to_input(train_images), train_labels),
        batch_size=args.batch_size,
        shuffle=True,
        last_batch="rollover",
    )
    val_data = gluon.data.DataLoader(
        gluon.data.ArrayDataset(to_input(test_images), test_labels),
        batch_size=args.batch_size,
        shuffle=False,
    )

    net = define_network()
    net.initialize(mx.init.Xavier(magnitude=2.24), ctx=ctx)
    if len(hosts) == 1:
        kvstore = "device" if args.num_gpus > 0 else "local"
    else:
        kvstore = "dist_device_sync" if args.num_gpus > 0 else "dist_sync"
    trainer = gluon.Trainer(
        net.collect_params(),
        "sgd",
        {"learning_rate": args.learning_rate, "momentum": args.momentum},
        kvstore=kvstore,
    )
    metric = mx.metric.Accuracy()
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    net.hybridize()

    for epoch in range(args.epochs):
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
            if i % args.log_interval == 0 and i > 0:
                name, acc = metric.get()
                speed = args.batch_size / (time.time() - btic)
                print(f"[Epoch {epoch} Batch {i}] Training: {name}={acc:f}, {speed:f} samples/s")
            btic = time.time()
        name, acc = metric.get()
        print(f"[Epoch {epoch}] Training: {name}={acc:f}")
        name, val_acc = test(ctx, net, val_data)
        print(f"[Epoch {epoch}] Validation: {name}={val_acc:f}")

    if args.current_host == hosts[0]:
        os.makedirs(args.model_dir, exist_ok=True)
        # model-symbol.json + model-0000.params: the image's default model_fn loads them.
        net.export(os.path.join(args.model_dir, "model"))


def define_network():
    net = nn.HybridSequential()
    with net.name_scope():
        net.add(nn.Conv2D(channels=20, kernel_size=5, activation="relu"))
        net.add(nn.MaxPool2D(pool_size=2, strides=2))
        net.add(nn.Conv2D(channels=50, kernel_size=5, activation="relu"))
        net.add(nn.MaxPool2D(pool_size=2, strides=2))
        net.add(nn.Flatten())
        net.add(nn.Dense(512, activation="relu"))
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
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, 1, rows, cols)


def to_input(images):
    return images.astype(np.float32) / 255.0


def test(ctx, net, val_data):
    metric = mx.metric.Accuracy()
    for data, label in val_data:
        output = net(data.as_in_context(ctx[0]))
        metric.update([label.as_in_context(ctx[0])], [output])
    return metric.get()


if __name__ == "__main__":
    main()
