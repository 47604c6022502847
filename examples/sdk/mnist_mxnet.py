"""The workshop's MNIST lab, as its notebook drives SageMaker, on kubemaker.

Upload -> fit -> deploy -> predict -> delete with the MXNet estimator; only the imports
differ from the notebook. Local mode by default (no cluster):

    scripts/mxnet-env.sh                      # once: the MXNet environment
    python examples/sdk/mnist_mxnet.py

On a cluster with the operator and object storage (the chart's config.storage, or
AWS_ENDPOINT_URL_S3 for a MinIO reachable from here):

    python examples/sdk/mnist_mxnet.py --instance-type ml.m5.xlarge

The data are MNIST's IDX files; ``scripts/datasets.py`` fetches them offline.
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np

import kubemaker.sdk as sagemaker
from kubemaker.sdk.mxnet import MXNet

REPO = Path(__file__).resolve().parents[2]
DATA = Path("/tmp/kubemaker-examples/mnist-mlp")
CODE = REPO / "examples" / "mnist-mlp" / "code"


def test_digits(count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` test images (784 pixels, 0-255) and their labels."""
    with gzip.open(DATA / "test" / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)
    with gzip.open(DATA / "test" / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images[:count], labels[:count]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instance-type", default="local")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--predict", type=int, default=1000, help="test images to predict")
    args = parser.parse_args()
    if not (DATA / "train").is_dir():
        subprocess.run(
            [sys.executable, str(REPO / "scripts" / "datasets.py"), "--example", "mnist-mlp"],
            check=True,
        )

    # --- the notebook from here on ------------------------------------------------------
    sagemaker_session = sagemaker.Session()
    role = sagemaker.get_execution_role()
    train = sagemaker_session.upload_data(path=str(DATA / "train"), key_prefix="data/mnist/train")
    test = sagemaker_session.upload_data(path=str(DATA / "test"), key_prefix="data/mnist/test")

    m = MXNet(
        "mnist_mlp.py",
        source_dir=str(CODE),
        role=role,
        train_instance_count=1,
        train_instance_type=args.instance_type,
        framework_version="1.9.1",
        py_version="py3",
        hyperparameters={
            "batch_size": 100,
            "epochs": args.epochs,
            "learning_rate": 0.1,
            "momentum": 0.9,
            "seed": 42,
        },
        metric_definitions=[
            {"Name": "validation:accuracy", "Regex": r"Validation: accuracy=([0-9.]+)"}
        ],
        sagemaker_session=sagemaker_session,
    )
    m.fit({"train": train, "test": test})

    predictor = m.deploy(initial_instance_count=1, instance_type=args.instance_type)
    try:
        images, labels = test_digits(args.predict)
        predicted = np.asarray(predictor.predict(images.tolist()), dtype=int).ravel()
        print(f"first digits: predicted {predicted[:10].tolist()}, labels {labels[:10].tolist()}")
    finally:
        predictor.delete_endpoint()

    # --- beyond the notebook: what the run measured ------------------------------------
    status = m.latest_training_job.describe()["status"]  # type: ignore[union-attr]
    final = {d["metricName"]: d["value"] for d in status.get("finalMetricDataList", [])}
    accuracy = float((predicted == labels).mean())
    print(f"validation:accuracy (training log) {final.get('validation:accuracy')}")
    print(f"accuracy of the endpoint on {len(labels)} test images: {accuracy:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
