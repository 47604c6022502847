"""``kubemaker local train`` as users run it, for the local-mode tests: the command, the
bank-marketing example's data and manifest, and what a run leaves (its summary, its
record).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "xgboost-bank"
TRAIN_TIMEOUT = 300
METRIC_LINE = re.compile(r"^\s+(\S+)\s+([-+0-9.eE]+)$", re.MULTILINE)


def prepare_bank(out: Path) -> Path:
    """The example's channels under ``out``, written by its own prepare.py."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLE / "prepare.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=TRAIN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def bank_manifest(data: Path, output_uri: str, **changes: Any) -> dict[str, Any]:
    """The example's trainingjob.yaml with its channels in ``data`` and its output at
    ``output_uri``; ``changes`` replace spec fields (``hyperParameters`` are merged)."""
    manifest = yaml.safe_load((EXAMPLE / "trainingjob.yaml").read_text())
    spec = manifest["spec"]
    for channel in spec["inputDataConfig"]:
        channel["uri"] = (data / channel["channelName"]).as_uri()
    spec["outputDataConfig"]["s3OutputPath"] = output_uri
    spec["hyperParameters"].update(changes.pop("hyperParameters", {}))
    if "name" in changes:
        manifest["metadata"]["name"] = changes.pop("name")
    spec.update(changes)
    return manifest


def write_manifest(path: Path, manifest: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def kubemaker(
    *args: str, timeout: float = TRAIN_TIMEOUT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubemaker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def local_train(manifest: Path, workdir: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return kubemaker(
        "local", "train", "-f", str(manifest), "--workdir", str(workdir), "--no-progress", **kwargs
    )


def final_metrics(stdout: str) -> dict[str, float]:
    """The metrics of the summary printed at the end."""
    _, _, block = stdout.rpartition("Final metrics:")
    return {name: float(value) for name, value in METRIC_LINE.findall(block)}


def read_record(workdir: Path, name: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((workdir / name / "trainingjob.json").read_text())
    return record


def status_metrics(record: dict[str, Any]) -> dict[str, float]:
    return {m["metricName"]: m["value"] for m in record["status"]["finalMetricDataList"]}


def output(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
