"""examples/xgboost-bank/demo.sh, as `make demo` runs it: prepare, train, serve, predict, stop.

It writes the example's data where its manifest reads it
(/tmp/kubemaker-examples/xgboost-bank); the jobs' work files go to the test's directory.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from localmode_support import EXAMPLE

DEMO_TIMEOUT = 600


def test_the_demo_runs_end_to_end(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(EXAMPLE / "demo.sh")],
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
        env={**os.environ, "KUBEMAKER_LOCAL_WORKDIR": str(tmp_path / "work")},
        check=False,
    )
    text = f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    assert done.returncode == 0, text
    auc = re.search(r"^\s+validation:auc\s+([0-9.]+)$", done.stdout, re.M)
    assert auc is not None and float(auc.group(1)) >= 0.90, text
    predictions = re.findall(r"^\s+([0-9.]+)\s+(yes|no)$", done.stdout, re.M)
    assert len(predictions) == 6, text
    assert all(0.0 < float(score) < 1.0 for score, _ in predictions)
    # The three clients who subscribed score higher, on average, than the three who did not.
    yes = [float(s) for s, label in predictions if label == "yes"]
    no = [float(s) for s, label in predictions if label == "no"]
    assert sum(yes) / len(yes) > sum(no) / len(no), text
    assert "kubemaker: stopping the model server" in done.stderr
    assert (tmp_path / "work" / "xgboost-bank" / "trainingjob.json").is_file()
