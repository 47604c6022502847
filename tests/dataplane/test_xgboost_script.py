"""XGBoost script mode (``framework: xgboost``), run for real on the bank-marketing data.

Jobs run as users run them, with ``kubemaker local train`` (the agent stages the
channels and the code, ``python -m kubemaker_runtime.frameworks.xgboost train`` runs the
script with this interpreter, the agent uploads model.tar.gz); models are served over
HTTP by ``kubemaker local serve`` or by the image's own entry point. The example
(examples/xgboost-script) trains to its AUC and serves CSV; a script with its own
``input_fn`` / ``output_fn`` is served through them; failing scripts report their error;
bad requests are 4xx; two hosts train one model through XGBoost's collective; and the
XGBoost image's entry point (the built-in algorithm's) switches to script mode on its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import xgboost as xgb
import yaml
from localmode_support import (
    local_train,
    output,
    prepare_bank,
    read_record,
    status_metrics,
    write_manifest,
)
from serving_support import run_server

from kubemaker_runtime import contract

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "xgboost-script"
START_TIMEOUT = 120.0
STOP_TIMEOUT = 40.0
SERVING_LINE = re.compile(r"^Serving (.+) with (.+) at (http://\S+)$")
CSV = {"Content-Type": "text/csv"}


# --- helpers ------------------------------------------------------------------------------


def script_manifest(
    data: Path, root: Path, source_dir: Path, *, name: str = "xgboost-script", **changes: Any
) -> dict[str, Any]:
    """The example's trainingjob.yaml with its channels in ``data``, its code in
    ``source_dir`` and its output under ``root``; ``changes`` replace spec fields."""
    manifest: dict[str, Any] = yaml.safe_load((EXAMPLE / "trainingjob.yaml").read_text())
    manifest["metadata"]["name"] = name
    spec = manifest["spec"]
    for channel in spec["inputDataConfig"]:
        channel["uri"] = (data / channel["channelName"]).as_uri()
    spec["outputDataConfig"]["s3OutputPath"] = (root / "output").as_uri()
    spec["algorithmSpecification"]["sourceDir"] = source_dir.as_uri()
    spec.update(changes)
    return manifest


def train_job(
    manifest: dict[str, Any], root: Path
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``kubemaker local train -f`` the manifest; the result and the job's directory."""
    path = write_manifest(root / f"{manifest['metadata']['name']}.yaml", manifest)
    done = local_train(path, root / "work")
    return done, root / "work" / manifest["metadata"]["name"]


def write_code(directory: Path, name: str, source: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(textwrap.dedent(source))
    return directory


def feature_rows(data: Path, count: int = 8) -> list[str]:
    """Rows of the test split without their label (what a client sends)."""
    lines = (data / "test" / "test.csv").read_text().splitlines()[:count]
    return [line.split(",", 1)[1] for line in lines]


def booster_predictions(model_file: Path, rows: list[str]) -> np.ndarray:
    booster = xgb.Booster()
    booster.load_model(bytearray(model_file.read_bytes()))
    features = np.array([[float(v) for v in row.split(",")] for row in rows], dtype=np.float32)
    return np.asarray(booster.inplace_predict(features))


@contextlib.contextmanager
def local_serve(*args: str) -> Iterator[str]:
    """``kubemaker local serve --port 0 ARGS`` until it prints its URL (yielded); Ctrl-C
    at the end, as a user stops it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kubemaker", "local", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    found: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if SERVING_LINE.match(lines[-1]):
                found.put(lines[-1])
        found.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        try:
            line = found.get(timeout=START_TIMEOUT)
        except queue.Empty:
            pytest.fail("kubemaker local serve printed no URL in time:\n" + "\n".join(lines))
        if line is None:
            pytest.fail(f"serve exited with {process.wait()}:\n" + "\n".join(lines))
        match = SERVING_LINE.match(line)
        assert match is not None
        yield match.group(3)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(STOP_TIMEOUT)


def post(url: str, body: bytes | str, **headers: str) -> requests.Response:
    return requests.post(f"{url}/invocations", data=body, headers=headers, timeout=30)


# --- the example: train, metrics, serve ---------------------------------------------------


def model_archive(job_dir: Path) -> Path:
    record = read_record(job_dir.parent, job_dir.name)
    return Path(record["status"]["modelArtifacts"]["s3ModelArtifacts"].removeprefix("file://"))


@dataclass(frozen=True)
class Trained:
    root: Path
    data: Path
    done: subprocess.CompletedProcess[str]
    job_dir: Path

    @property
    def record(self) -> dict[str, Any]:
        return read_record(self.job_dir.parent, self.job_dir.name)

    @property
    def archive(self) -> Path:
        return model_archive(self.job_dir)

    @property
    def model_file(self) -> Path:
        return self.job_dir / "host-0" / "model" / "xgboost-model"


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_bank(tmp_path_factory.mktemp("bank"))


@pytest.fixture(scope="module")
def trained(bank: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("example")
    done, job_dir = train_job(script_manifest(bank, root, EXAMPLE / "code"), root)
    assert done.returncode == 0, output(done)
    return Trained(root, bank, done, job_dir)


@pytest.fixture(scope="module")
def served(trained: Trained) -> Iterator[str]:
    with local_serve("--model", str(trained.job_dir)) as url:
        yield url


def test_the_example_trains_to_a_sensible_auc(trained: Trained) -> None:
    record = trained.record
    assert record["status"]["trainingJobStatus"] == "Completed"
    stdout = trained.done.stdout
    # The script's own output, passed through: its channels, XGBoost's evaluation log
    # and early stopping, which came in as --early_stopping_rounds 10.
    assert "train: 3165 rows, 54 features from 1 file(s)" in stdout
    assert "validation: 904 rows, 54 features" in stdout
    assert re.search(r"^best round \d+, validation auc 0\.9\d*$", stdout, re.MULTILINE), stdout
    # The metric is read from the log by the manifest's metricDefinitions (SageMaker's
    # #011 regexes): the last validation-auc the script printed.
    logged = re.findall(r"^\[\d+\]\ttrain-auc:\S+\tvalidation-auc:(\S+)$", stdout, re.MULTILINE)
    metrics = status_metrics(record)
    assert metrics["validation:auc"] == pytest.approx(float(logged[-1]))
    assert 0.9 < metrics["validation:auc"] < 1.0
    assert 0.9 < metrics["train:auc"] <= 1.0
    # The model and the code that trained it, in model.tar.gz.
    with tarfile.open(trained.archive) as tar:
        names = set(tar.getnames())
    assert {"xgboost-model", "code/train.py"} <= names
    assert (trained.job_dir / "host-0" / "output" / "data" / "summary.json").is_file()


def test_the_served_example_answers_csv(trained: Trained, served: str) -> None:
    rows = feature_rows(trained.data)
    expected = booster_predictions(trained.model_file, rows)
    response = post(served, "\n".join(rows), **CSV)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/csv")
    got = np.array([float(v) for v in response.text.split(",")])
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # JSON in and out (SageMaker's script-mode default: the predictions as a list).
    body = json.dumps({"instances": [[float(v) for v in row.split(",")] for row in rows[:2]]})
    response = post(
        served, body, **{"Content-Type": "application/json", "Accept": "application/json"}
    )
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json(), expected[:2], rtol=1e-6)


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [
        ("1,2,3", CSV, 400, "the payload has 3 features per row, the model expects 54"),
        ("yes,no", CSV, 400, "is not a number"),
        ('{"instances": [[1, 2', {"Content-Type": "application/json"}, 400, "not valid JSON"),
        ("0:1 99:1", {"Content-Type": "text/libsvm"}, 400, "feature index 99"),
        ("GIF89a", {"Content-Type": "image/gif"}, 415, "'image/gif' is not supported"),
        ("1,2", {"Content-Type": "text/csv", "Accept": "image/png"}, 406, "names no type"),
    ],
)
def test_a_bad_request_is_4xx_with_the_reason(
    served: str, body: str, headers: dict[str, str], status: int, message: str
) -> None:
    response = post(served, body, **headers)
    assert response.status_code == status, response.text
    assert message in response.text
    assert "Traceback" not in response.text


# --- a script's own handler functions -----------------------------------------------------

HANDLERS = """
    import argparse, json, os
    import numpy as np
    import xgboost as xgb


    def input_fn(request_body, request_content_type):
        # One client of this model sends whitespace-separated features, one row a line.
        if request_content_type != "text/plain":
            raise ValueError(f"this model reads text/plain, not {request_content_type}")
        rows = [line.split() for line in request_body.decode().splitlines() if line.strip()]
        return xgb.DMatrix(np.array(rows, dtype=np.float32))


    def output_fn(prediction, accept):
        answer = {
            "subscribed": [bool(p > 0.5) for p in prediction],
            "probability": [float(p) for p in prediction],
        }
        return json.dumps(answer), "application/json"


    if __name__ == "__main__":
        parser = argparse.ArgumentParser()
        parser.add_argument("--num_round", type=int, default=5)
        args, _ = parser.parse_known_args()
        rows = np.loadtxt(os.path.join(os.environ["SM_CHANNEL_TRAIN"], "train.csv"), delimiter=",")
        booster = xgb.train(
            {"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
            xgb.DMatrix(rows[:, 1:], label=rows[:, 0]),
            num_boost_round=args.num_round,
        )
        booster.save_model(os.path.join(os.environ["SM_MODEL_DIR"], "model.json"))
"""


def test_the_scripts_input_fn_and_output_fn_serve_its_model(bank: Path, tmp_path: Path) -> None:
    code = write_code(tmp_path / "code", "handlers.py", HANDLERS)
    manifest = script_manifest(bank, tmp_path, code, name="handlers", hyperParameters={})
    manifest["spec"]["algorithmSpecification"]["entryPoint"] = "handlers.py"
    done, job_dir = train_job(manifest, tmp_path)
    assert done.returncode == 0, output(done)

    rows = feature_rows(bank, 4)
    # The default model_fn found the script's model.json (the only model file).
    expected = booster_predictions(job_dir / "host-0" / "model" / "model.json", rows)
    with local_serve("--model", str(job_dir)) as url:
        plain = "\n".join(row.replace(",", " ") for row in rows)
        response = post(url, plain, **{"Content-Type": "text/plain", "Accept": "application/json"})
        assert response.status_code == 200, response.text
        answer = response.json()
        np.testing.assert_allclose(answer["probability"], expected, rtol=1e-6)
        assert answer["subscribed"] == [bool(p > 0.5) for p in expected]
        # What the script's input_fn refuses is the caller's error, with its words.
        response = post(url, "\n".join(rows), **CSV)
        assert response.status_code == 400, response.text
        assert "ValueError: this model reads text/plain, not text/csv" in response.text
        response = post(url, "1 2 x", **{"Content-Type": "text/plain"})
        assert response.status_code == 400, response.text


# --- failures -----------------------------------------------------------------------------


def test_a_failing_script_reports_its_error(bank: Path, tmp_path: Path) -> None:
    code = write_code(
        tmp_path / "code",
        "train.py",
        """
        import sys
        print("reading the channels")
        depth = int(sys.argv[sys.argv.index("--max_depth") + 1])
        if depth > 10:
            raise ValueError(f"max_depth {depth} is too deep for 3,165 rows")
        """,
    )
    manifest = script_manifest(bank, tmp_path, code, hyperParameters={"max_depth": "12"})
    done, job_dir = train_job(manifest, tmp_path)
    assert done.returncode != 0
    record = read_record(job_dir.parent, job_dir.name)
    assert record["status"]["trainingJobStatus"] == "Failed"
    reason = record["status"]["failureReason"]
    assert reason.splitlines() == [
        "AlgorithmError: ExecuteUserScriptError:",
        "ExitCode 1",
        'ErrorMessage "ValueError: max_depth 12 is too deep for 3,165 rows"',
        f'Command "{Path(sys.executable).name} train.py --max_depth 12"',
    ]
    assert "reading the channels" in done.stdout  # the script's own output is kept
    assert "max_depth 12 is too deep" in done.stdout + done.stderr

    manifest = script_manifest(bank, tmp_path, code, name="missing")
    manifest["spec"]["algorithmSpecification"]["entryPoint"] = "nope.py"
    done, job_dir = train_job(manifest, tmp_path)
    assert done.returncode != 0
    reason = read_record(job_dir.parent, job_dir.name)["status"]["failureReason"]
    assert reason.startswith("ClientError: entry point 'nope.py' not found"), reason


# --- two hosts ----------------------------------------------------------------------------

TWO_HOSTS = """
    import json, os
    from pathlib import Path
    import numpy as np
    import xgboost as xgb
    from kubemaker_runtime.algorithms.xgboost.distributed import build_cluster, communicator

    cluster = build_cluster(json.loads(os.environ["SM_RESOURCE_CONFIG"]))
    rows = np.loadtxt(Path(os.environ["SM_CHANNEL_TRAIN"]) / "train.csv", delimiter=",")
    shard = rows[cluster.rank :: cluster.size]
    with communicator(cluster):
        booster = xgb.train(
            {"objective": "binary:logistic", "max_depth": 3, "tree_method": "hist", "nthread": 1},
            xgb.DMatrix(shard[:, 1:], label=shard[:, 0]),
            num_boost_round=5,
        )
    print(f"rank {cluster.rank} of {cluster.size} trained on {len(shard)} rows")
    out = Path(os.environ["SM_OUTPUT_DATA_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    seen = {"rank": cluster.rank, "rows": len(shard), "trees": booster.get_dump()}
    (out / "seen.json").write_text(json.dumps(seen))
    if os.environ["SM_CURRENT_HOST"] == json.loads(os.environ["SM_HOSTS"])[0]:
        booster.save_model(os.path.join(os.environ["SM_MODEL_DIR"], "model.json"))
"""


def test_two_hosts_run_the_script_and_join_xgboosts_collective(bank: Path, tmp_path: Path) -> None:
    code = write_code(tmp_path / "code", "train.py", TWO_HOSTS)
    manifest = script_manifest(
        bank,
        tmp_path,
        code,
        name="two-hosts",
        hyperParameters={},
        resourceConfig={"instanceType": "ml.m5.large", "instanceCount": 2},
    )
    manifest["spec"]["inputDataConfig"] = manifest["spec"]["inputDataConfig"][:1]
    done, job_dir = train_job(manifest, tmp_path)
    assert done.returncode == 0, output(done)
    seen = [
        json.loads((job_dir / f"host-{i}" / "output" / "data" / "seen.json").read_text())
        for i in range(2)
    ]
    assert [s["rank"] for s in seen] == [0, 1]
    assert sum(s["rows"] for s in seen) == 3165
    # Each host its half of the rows, one model: the collective kept them in step.
    assert seen[0]["trees"] == seen[1]["trees"]
    assert "two-hosts-1 | rank 1 of 2 trained on" in done.stdout
    # The first host's model is the job's.
    with tarfile.open(model_archive(job_dir)) as tar:
        assert "model.json" in tar.getnames()


# --- the XGBoost image's entry point ------------------------------------------------------


def test_the_xgboost_images_entry_point_switches_to_script_mode(bank: Path, tmp_path: Path) -> None:
    """What the operator's pod runs: ``<xgboost image> train`` with the entry point in
    hyperparameters.json, then ``serve`` with and without the script's code."""
    paths = contract.Paths(tmp_path / "opt-ml")
    contract.write_hyperparameters(
        paths,
        {
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": (EXAMPLE / "code").as_uri(),
            "num_round": "10",
        },
    )
    contract.write_input_data_config(
        paths, {"train": {"ContentType": "text/csv", "TrainingInputMode": "File"}}
    )
    contract.write_resource_config(
        paths, contract.build_resource_config(hosts=["algo-1"], current_host="algo-1")
    )
    paths.channel_dir("train").mkdir(parents=True)
    shutil.copy(bank / "train" / "train.csv", paths.channel_dir("train"))
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(paths.base)}
    done = subprocess.run(
        [sys.executable, "-m", "kubemaker_runtime.algorithms.xgboost", "train"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the job names an entry point: script mode" in done.stderr
    assert "[9]\ttrain-auc:" in done.stdout
    assert (paths.model_dir / "code" / "train.py").is_file()

    rows = feature_rows(bank, 2)
    expected = booster_predictions(paths.model_dir / "xgboost-model", rows)
    serve = [sys.executable, "-m", "kubemaker_runtime.algorithms.xgboost", "serve"]
    json_accept = {**CSV, "Accept": "application/json"}
    with run_server(serve, tmp_path, {"SM_MODEL_DIR": str(paths.model_dir)}) as server:
        # The model carries its code: script mode's defaults (a JSON list).
        response = server.post("/invocations", "\n".join(rows), **json_accept)
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json(), expected, rtol=1e-6)
    shutil.rmtree(paths.model_dir / "code")
    with run_server(serve, tmp_path, {"SM_MODEL_DIR": str(paths.model_dir)}) as server:
        # A bare model: the built-in algorithm's server, as SageMaker's image does.
        response = server.post("/invocations", "\n".join(rows), **json_accept)
        assert response.status_code == 200, response.text
        scores = [p["score"] for p in response.json()["predictions"]]
        np.testing.assert_allclose(scores, expected, rtol=1e-6)
