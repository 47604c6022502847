"""``kubemaker tuning plot``: the PNG drawn from trial records, the records read from a
TuningJob's and its trials' bodies (the cluster's shape, and tuning.json's), the command
on a local tune's directory, and what it says when it cannot draw."""

from __future__ import annotations

import json
import struct
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from kubemaker import cli
from kubemaker.tuning_plot import (
    PlotError,
    Search,
    TrialRecord,
    load_dir,
    plot_trials,
    records_from_objects,
)

REPO = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SEARCH = Search(metric="validation:auc", maximize=True, title="a search")


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def curve(final: float, steps: int) -> tuple[tuple[int, float], ...]:
    return tuple((s, final - 0.1 / s) for s in range(1, steps + 1))


def records() -> list[TrialRecord]:
    return [
        TrialRecord("t-001", 1, "Completed", {"eta": "0.1", "booster": "gbtree"}, 0.91,
                    curve(0.91, 30)),
        TrialRecord("t-002", 2, "Completed", {"eta": "0.3", "booster": "dart"}, 0.93,
                    curve(0.93, 30)),
        TrialRecord("t-003", 3, "Stopped", {"eta": "0.02", "booster": "gbtree"}, None,
                    curve(0.85, 5), stopped_early="Hyperband stopped it at step 5"),
        TrialRecord("t-004", 4, "Failed", {"eta": "0.5", "booster": "dart"}),
        TrialRecord("t-005", 5, "InProgress", {"eta": "0.2", "booster": "gbtree"}, None,
                    curve(0.9, 12)),
    ]  # fmt: skip


def test_writes_a_png_of_the_records(tmp_path: Path) -> None:
    out = plot_trials(records(), tmp_path / "sub" / "plot.png", SEARCH)
    width, height = png_size(out)
    assert out.stat().st_size > 10_000
    # The top row, and a row of hyperparameter panels (eta, booster).
    assert (width, height) == (1300, 760)


def test_more_hyperparameters_make_more_rows(tmp_path: Path) -> None:
    many = [
        TrialRecord(f"t-{i:03d}", i, "Completed", {f"p{j}": str(i * j) for j in range(7)}, i / 10)
        for i in range(1, 4)
    ]
    _, height = png_size(plot_trials(many, tmp_path / "many.png", SEARCH))
    assert height == 1360  # 7 panels: 3 rows of 3; no learning curves


def test_without_series_or_completed_trials(tmp_path: Path) -> None:
    failed = [TrialRecord("t-001", 1, "Failed", {"eta": "0.1"})]
    png_size(plot_trials(failed, tmp_path / "failed.png", SEARCH))


def test_refuses_an_empty_record_list(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no trials to plot"):
        plot_trials([], tmp_path / "empty.png", SEARCH)
    assert not (tmp_path / "empty.png").exists()


def test_says_how_to_install_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    with pytest.raises(PlotError, match=r"pip install 'kubemaker\[plot\]'"):
        plot_trials(records(), tmp_path / "plot.png", SEARCH)


# --- records from objects -------------------------------------------------------------------


def tuning_body(**ranges: Any) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(
        (REPO / "examples" / "xgboost-bank" / "tuningjob.yaml").read_text()
    )
    body["spec"]["hyperParameterTuningJobConfig"]["parameterRanges"].update(ranges)
    body["status"] = {"hyperParameterTuningJobStatus": "Completed"}
    return body


def trial_body(
    number: int, state: str, auc: float | None = None, steps: int = 0, **annotations: str
) -> dict[str, Any]:
    status: dict[str, Any] = {"trainingJobStatus": state}
    if auc is not None:
        status["finalMetricDataList"] = [{"metricName": "validation:auc", "value": auc}]
    if steps:
        status["metricSeries"] = [
            {
                "metricName": "validation:auc",
                "steps": list(range(1, steps + 1)),
                "values": [0.8 + s / 1000 for s in range(1, steps + 1)],
            }
        ]
    return {
        "apiVersion": "kubemaker.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {
            "name": f"xgboost-bank-tune-{number:03d}",
            "labels": {"kubemaker.io/tuning-job": "xgboost-bank-tune"},
            "annotations": annotations,
        },
        "spec": {"hyperParameters": {"eta": "0.2", "max_depth": "5", "num_round": "100"}},
        "status": status,
    }


def test_records_from_a_tuning_job_and_its_trials() -> None:
    tuning = tuning_body(
        continuousParameterRanges=[
            {"name": "eta", "minValue": 0.01, "maxValue": 0.5, "scalingType": "Logarithmic"},
        ]
    )
    early = {"kubemaker.io/stopped-early": "Hyperband stopped it at step 3"}
    other = trial_body(3, "Completed", 0.99)
    other["metadata"]["labels"]["kubemaker.io/tuning-job"] = "another-search"
    trials, search = records_from_objects(
        tuning,
        [
            trial_body(1, "Completed", 0.93, steps=20),
            trial_body(2, "Stopped", 0.88, steps=3, **early),
            other,
            trial_body(4, "Failed"),
        ],
    )
    assert [t.name for t in trials] == [
        "xgboost-bank-tune-001",
        "xgboost-bank-tune-002",
        "xgboost-bank-tune-004",
    ]
    first, stopped, failed = trials
    assert (first.number, first.status, first.objective) == (1, "Completed", 0.93)
    assert first.hyperparameters == {"eta": "0.2", "max_depth": "5"}  # the tuned ones
    assert len(first.series) == 20 and first.series[0] == (1, 0.801)
    assert stopped.objective is None  # only a completed trial has an objective
    assert stopped.stopped_early == "Hyperband stopped it at step 3"
    assert stopped.last_value == 0.803
    assert failed.objective is None and failed.series == ()
    assert search.metric == "validation:auc" and search.maximize
    assert {p.name: p.log for p in search.parameters} == {"max_depth": False, "eta": True}
    assert search.title == "TuningJob xgboost-bank-tune: Bayesian search, Completed, 3 trials"


def test_a_local_tune_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    search_dir = tmp_path / "xgboost-bank-tune"
    search_dir.mkdir()
    items = [tuning_body(), trial_body(1, "Completed", 0.93, steps=20), trial_body(2, "Failed")]
    (search_dir / "tuning.json").write_text(json.dumps({"kind": "List", "items": items}))
    trials, _ = load_dir(search_dir)
    assert len(trials) == 2

    assert (
        cli.main(["tuning", "plot", "--dir", str(search_dir), "-o", str(tmp_path / "p.png")]) == 0
    )
    assert "(2 trials)" in capsys.readouterr().out
    png_size(tmp_path / "p.png")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give a TuningJob's NAME (on the cluster) or --dir (a local tune)"),
        (["name", "--dir", "x"], "give a TuningJob's NAME (on the cluster) or --dir"),
        (["--dir", "/nonexistent/tune"], "/nonexistent/tune/tuning.json: no such file"),
    ],
)
def test_the_command_says_what_is_wrong(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["tuning", "plot", *args]) == 2
    assert message in capsys.readouterr().err


def test_a_search_without_trials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tuning.json").write_text(json.dumps({"kind": "List", "items": [tuning_body()]}))
    assert cli.main(["tuning", "plot", "--dir", str(tmp_path)]) == 2
    assert "has no trials to plot yet" in capsys.readouterr().err


# --- from a cluster --------------------------------------------------------------------------


class FakeApiServer(BaseHTTPRequestHandler):
    """GETs of one TuningJob and the TrainingJobs labelled as its trials, on loopback."""

    objects: ClassVar[dict[str, Any]] = {}
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self.seen.append(self.path)
        body = self.objects.get(url.path)
        selector = parse_qs(url.query).get("labelSelector", [""])[0]
        if url.path.endswith("/trainingjobs") and body is not None:
            label = "kubemaker.io/tuning-job"
            body = {
                "kind": "TrainingJobList",
                "items": [
                    t
                    for t in body["items"]
                    if f"{label}={t['metadata']['labels'][label]}" == selector
                ],
            }
        data = json.dumps(body or {"kind": "Status", "reason": "NotFound", "message": "nope"})
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def apiserver(tmp_path: Path) -> Iterator[Path]:
    """A kubeconfig whose current context (namespace team-a) points at the fake server."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    other = trial_body(3, "Completed", 0.99)
    other["metadata"]["labels"]["kubemaker.io/tuning-job"] = "another-search"
    base = "/apis/kubemaker.io/v1alpha1/namespaces/team-a"
    FakeApiServer.seen = []
    FakeApiServer.objects = {
        f"{base}/tuningjobs/xgboost-bank-tune": tuning_body(),
        f"{base}/trainingjobs": {
            "items": [trial_body(1, "Completed", 0.93, steps=20), trial_body(2, "Failed"), other]
        },
    }
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}}
                ],
                "current-context": "x",
            }
        )
    )
    try:
        yield kubeconfig
    finally:
        server.shutdown()
        server.server_close()


def test_a_tuning_job_on_a_cluster(
    apiserver: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cluster.png"
    args = ["tuning", "plot", "xgboost-bank-tune", "--kubeconfig", str(apiserver), "-o", str(out)]
    assert cli.main(args) == 0, capsys.readouterr().err
    assert f"wrote {out} (2 trials)" in capsys.readouterr().out
    png_size(out)
    # The context's namespace; the trials by their label, as kubectl get tj -l would.
    assert FakeApiServer.seen == [
        "/apis/kubemaker.io/v1alpha1/namespaces/team-a/tuningjobs/xgboost-bank-tune",
        "/apis/kubemaker.io/v1alpha1/namespaces/team-a/trainingjobs"
        "?labelSelector=kubemaker.io%2Ftuning-job%3Dxgboost-bank-tune",
    ]

    args = ["tuning", "plot", "missing", "-n", "team-b", "--kubeconfig", str(apiserver)]
    assert cli.main(args) == 2
    assert "TuningJob team-b/missing not found" in capsys.readouterr().err
