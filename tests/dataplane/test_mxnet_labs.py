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
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from mxnet_support import REPO, LocalRun, invoke, load_script, model_server, run_job, unpack_model

pytestmark = pytest.mark.mxnet

QUICK_SAMPLES = 2000
EXAMPLES_ROOT = "file:///tmp/kubemaker-examples/"


@pytest.fixture(scope="module")
def datasets() -> Any:
    module = load_script("scripts/datasets.py")
    for name, dataset in module.DATASETS.items():
        root = module.cache_root() / "datasets" / name
        if not dataset.verify(root, full=False):
            pytest.fail(
                f"the {name} dataset is missing from {root}: run python scripts/datasets.py"
            )
    return module


@pytest.fixture(scope="module")
def mxnet_labs() -> Any:
    """benchmarks/mxnet_labs.py: what a direct run is, for the test and the benchmark alike."""
    return load_script("benchmarks/mxnet_labs.py")


def lab_manifest(
    lab: str, manifest: str, root: Path, hyper_parameters: dict[str, str]
) -> dict[str, Any]:
    """The lab's manifest as written, its /tmp/kubemaker-examples paths moved under root."""
    text = (REPO / "examples" / lab / manifest).read_text()
    spec = yaml.safe_load(text.replace(EXAMPLES_ROOT, f"file://{root}/"))
    spec["spec"]["hyperParameters"].update(hyper_parameters)
    return spec


def direct(
    mxnet_labs: Any,
    manifest: dict[str, Any],
    staged: Path,
    channels: dict[str, Path],
    env: dict[str, str],
    model_dir: Path,
) -> str:
    """The manifest's script, staged with its channels, run with plain Python and the
    manifest's hyperparameters: no kubemaker code in the process. Its output."""
    code = staged / "code"
    model_dir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in env.items() if not k.startswith(("SM_", "SAGEMAKER_"))}
    env.pop("PYTHONPATH", None)
    spec = manifest["spec"]
    cmd = mxnet_labs.direct_command(
        env["KUBEMAKER_MXNET_PYTHON"],
        code,
        spec["algorithmSpecification"]["entryPoint"],
        channels,
        spec["hyperParameters"],
        model_dir,
    )
    done = subprocess.run(cmd, cwd=code, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


# One epoch on 2,000 images learns something, far from the labs' figures (those are the
# benchmark's): chance is 0.1, so 0.3 says training happened.
LEARNT_SOMETHING = 0.3
LABS = {
    # lab: the hyperparameter that caps the training samples
    "mnist-mlp": "max_train_samples",
    "mnist-cnn": "max-train-samples",
    "fashion-mnist-mlp": "max_train_samples",
    "fashion-mnist-cnn": "max-train-samples",
}


@pytest.mark.parametrize(("lab", "cap"), LABS.items(), ids=list(LABS))
def test_lab_through_kubemaker_matches_the_direct_run(
    lab: str,
    cap: str,
    tmp_path: Path,
    datasets: Any,
    mxnet_labs: Any,
    mxnet_env: dict[str, str],
) -> None:
    staged = datasets.stage_example(lab, root=tmp_path / "examples")
    hps = {"epochs": "1", "seed": "7", cap: str(QUICK_SAMPLES)}
    manifest = lab_manifest(lab, "trainingjob.yaml", staged.parent, hps)
    run = run_job(manifest, tmp_path / "job", mxnet_env)
    assert run.exit_code == 0, run.output[-3000:]
    accuracy = run.metric("validation:accuracy")

    channels = {"train": staged / "train", "test": staged / "test"}
    output = direct(mxnet_labs, manifest, staged, channels, mxnet_env, tmp_path / "direct-model")
    assert mxnet_labs.last_metric(manifest, "validation:accuracy", output) == accuracy
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
    with model_server(model, env, tmp_path) as server:
        if lab == "mnist-mlp":
            # The lab's transform_fn: pixel rows in, digits out.
            predicted = json.loads(invoke(server, json.dumps(rows).encode(), "application/json"))
        else:
            # No handler functions: the default loads the exported network and returns
            # its raw outputs; the client takes the argmax.
            batch = [
                [[[p / 255 for p in row[r * 28 : (r + 1) * 28]] for r in range(28)]] for row in rows
            ]
            scores = json.loads(invoke(server, json.dumps(batch).encode(), "application/json"))
            assert len(scores) == 100 and all(len(s) == 10 for s in scores)
            predicted = [max(range(10), key=s.__getitem__) for s in scores]
    correct = sum(p == t for p, t in zip(predicted, labels, strict=True))
    # The model's accuracy on 10,000 test images, seen through 100 of them.
    assert correct >= 100 * accuracy - 10, (predicted, labels)


def test_recommender_beats_the_global_mean_and_serves_ratings(
    tmp_path: Path, datasets: Any, mxnet_labs: Any, mxnet_env: dict[str, str]
) -> None:
    staged = datasets.stage_example("recommender-mf", root=tmp_path / "examples")
    for manifest, model in (("trainingjob.yaml", "linear"), ("trainingjob-neural.yaml", "neural")):
        job = lab_manifest("recommender-mf", manifest, staged.parent, {"epochs": "3"})
        run = run_job(job, tmp_path / model, mxnet_env)
        assert run.exit_code == 0, run.output[-3000:]
        rmse, baseline = run.metric("test:rmse"), run.metric("baseline:rmse")
        assert 1.0 < baseline < 1.2  # MovieLens 100k's spread around its mean
        assert rmse < baseline - 0.05, run.output[-2000:]
        direct_output = direct(
            mxnet_labs,
            job,
            staged,
            {"ratings": staged / "ratings"},
            mxnet_env,
            tmp_path / f"{model}-direct",
        )
        assert mxnet_labs.last_metric(job, "test:rmse", direct_output) == rmse

    # The linear model, served through the lab's input_fn / predict_fn / output_fn.
    model_dir = unpack_model(
        f"file://{tmp_path}/examples/recommender-mf/output/recommender-mf/output/model.tar.gz",
        tmp_path / "served",
    )
    with model_server(model_dir, mxnet_env, tmp_path) as server:
        body = json.dumps({"user_id": [1, 1, 196], "movie_id": [1, 2, 242]}).encode()
        ratings = json.loads(invoke(server, body, "application/json"))
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
    run = run_job(manifest, tmp_path / "job", mxnet_env)
    assert run.exit_code == 0, run.output[-3000:]
    assert (
        run.model_artifacts == f"s3://{s3_bucket}/mnist-mlp/output/mnist-mlp-s3/output/model.tar.gz"
    )
    assert run.metric("validation:accuracy") >= LEARNT_SOMETHING


def _in_s3(value: Any, lab: str) -> Any:
    """A local manifest's value with its /tmp/kubemaker-examples URIs where --upload puts
    the same files in S3 (the code as sourcedir.tar.gz)."""
    if isinstance(value, dict):
        return {key: _in_s3(item, lab) for key, item in value.items()}
    if isinstance(value, list):
        return [_in_s3(item, lab) for item in value]
    if value == f"{EXAMPLES_ROOT}{lab}/code":
        return f"s3://kubemaker-examples/{lab}/code/sourcedir.tar.gz"
    if isinstance(value, str):
        return value.replace(EXAMPLES_ROOT, "s3://kubemaker-examples/")
    return value


@pytest.mark.parametrize("lab", [*LABS, "recommender-mf"])
def test_each_cluster_variant_is_its_local_job_in_s3(lab: str) -> None:
    """trainingjob-s3.yaml is trainingjob.yaml (name aside) reading what --upload puts in
    S3, and its entry point is in the code --upload sends for that lab."""
    local = yaml.safe_load((REPO / "examples" / lab / "trainingjob.yaml").read_text())
    cluster = yaml.safe_load((REPO / "examples" / lab / "trainingjob-s3.yaml").read_text())
    expected = _in_s3(local, lab)
    expected["metadata"]["name"] += "-s3"
    assert cluster == expected
    entry_point = cluster["spec"]["algorithmSpecification"]["entryPoint"]
    assert (load_script("scripts/datasets.py").example_code(lab) / entry_point).is_file()
