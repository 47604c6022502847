"""Lab: a matrix-factorisation recommender on MovieLens 100k (MXNet Gluon, script mode).

Two models of a user's rating of a movie, chosen with ``--model``:

- ``linear``: classic matrix factorisation, ``mean + b_user + b_movie + <p_user, q_movie>``
  (biases and embeddings learnt with L2 regularisation);
- ``neural``: the workshop's neural variant (as in SageMaker's Gluon recommender lab):
  user and movie embeddings each through a dense ReLU layer and dropout, their
  element-wise product summed (no bias terms: the network learns the scale).

The ratings (channel ``ratings``: MovieLens100k_data.parquet.brotli) are split at random
into training and held-out sets (``--test-fraction``, ``--seed``). The script reports the
held-out RMSE of the model and of the global-mean baseline (every rating predicted as
the training mean), which any useful recommender must beat.

Serving: ``input_fn`` takes JSON ``{"user_id": [...], "movie_id": [...]}`` (or a list
of ``[user_id, movie_id]`` pairs) and the answer is the predicted ratings.

Run it without kubemaker::

    python recommender.py --ratings data/ratings --model-dir /tmp/model
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import time

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import nn

logging.basicConfig(level=logging.INFO)

RATINGS_FILE = "MovieLens100k_data.parquet.brotli"


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["linear", "neural"], default="linear")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--num-embeddings", type=int, default=32)
    # Default: 1.0 for linear (sparse embedding rows see small averaged gradients),
    # 0.05 for neural.
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--wd", type=float, default=0.0001)
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--ratings", default=os.environ.get("SM_CHANNEL_RATINGS"))
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR"))
    parser.add_argument("--num-gpus", type=int, default=int(os.environ.get("SM_NUM_GPUS", "0")))
    args = parser.parse_args()
    for name in ("ratings", "model_dir"):
        if not getattr(args, name):
            flag = name.replace("_", "-")
            parser.error(f"--{flag} is required outside a training container")
    return args


class LinearMF(gluon.HybridBlock):
    def __init__(self, num_users, num_items, num_emb, mean, **kwargs):
        super().__init__(**kwargs)
        self.mean = mean
        with self.name_scope():
            self.user_embeddings = nn.Embedding(num_users, num_emb)
            self.item_embeddings = nn.Embedding(num_items, num_emb)
            self.user_bias = nn.Embedding(num_users, 1)
            self.item_bias = nn.Embedding(num_items, 1)

    def hybrid_forward(self, F, users, items):
        dot = F.sum(self.user_embeddings(users) * self.item_embeddings(items), axis=1)
        bias = F.reshape(self.user_bias(users) + self.item_bias(items), shape=(-1,))
        return dot + bias + self.mean


class NeuralMF(gluon.HybridBlock):
    def __init__(self, num_users, num_items, num_emb, dropout, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.user_embeddings = nn.Embedding(num_users, num_emb)
            self.item_embeddings = nn.Embedding(num_items, num_emb)
            self.dense_user = nn.Dense(num_emb, activation="relu")
            self.dense_item = nn.Dense(num_emb, activation="relu")
            self.dropout_user = nn.Dropout(dropout)
            self.dropout_item = nn.Dropout(dropout)

    def hybrid_forward(self, F, users, items):
        a = self.dropout_user(self.dense_user(self.user_embeddings(users)))
        b = self.dropout_item(self.dense_item(self.item_embeddings(items)))
        return F.sum(a * b, axis=1)


def load_ratings(directory):
    import pyarrow.parquet as pq

    table = pq.read_table(os.path.join(directory, RATINGS_FILE))
    users = table.column("user_id").to_numpy().astype(np.float32)
    items = table.column("movie_id").to_numpy().astype(np.float32)
    ratings = table.column("rating").to_numpy().astype(np.float32)
    return users, items, ratings


def rmse(net, data, ctx):
    total, count = 0.0, 0
    for users, items, ratings in data:
        predictions = net(users.as_in_context(ctx), items.as_in_context(ctx))
        total += float(((predictions - ratings.as_in_context(ctx)) ** 2).sum().asscalar())
        count += ratings.shape[0]
    return (total / count) ** 0.5


def main():
    args = parse_args()
    random.seed(args.seed)
    np.random.seed(args.seed)
    mx.random.seed(args.seed)
    ctx = mx.gpu(0) if args.num_gpus > 0 else mx.cpu()

    users, items, ratings = load_ratings(args.ratings)
    order = np.random.permutation(len(ratings))
    n_test = int(len(ratings) * args.test_fraction)
    test_idx, train_idx = order[:n_test], order[n_test:]
    mean = float(ratings[train_idx].mean())
    baseline = float(np.sqrt(np.mean((ratings[test_idx] - mean) ** 2)))
    print(
        f"ratings: {len(train_idx)} training, {len(test_idx)} held out; "
        f"{len(np.unique(users))} users, {len(np.unique(items))} movies"
    )
    print(f"Baseline (global mean {mean:.4f}): test rmse={baseline:.4f}")

    num_users, num_items = int(users.max()) + 1, int(items.max()) + 1
    if args.model == "linear":
        net = LinearMF(num_users, num_items, args.num_embeddings, mean)
    else:
        net = NeuralMF(num_users, num_items, args.num_embeddings, args.dropout)
    net.initialize(mx.init.Xavier(magnitude=2.24), ctx=ctx)
    if args.model == "linear":
        # Embeddings start small: a rating is mostly mean and biases at first.
        for param in net.collect_params().values():
            param.set_data(mx.nd.random.normal(0, 0.01, shape=param.shape, ctx=ctx))
    net.hybridize()

    def loader(idx, shuffle):
        dataset = gluon.data.ArrayDataset(users[idx], items[idx], ratings[idx])
        return gluon.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=shuffle)

    train_data, test_data = loader(train_idx, True), loader(test_idx, False)
    learning_rate = args.learning_rate or {"linear": 1.0, "neural": 0.05}[args.model]
    trainer = gluon.Trainer(
        net.collect_params(),
        "sgd",
        {"learning_rate": learning_rate, "momentum": args.momentum, "wd": args.wd},
    )
    loss = gluon.loss.L2Loss()
    for epoch in range(args.epochs):
        tic = time.time()
        for users_b, items_b, ratings_b in train_data:
            with autograd.record():
                output = net(users_b.as_in_context(ctx), items_b.as_in_context(ctx))
                batch_loss = loss(output, ratings_b.as_in_context(ctx))
            batch_loss.backward()
            trainer.step(users_b.shape[0])
        train_rmse = rmse(net, train_data, ctx)
        test_rmse = rmse(net, test_data, ctx)
        seconds = time.time() - tic
        print(
            f"[Epoch {epoch}] train rmse={train_rmse:.4f} test rmse={test_rmse:.4f}"
            f" ({seconds:.1f}s)"
        )
    improvement = 100 * (baseline - test_rmse) / baseline
    print(
        f"Final: {args.model} test rmse={test_rmse:.4f} baseline rmse={baseline:.4f} "
        f"improvement={improvement:.1f}%"
    )
    os.makedirs(args.model_dir, exist_ok=True)
    net.export(os.path.join(args.model_dir, "model"))


# ------------------------------------------------------------ #
# Hosting                                                       #
# ------------------------------------------------------------ #


def model_fn(model_dir):
    return gluon.SymbolBlock.imports(
        os.path.join(model_dir, "model-symbol.json"),
        ["data0", "data1"],
        os.path.join(model_dir, "model-0000.params"),
    )


def input_fn(request_body, content_type):
    value = json.loads(request_body)
    if isinstance(value, dict):
        users, movies = value["user_id"], value["movie_id"]
    else:
        users, movies = [pair[0] for pair in value], [pair[1] for pair in value]
    return mx.nd.array(users), mx.nd.array(movies)


def predict_fn(data, model):
    users, movies = data
    return model(users, movies)


def output_fn(prediction, accept):
    return json.dumps([round(float(v), 4) for v in prediction.asnumpy()])


if __name__ == "__main__":
    main()
