"""The MXNet framework's pure parts: its processor counts, interface detection, kvstore
roles, failure messages, code staging, the datasets' checks. No MXNet needed: these run
in the project's main environment. (How GPUs and CPUs are counted:
tests/unit/test_processors.py.)"""

from __future__ import annotations

import io
import json
import struct
import tarfile
from pathlib import Path

import pytest
from mxnet_support import load_script

from kubemaker_runtime import contract, frameworks, processors
from kubemaker_runtime.frameworks.mxnet import code, distributed, legacy, training
from kubemaker_runtime.frameworks.mxnet.environment import TrainingEnvironment

pytestmark = pytest.mark.mxnet


# --- processor counts -------------------------------------------------------------------


def test_the_script_is_told_the_cpus_and_gpus_the_job_was_given(tmp_path: Path) -> None:
    paths = contract.Paths(tmp_path)
    contract.write_hyperparameters(paths, {"sagemaker_program": "train.py"})
    contract.write_input_data_config(paths, {})
    contract.write_resource_config(
        paths, contract.build_resource_config(hosts=["algo-1"], current_host="algo-1")
    )
    # The operator's SM_NUM_CPUS (the pod's CPU request) reaches the script as it is.
    given = TrainingEnvironment.load(paths, {"SM_NUM_CPUS": "3", "SM_NUM_GPUS": "0"})
    assert (given.num_cpus, given.num_gpus) == (3, 0)
    env = given.sm_env(paths.code_dir)
    assert (env["SM_NUM_CPUS"], env["SM_NUM_GPUS"]) == ("3", "0")
    # Without it: what this container may use.
    own = TrainingEnvironment.load(paths, {})
    assert own.num_cpus == processors.available_cpus()
    assert own.num_gpus == processors.available_gpus({})


# --- which interface a script speaks ------------------------------------------------------

LEGACY = "def train(channel_input_dirs, hyperparameters, hosts, num_gpus, **kwargs):\n    pass\n"
SCRIPT = "import argparse\nprint('hi')\n"
BOTH = LEGACY + "\nif __name__ == '__main__':\n    train({}, {}, [], 0)\n"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (LEGACY, "train-function"),
        (SCRIPT, "script"),
        (BOTH, "script"),  # SageMaker's MXNet >= 1.3 runs such a file as a script
        ("def train(:\n", "script"),  # Python's own SyntaxError is the best report
        ("class Trainer:\n    def train(self):\n        pass\n", "script"),
    ],
)
def test_detect_interface(source: str, expected: str) -> None:
    assert code.detect_interface(source) == expected


def test_select_kwargs_passes_what_the_signature_names() -> None:
    available = {"hyperparameters": {"a": 1}, "hosts": ["algo-1"], "num_gpus": 0, "model_dir": "/m"}

    def narrow(hyperparameters, num_gpus):  # type: ignore[no-untyped-def]
        pass

    def wide(hyperparameters, **kwargs):  # type: ignore[no-untyped-def]
        pass

    assert legacy.select_kwargs(narrow, available) == {"hyperparameters": {"a": 1}, "num_gpus": 0}
    assert legacy.select_kwargs(wide, available) == available


# --- the parameter-server kvstore ---------------------------------------------------------


def test_ps_env_for_each_role() -> None:
    layout = distributed.PsLayout(
        hosts=("algo-1", "algo-2"),
        current_host="algo-2",
        scheduler_address="10.0.0.1",
        node_address="10.0.0.2",
        port=8000,
    )
    assert not layout.runs_scheduler
    env = distributed.build_ps_env(layout, "worker")
    assert env == {
        "DMLC_ROLE": "worker",
        "DMLC_PS_ROOT_URI": "10.0.0.1",
        "DMLC_PS_ROOT_PORT": "8000",
        "DMLC_NUM_SERVER": "2",
        "DMLC_NUM_WORKER": "2",
        "DMLC_NODE_HOST": "10.0.0.2",
    }
    assert distributed.build_ps_env(layout, "server")["DMLC_ROLE"] == "server"
    with pytest.raises(ValueError, match="role"):
        distributed.build_ps_env(layout, "chief")


def test_plan_uses_known_addresses_before_dns() -> None:
    environ = {
        "KUBEMAKER_HOST_ADDRESSES": json.dumps({"algo-1": "127.0.0.1", "algo-2": "127.0.0.2"}),
        "DMLC_PS_ROOT_PORT": "9123",
    }
    layout = distributed.plan(["algo-1", "algo-2"], "algo-2", environ)
    assert (layout.scheduler_address, layout.node_address, layout.port) == (
        "127.0.0.1",
        "127.0.0.2",
        9123,
    )
    assert distributed.plan(["localhost"], "localhost", {}).port == distributed.DEFAULT_ROOT_PORT


def test_resolve_gives_up_after_its_deadline() -> None:
    calls = []

    def failing(host: str) -> str:
        calls.append(host)
        raise OSError("Name or service not known")

    with pytest.raises(distributed.ParameterServerError, match="cannot resolve host 'nowhere'"):
        distributed.resolve("nowhere", timeout=0.0, lookup=failing)
    assert calls == ["nowhere"]


def test_clean_env_drops_stale_roles() -> None:
    env = {"DMLC_ROLE": "server", "DMLC_PS_ROOT_PORT": "9000", "PATH": "/bin"}
    assert distributed.clean_env(env) == {"DMLC_PS_ROOT_PORT": "9000", "PATH": "/bin"}


# --- failure messages ---------------------------------------------------------------------


def test_error_message_is_the_last_exception() -> None:
    stderr = [
        "some warning\n",
        "Traceback (most recent call last):\n",
        '  File "train.py", line 3, in <module>\n',
        "    raise ValueError('first')\n",
        "ValueError: first\n",
        "\n",
        "During handling of the above exception, another exception occurred:\n",
        "\n",
        "Traceback (most recent call last):\n",
        '  File "train.py", line 5, in <module>\n',
        "RuntimeError: learning rate must be positive\n",
    ]
    assert training.error_message(stderr) == "RuntimeError: learning rate must be positive"
    assert training.error_message(["a\n", "b\n", "killed\n"]) == "a b killed"
    assert training.error_message([]) == "(no output on stderr)"


def test_failure_text_reads_like_sagemakers() -> None:
    text = training.failure_text(1, "ValueError: bad", "python train.py --epochs 1")
    assert text.splitlines() == [
        "AlgorithmError: ExecuteUserScriptError:",
        "ExitCode 1",
        'ErrorMessage "ValueError: bad"',
        'Command "python train.py --epochs 1"',
    ]


# --- code staging ------------------------------------------------------------------------


def _tarball(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_stage_code_from_a_directory_a_tarball_and_the_image(tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "train.py").write_text("print(1)\n")
    (source / "pkg" / "util.py").write_text("X = 1\n")
    dest = code.stage_code(f"file://{source}", tmp_path / "code1")
    assert (dest / "train.py").is_file() and (dest / "pkg" / "util.py").is_file()

    tarball = _tarball(tmp_path / "sourcedir.tar.gz", {"train.py": "print(2)\n"})
    dest = code.stage_code(str(tarball), tmp_path / "code2")
    assert (dest / "train.py").read_text() == "print(2)\n"

    # No sourceDir: the code is in the image already.
    assert code.stage_code(None, dest) == dest
    with pytest.raises(code.UserCodeError, match="no sourceDir"):
        code.stage_code(None, tmp_path / "nothing")
    with pytest.raises(code.UserCodeError, match="does not exist"):
        code.stage_code(f"file://{tmp_path}/missing", tmp_path / "code3")


def test_entry_point_must_be_inside_the_source_dir(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("")
    assert code.entry_point_path(tmp_path, "train.py") == (tmp_path / "train.py").resolve()
    with pytest.raises(code.UserCodeError, match="not found"):
        code.entry_point_path(tmp_path, "missing.py")
    with pytest.raises(code.UserCodeError, match="outside"):
        code.entry_point_path(tmp_path, "../etc/passwd")
    with pytest.raises(code.UserCodeError, match="entryPoint"):
        code.entry_point_path(tmp_path, None)


def test_code_travels_with_a_non_empty_model(tmp_path: Path) -> None:
    code_dir, model_dir = tmp_path / "code", tmp_path / "model"
    (code_dir / "__pycache__").mkdir(parents=True)
    (code_dir / "train.py").write_text("")
    (code_dir / "__pycache__" / "train.cpython-311.pyc").write_text("")
    model_dir.mkdir()
    code.copy_code_into_model(code_dir, model_dir)
    assert not (model_dir / "code").exists()  # nothing to serve: nothing added
    (model_dir / "model-symbol.json").write_text("{}")
    code.copy_code_into_model(code_dir, model_dir)
    assert sorted(p.name for p in (model_dir / "code").iterdir()) == ["train.py"]


# --- where the MXNet environment is ------------------------------------------------------


def test_a_missing_framework_environment_names_its_build_command(tmp_path: Path) -> None:
    mxnet = frameworks.get("mxnet")
    with pytest.raises(frameworks.FrameworkUnavailable, match=r"scripts/mxnet-env\.sh"):
        mxnet.interpreter({"KUBEMAKER_CACHE": str(tmp_path)})
    python = tmp_path / "venv-mxnet" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.touch()
    assert mxnet.command("train", {"KUBEMAKER_CACHE": str(tmp_path)}) == [
        str(python),
        "-m",
        "kubemaker_runtime.frameworks.mxnet",
        "train",
    ]
    with pytest.raises(frameworks.FrameworkUnavailable, match="unknown framework"):
        frameworks.get("caffe")


# --- the datasets' checks -----------------------------------------------------------------


def test_idx_checks_catch_a_wrong_file() -> None:
    datasets = load_script("scripts/datasets.py")
    spec = datasets.IdxFile("t-labels-idx1-ubyte", "test", 3, "0" * 64, (7, 2))
    good_header = struct.pack(">II", 2049, 3)
    with pytest.raises(datasets.DatasetError, match="bytes, expected 11"):
        datasets.check_idx(spec, good_header + bytes([7, 2]))
    with pytest.raises(datasets.DatasetError, match="first labels"):
        datasets.check_idx(spec, good_header + bytes([1, 2, 3]))
    with pytest.raises(datasets.DatasetError, match="header"):
        datasets.check_idx(spec, struct.pack(">II", 2051, 3) + bytes([7, 2, 1]))
    with pytest.raises(datasets.DatasetError, match="sha256"):
        datasets.check_idx(spec, good_header + bytes([7, 2, 1]))


def test_serving_imports_a_bundled_script_only_for_its_handlers() -> None:
    from kubemaker_runtime.frameworks.mxnet import serving

    assert serving.defines_handlers("def model_fn(model_dir):\n    pass\n")
    assert serving.defines_handlers("import json\ndef transform_fn(m, d, c, a):\n    pass\n")
    # A plain script (it would train again on import) or a broken one: not imported.
    assert not serving.defines_handlers("import mxnet\ntrain_everything()\n")
    assert not serving.defines_handlers("def model_fn(:\n")


# --- serving: bad input is the caller's 400, before MXNet is involved ----------------------


def _npz() -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, a=np.ones(2))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"[" * 100_000, "application/json", "nested too deeply"),
        (b"[[1, 2], [3]]", "application/json", "as numbers"),
        (b'{"rows": [1]}', "application/json", "a list of rows of numbers"),
        (b"1,2\n3,x\n", "text/csv", "as numbers"),
        (b"\xff\xfe", "text/csv", "as numbers"),
        (_npz(), "application/x-npy", "not an .npz archive"),
        (b"PK\x03\x04 not a zip", "application/x-npy", "written by numpy.save"),
        (b"\x93NUMPY\x01", "application/x-npy", "as numbers"),
    ],
    ids=["deep-json", "ragged-json", "no-rows", "csv-text", "csv-bytes", "npz", "zip", "cut-npy"],
)
def test_default_input_parsing_rejects_bad_bodies_as_invalid_input(
    body: bytes, content_type: str, message: str
) -> None:
    from kubemaker_runtime.frameworks.mxnet import serving
    from kubemaker_runtime.serving.errors import InvalidInput, status_for

    with pytest.raises(InvalidInput, match=message) as raised:
        serving.read_numbers(body, content_type)
    assert status_for(raised.value) == 400


def test_open_inference_protocol_bytes_input_is_invalid_input(tmp_path: Path) -> None:
    from kubemaker_runtime.frameworks.mxnet import serving
    from kubemaker_runtime.serving import v2
    from kubemaker_runtime.serving.errors import InvalidInput, status_for

    model = serving.MXNetModel(tmp_path)  # no code: the default handlers
    _, inputs = v2.decode_request(
        b'{"inputs": [{"name": "x", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]}'
    )
    with pytest.raises(
        InvalidInput, match="input 'x' is BYTES: this MXNet model takes numbers"
    ) as raised:
        model.infer_v2(inputs)
    assert status_for(raised.value) == 400
