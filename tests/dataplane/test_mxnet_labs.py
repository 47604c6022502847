"""The workshop labs, short: each lab's manifest through kubemaker against the same script
run directly, on a slice of the real data (the full 10-epoch runs are
``benchmarks/mxnet_labs.py``).

Through kubemaker means ``kubemaker local train -f`` on the lab's ``trainingjob.yaml``
(its paths moved to the test's directory, its epochs cut): the manifest parsed by the
API model, the agent's configuration built by the operator's builder, then the agent
and the MXNet image's ``train`` entry point as processes; the accuracy is the job's
``validation:accuracy`` metric. Same seed, same data: the two accuracies must be
equal, not merely close.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_mxnet_training import (
    LocalRun,
    invoke,
    local_train,
    model_server,
    mxnet_env,
    mxnet_python,
    unpack_model,
)

pytestmark = pytest.mark.mxnet
__all__ = ["mxnet_env", "mxnet_python"]  # fixtures shared with test_mxnet_training

REPO = Path(__file__).resolve().parents[2]
QUICK_SAMPLES = 2000


def _datasets_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "kubemaker_datasets", REPO / "scripts/datasets.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def datasets() -> Any:
    module = _datasets_module()
    for name, dataset in module.DATASETS.items():
        root = module.cache_root() / "datasets" / name
        if not dataset.verify(root, full=False):
            pytest.fail(
                f"the {name} dataset is missing from {root}: run python scripts/datasets.py"
            )
    return module


def lab_manifest(
    lab: str, manifest: str, root: Path, hyper_parameters: dict[str, str]
) -> dict[str, Any]:
    """The lab's manifest as written, its /tmp/kubemaker-examples paths moved under root."""
    text = (REPO / "examples" / lab / manifest).read_text()
    text = text.replace("file:///tmp/kubemaker-examples/", f"file://{root}/")
    spec = yaml.safe_load(text)
    spec["spec"]["hyperParameters"].update(hyper_parameters)
    return spec


def last_match(manifest: dict[str, Any], name: str, output: str) -> float:
    """A metric read from a direct run's output with the manifest's own regex."""
    definitions = manifest["spec"]["algorithmSpecification"]["metricDefinitions"]
    regex = next(d["regex"] for d in definitions if d["name"] == name)
    found = re.findall(regex, output)
    assert found, f"no {name} in:\n{output[-2000:]}"
    return float(found[-1])


def direct(
    lab: str,
    script: str,
    channels: dict[str, Path],
    hps: dict[str, str],
    env: dict[str, str],
    model_dir: Path,
) -> str:
    """The lab's script with plain Python: no kubemaker code in the process."""
    code = REPO / "examples" / lab / "code"
    model_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in env.items() if not k.startswith(("SM_", "SAGEMAKER_"))}
    env.pop("PYTHONPATH", None)
    module = script.removesuffix(".py")
    source = (code / script).read_text()
    if "def train(" in source and "__main__" not in source:
        decoded = {k: json.loads(v) if re.fullmatch(r"[-0-9.e]+", v) else v for k, v in hps.items()}
        program = (
            f"import {module} as lab\n"
            f"net = lab.train({ {k: str(v) for k, v in channels.items()}!r}, {decoded!r},"
            " ['algo-1'], 0, current_host='algo-1')\n"
            f"lab.save(net, {str(model_dir)!r})\n"
        )
        cmd = [env["KUBEMAKER_MXNET_PYTHON"], "-c", program]
    else:
        args = [f"--{k}={v}" for k, v in sorted(hps.items())]
        paths = [f"--{name}={path}" for name, path in channels.items()]
        cmd = [env["KUBEMAKER_MXNET_PYTHON"], script, *args, *paths, f"--model-dir={model_dir}"]
    done = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


# One epoch on 2,000 images learns something, far from the labs' figures (those are the
# benchmark's): chance is 0.1, so 0.3 says training happened.
LEARNT_SOMETHING = 0.3
LABS = [
    # lab, script, hyperparameter name of the sample cap
    ("mnist-mlp", "mnist_mlp.py", "max_train_samples"),
    ("mnist-cnn", "mnist_cnn.py", "max-train-samples"),
    ("fashion-mnist-mlp", "fashion_mnist_mlp.py", "max_train_samples"),
    ("fashion-mnist-cnn", "fashion_mnist_cnn.py", "max-train-samples"),
]


@pytest.mark.parametrize(("lab", "script", "cap"), LABS, ids=[lab[0] for lab in LABS])
def test_lab_through_kubemaker_matches_the_direct_run(
    lab: str,
    script: str,
    cap: str,
    tmp_path: Path,
    datasets: Any,
    mxnet_env: dict[str, str],
) -> None:
    root = tmp_path / "examples"
    datasets.stage_example(lab, root=root)
    hps = {"epochs": "1", "seed": "7", cap: str(QUICK_SAMPLES)}
    manifest = lab_manifest(lab, "trainingjob.yaml", root, hps)
    run = local_train(manifest, tmp_path / "job", mxnet_env)
    assert run.exit_code == 0, run.output[-3000:]
    accuracy = run.metric("validation:accuracy")

    channels = {"train": root / lab / "train", "test": root / lab / "test"}
    output = direct(lab, script, channels, hps, mxnet_env, tmp_path / "direct-model")
    assert last_match(manifest, "validation:accuracy", output) == accuracy
    assert accuracy >= LEARNT_SOMETHING

    if lab in ("mnist-mlp", "mnist-cnn"):
        check_serving(lab, run, tmp_path, mxnet_env, accuracy)


def check_serving(
    lab: str, run: LocalRun, tmp_path: Path, env: dict[str, str], accuracy: float
) -> None:
    """The trained model.tar.gz, served: the lab's transform_fn, or the image's defaults."""
    model = unpack_model(run.model_artifacts, tmp_path / "model")
    test_dir = run.host_dir() / "input" / "data" / "test"
    images = gzip.decompress((test_dir / "t10k-images-idx3-ubyte.gz").read_bytes())[16:]
    labels = list(gzip.decompress((test_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())[8:108])
    rows = [list(images[i * 784 : (i + 1) * 784]) for i in range(100)]
    with model_server(model, env, tmp_path / "serve.log") as url:
        if lab == "mnist-mlp":
            # The lab's transform_fn: pixel rows in, digits out.
            predicted = json.loads(invoke(url, json.dumps(rows).encode(), "application/json"))
        else:
            # No handler functions: the default loads the exported network and returns
            # its raw outputs; the client takes the argmax.
            batch = [
                [[[p / 255 for p in row[r * 28 : (r + 1) * 28]] for r in range(28)]] for row in rows
            ]
            scores = json.loads(invoke(url, json.dumps(batch).encode(), "application/json"))
            assert len(scores) == 100 and all(len(s) == 10 for s in scores)
            predicted = [max(range(10), key=s.__getitem__) for s in scores]
    correct = sum(p == t for p, t in zip(predicted, labels, strict=True))
    # The model's accuracy on 10,000 test images, seen through 100 of them.
    assert correct >= 100 * accuracy - 10, (predicted, labels)


def test_recommender_beats_the_global_mean_and_serves_ratings(
    tmp_path: Path, datasets: Any, mxnet_env: dict[str, str]
) -> None:
    root = tmp_path / "examples"
    datasets.stage_example("recommender-mf", root=root)
    for manifest, model in (("trainingjob.yaml", "linear"), ("trainingjob-neural.yaml", "neural")):
        job = lab_manifest("recommender-mf", manifest, root, {"epochs": "3"})
        run = local_train(job, tmp_path / model, mxnet_env)
        assert run.exit_code == 0, run.output[-3000:]
        rmse, baseline = run.metric("test:rmse"), run.metric("baseline:rmse")
        assert 1.0 < baseline < 1.2  # MovieLens 100k's spread around its mean
        assert rmse < baseline - 0.05, run.output[-2000:]
        direct_output = direct(
            "recommender-mf",
            "recommender.py",
            {"ratings": root / "recommender-mf" / "ratings"},
            job["spec"]["hyperParameters"],
            mxnet_env,
            tmp_path / f"{model}-direct",
        )
        assert last_match(job, "test:rmse", direct_output) == rmse

    # The linear model, served through the lab's input_fn / predict_fn / output_fn.
    model_dir = unpack_model(
        f"file://{tmp_path}/examples/recommender-mf/output/recommender-mf/output/model.tar.gz",
        tmp_path / "served",
    )
    with model_server(model_dir, mxnet_env, tmp_path / "serve.log") as url:
        body = json.dumps({"user_id": [1, 1, 196], "movie_id": [1, 2, 242]}).encode()
        ratings = json.loads(invoke(url, body, "application/json"))
    assert len(ratings) == 3 and all(0.5 < r < 5.5 for r in ratings), ratings


def test_datasets_are_the_pinned_files(datasets: Any) -> None:
    """Every cached file hashes to the pinned value (what scripts/datasets.py --verify does)."""
    for name, dataset in datasets.DATASETS.items():
        assert dataset.verify(datasets.cache_root() / "datasets" / name, full=True), name


def test_the_cluster_variant_reads_data_and_code_from_s3(
    tmp_path: Path, s3_bucket: str, datasets: Any, mxnet_env: dict[str, str]
) -> None:
    """trainingjob-s3.yaml as written (bucket aside), after scripts/datasets.py --upload."""
    uploaded = datasets.upload_example("mnist-mlp", f"s3://{s3_bucket}/mnist-mlp")
    assert f"s3://{s3_bucket}/mnist-mlp/code/sourcedir.tar.gz" in uploaded
    text = (REPO / "examples" / "mnist-mlp" / "trainingjob-s3.yaml").read_text()
    manifest = yaml.safe_load(text.replace("s3://kubemaker-examples/", f"s3://{s3_bucket}/"))
    manifest["spec"]["hyperParameters"].update({"epochs": "1", "max_train_samples": "1000"})
    run = local_train(manifest, tmp_path / "job", mxnet_env)
    assert run.exit_code == 0, run.output[-3000:]
    assert (
        run.model_artifacts == f"s3://{s3_bucket}/mnist-mlp/output/mnist-mlp-s3/output/model.tar.gz"
    )
    assert run.metric("validation:accuracy") >= LEARNT_SOMETHING
