"""The XGBoost algorithm's ``train`` on libsvm data with impossible feature indices: the
job's ClientError naming the line, not a crash (an OverflowError, or XGBoost's own
abort on a matrix wider than it can count)."""

from __future__ import annotations

from pathlib import Path

import pytest
from xgboost_support import make_classification, run_train, write_job

from kubemaker_runtime import contract


@pytest.mark.parametrize(
    ("index", "message"),
    [
        ("99999999999999999999", "feature index '99999999999999999999' is out of range"),
        (str(2**32), "feature index '4294967296' is out of range (0 to 4294967294)"),
        ("-1", "feature index '-1' is out of range"),
    ],
    ids=["past-int64", "past-xgboost", "negative"],
)
def test_an_impossible_feature_index_is_a_client_error(
    tmp_path: Path, index: str, message: str
) -> None:
    paths = write_job(
        tmp_path, {"num_round": 3}, {"train": make_classification(20, 1)}, "text/libsvm"
    )
    (paths.channel_dir("train") / "part-1.libsvm").write_text(f"1 1:0.5 {index}:1.0\n")
    result = run_train(tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    reason = contract.read_failure(paths) or ""
    assert reason.startswith("ClientError: channel 'train' (text/libsvm): libsvm line 1: "), reason
    assert message in reason
    assert "Traceback" not in reason
