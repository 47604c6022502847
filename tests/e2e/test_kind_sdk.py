"""The Python SDK end to end: examples/sdk/xgboost_bank.py against the kind cluster, as a
user runs it from a notebook machine (its kubeconfig, S3 reached from outside), with the
operator and our images as real containers. It fits, tunes, deploys the best model to an
Endpoint and predicts through the API server's service proxy, then batch-transforms the
test split: every kind but MXNet, on a real kubelet."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import kindharness
import pytest
import yaml

pytestmark = pytest.mark.e2e

SCRIPT = kindharness.REPO_ROOT / "examples" / "sdk" / "xgboost_bank.py"


def _number(pattern: str, output: str) -> float:
    found = re.search(pattern, output)
    assert found, f"{pattern!r} not in the output:\n{output[-4000:]}"
    return float(found.group(1))


def test_the_sdk_bank_script_fits_tunes_deploys_and_transforms_on_kind(
    kind_env: kindharness.Environment, e2e_namespace: str, tmp_path: Path
) -> None:
    # The user's kubeconfig, its context set to the test's namespace (Session()'s default).
    config = yaml.safe_load(kind_env.settings.kubeconfig.read_text())
    for context in config["contexts"]:
        context["context"]["namespace"] = e2e_namespace
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    kubeconfig.chmod(0o600)
    env = kind_env.storage.aws_env(os.environ)
    env["KUBECONFIG"] = str(kubeconfig)
    env["KUBEMAKER_LOCAL_WORKDIR"] = str(tmp_path / "work")

    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--instance-type", "ml.m5.xlarge", "--max-jobs", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=kind_env.settings.job_timeout * 4,
        check=False,
    )
    output = done.stdout + done.stderr
    (tmp_path / "output.txt").write_text(output)
    assert done.returncode == 0, output[-6000:]

    assert f"created TrainingJob {e2e_namespace}/" in output
    # fit() printed the job's statuses and streamed its algorithm log (pods/log).
    assert re.search(r"\d\d:\d\d:\d\d Training - ", output), output[-4000:]
    assert re.search(r"\[\d+\].*validation-auc:0\.\d+", output), output[-4000:]
    assert f"created TuningJob {e2e_namespace}/" in output
    assert f"created Endpoint {e2e_namespace}/" in output
    assert f"created BatchTransform {e2e_namespace}/" in output
    # A prediction came back through the service proxy from the model's server.
    assert re.search(r"one client \(label [01]\): 0\.[0-9]+", output), output[-4000:]
    assert _number(r"best validation:auc ([0-9.]+)", output) >= 0.9
    assert _number(r"test AUC of the best model over 452 clients: ([0-9.]+)", output) >= 0.85

    objects = kind_env.cluster.kubectl_json("get", "kubemaker", "-n", e2e_namespace)["items"]
    kinds = {item["kind"] for item in objects}
    assert {"TrainingJob", "TuningJob", "BatchTransform"} <= kinds, kinds
    # delete_endpoint() removed the Endpoint.
    assert "Endpoint" not in kinds
