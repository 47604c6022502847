"""``kubemaker local tune``: the bank-marketing search with real XGBoost trials, the
operator's planner, the command as users run it.

The search is examples/xgboost-bank/tuningjob.yaml with its paths pointing into the
test's directory. Its completion criterion (8 trials without improvement) is dropped
here so that the whole budget of 20 trials runs; the Hyperband and Ctrl-C searches
change what they say they change.
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from localmode_support import (
    EXAMPLE,
    bank_manifest,
    final_metrics,
    kubemaker,
    local_train,
    output,
    prepare_bank,
    write_manifest,
)
from process_support import stop, wait_for

SEARCH_TIMEOUT = 900
TUNING = "xgboost-bank-tune"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bank_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_bank(tmp_path_factory.mktemp("bank"))


def tune_manifest(
    data: Path, output_uri: str, example: str = "tuningjob.yaml", **config: Any
) -> dict[str, Any]:
    """The example's tuningjob.yaml (or ``example``) reading ``data``, writing to ``output_uri``;
    ``config`` replaces fields of hyperParameterTuningJobConfig (None removes one);
    ``static`` is merged into staticHyperParameters (None removes one)."""
    manifest: dict[str, Any] = yaml.safe_load((EXAMPLE / example).read_text())
    spec = manifest["spec"]
    definition = spec["trainingJobDefinition"]
    for channel in definition["inputDataConfig"]:
        channel["uri"] = (data / channel["channelName"]).as_uri()
    definition["outputDataConfig"]["s3OutputPath"] = output_uri
    static = definition["staticHyperParameters"]
    for key, value in config.pop("static", {}).items():
        if value is None:
            static.pop(key, None)
        else:
            static[key] = value
    if "name" in config:
        manifest["metadata"]["name"] = config.pop("name")
    for key, value in config.items():
        if value is None:
            spec["hyperParameterTuningJobConfig"].pop(key, None)
        else:
            spec["hyperParameterTuningJobConfig"][key] = value
    return manifest


def local_tune(manifest: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    return kubemaker(
        "local", "tune", "-f", str(manifest), "--workdir", str(workdir), timeout=SEARCH_TIMEOUT
    )


def read_search(workdir: Path, name: str = TUNING) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """tuning.json: the TuningJob, and its trials by number."""
    document = json.loads((workdir / name / "tuning.json").read_text())
    assert document["kind"] == "List"
    tuning, *trials = document["items"]
    assert tuning["kind"] == "TuningJob"
    assert all(t["kind"] == "TrainingJob" for t in trials)
    return tuning, trials


def tuned(trial: dict[str, Any], manifest: dict[str, Any]) -> dict[str, str]:
    ranges = manifest["spec"]["hyperParameterTuningJobConfig"]["parameterRanges"]
    names = {r["name"] for group in ranges.values() for r in group}
    return {k: v for k, v in trial["spec"]["hyperParameters"].items() if k in names}


def objective(trial: dict[str, Any]) -> float | None:
    for metric in trial["status"].get("finalMetricDataList") or ():
        if metric["metricName"] == "validation:auc":
            return float(metric["value"])
    return None


def series(trial: dict[str, Any]) -> list[tuple[int, float]]:
    for item in trial["status"].get("metricSeries") or ():
        if item["metricName"] == "validation:auc":
            return list(zip(item["steps"], item["values"], strict=True))
    return []


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def duration(trial: dict[str, Any]) -> float:
    """Seconds from the trial's start to its end."""
    end = parse_time(trial["status"]["trainingEndTime"])
    return (end - parse_time(trial["metadata"]["creationTimestamp"])).total_seconds()


def most_at_once(trials: list[dict[str, Any]]) -> int:
    """The most trials whose runs overlapped (from their creation to their end)."""
    edges = []
    for t in trials:
        edges.append((parse_time(t["metadata"]["creationTimestamp"]), 1))
        edges.append((parse_time(t["status"]["trainingEndTime"]), -1))
    running = peak = 0
    for _, change in sorted(edges):
        running += change
        peak = max(peak, running)
    return peak


# --- the bank search: 20 trials, 2 at a time -------------------------------------------------


class Search:
    def __init__(self, done: subprocess.CompletedProcess[str], workdir: Path, manifest: Any):
        self.done = done
        self.workdir = workdir
        self.manifest = manifest


@pytest.fixture(scope="module")
def bank_search(bank_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Search:
    tmp = tmp_path_factory.mktemp("tune")
    manifest = tune_manifest(bank_data, (tmp / "output").as_uri(), tuningJobCompletionCriteria=None)
    path = write_manifest(tmp / "tuningjob.yaml", manifest)
    return Search(local_tune(path, tmp / "work"), tmp / "work", manifest)


def test_the_bank_search_runs_20_trials_and_beats_the_fixed_hyperparameters(
    bank_search: Search, bank_data: Path, tmp_path: Path
) -> None:
    done = bank_search.done
    assert done.returncode == 0, output(done)
    assert "Traceback" not in done.stderr, output(done)
    assert f"TuningJob {TUNING}: Completed in" in done.stdout
    assert "all 20 training jobs of the budget have ended" in done.stdout

    tuning, trials = read_search(bank_search.workdir)
    status = tuning["status"]
    assert status["hyperParameterTuningJobStatus"] == "Completed"
    assert status["trainingJobStatusCounters"]["completed"] == 20
    assert [t["metadata"]["name"] for t in trials] == [f"{TUNING}-{i:03d}" for i in range(1, 21)]
    assert all(t["status"]["trainingJobStatus"] == "Completed" for t in trials)
    # Every trial ran as a local training job: its record, its model.
    for t in trials:
        job_dir = bank_search.workdir / TUNING / t["metadata"]["name"]
        record = json.loads((job_dir / "trainingjob.json").read_text())
        assert record["status"]["trainingJobStatus"] == "Completed"
        assert Path(record["status"]["modelArtifacts"]["s3ModelArtifacts"][7:]).is_file()
    # The live series: validation:auc at steps 1, 2, ... as XGBoost logged it each round.
    for t in trials:
        points = series(t)
        assert len(points) >= 10, t["metadata"]["name"]
        assert [s for s, _ in points] == list(range(1, len(points) + 1))
        assert all(0.5 < v <= 1.0 for _, v in points)
    # Different hyperparameters, within the ranges, two trials at a time.
    values = [tuned(t, bank_search.manifest) for t in trials]
    assert len({tuple(sorted(v.items())) for v in values}) == 20
    for v in values:
        assert 0.05 <= float(v["eta"]) <= 0.5
        assert 3 <= int(v["max_depth"]) <= 10
    assert most_at_once(trials) == 2

    objectives = {t["metadata"]["name"]: objective(t) for t in trials}
    best = status["bestTrainingJob"]
    best_value = best["finalHyperParameterTuningJobObjectiveMetric"]["value"]
    assert best_value == max(v for v in objectives.values() if v is not None)
    assert objectives[best["trainingJobName"]] == best_value
    assert f"Best: {best['trainingJobName']}: validation:auc {best_value:.6g}" in done.stdout

    # The example's fixed hyperparameters, trained the same way (local train, same data).
    fixed = bank_manifest(bank_data, (tmp_path / "output").as_uri())
    trained = local_train(write_manifest(tmp_path / "trainingjob.yaml", fixed), tmp_path / "work")
    assert trained.returncode == 0, output(trained)
    baseline = final_metrics(trained.stdout)["validation:auc"]

    durations = [duration(t) for t in trials]
    print(
        f"20 trials: median {statistics.median(durations):.1f} s each; best validation:auc "
        f"{best_value:.5f} ({best['trainingJobName']}), fixed hyperparameters {baseline:.5f}"
    )
    assert best_value > baseline, output(done)


def test_the_plot_of_the_bank_search(bank_search: Search, tmp_path: Path) -> None:
    out = tmp_path / "plot.png"
    done = kubemaker("tuning", "plot", "--dir", str(bank_search.workdir / TUNING), "-o", str(out))
    assert done.returncode == 0, output(done)
    assert f"wrote {out} (20 trials)" in done.stdout
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 20_000


def test_the_best_trial_serves_a_batch_transform_by_tuning_job_ref(
    bank_search: Search, bank_data: Path, tmp_path: Path
) -> None:
    """What an Endpoint or a BatchTransform gets from ``tuningJobRef`` on a cluster: the
    best trial's model, here from the local search's record."""
    body = yaml.safe_load((EXAMPLE / "batchtransform.yaml").read_text())
    body["spec"]["model"] = {"tuningJobRef": {"name": TUNING}}
    body["spec"]["transformInput"]["uri"] = (bank_data / "test").as_uri() + "/"
    body["spec"]["transformOutput"]["s3OutputPath"] = (tmp_path / "out").as_uri() + "/"
    path = write_manifest(tmp_path / "bt.yaml", body)
    done = kubemaker("local", "transform", "-f", str(path), "--workdir", str(bank_search.workdir))
    assert done.returncode == 0, output(done)
    best = json.loads((bank_search.workdir / TUNING / "tuning.json").read_text())["items"][0]
    name = best["status"]["bestTrainingJob"]["trainingJobName"]
    assert f"/{name}/output/model.tar.gz" in done.stderr, output(done)  # "fetching ..."
    rows = (bank_data / "test" / "test.csv").read_text().splitlines()
    assert len((tmp_path / "out" / "test.csv.out").read_text().splitlines()) == len(rows)


def test_the_same_seed_gives_the_same_first_trials(
    bank_search: Search, bank_data: Path, tmp_path: Path
) -> None:
    """Two trials of the same search (randomSeed 42) with 5 rounds, and of seed 7."""
    first: dict[int, list[dict[str, str]]] = {}
    for seed in (42, 7):
        manifest = tune_manifest(
            bank_data,
            (tmp_path / "output").as_uri(),
            name=f"seed-{seed}",
            randomSeed=seed,
            resourceLimits={"maxNumberOfTrainingJobs": 2, "maxParallelTrainingJobs": 2},
            static={"num_round": "5", "early_stopping_rounds": None},
        )
        done = local_tune(write_manifest(tmp_path / f"seed-{seed}.yaml", manifest), tmp_path)
        assert done.returncode == 0, output(done)
        _, trials = read_search(tmp_path, f"seed-{seed}")
        assert [len(series(t)) for t in trials] == [5, 5]
        first[seed] = [tuned(t, manifest) for t in trials]

    _, trials = read_search(bank_search.workdir)
    assert first[42] == [tuned(t, bank_search.manifest) for t in trials[:2]]
    assert first[7] != first[42]


# --- warm start ------------------------------------------------------------------------------


def test_a_warm_start_from_the_bank_search(
    bank_search: Search, bank_data: Path, tmp_path: Path
) -> None:
    """tuningjob-warm-start.yaml, two trials, in the workdir of the 20-trial search."""
    manifest = tune_manifest(
        bank_data,
        (tmp_path / "output").as_uri(),
        example="tuningjob-warm-start.yaml",
        resourceLimits={"maxNumberOfTrainingJobs": 2, "maxParallelTrainingJobs": 2},
    )
    path = write_manifest(tmp_path / "warm-start.yaml", manifest)
    done = local_tune(path, bank_search.workdir)
    assert done.returncode == 0, output(done)
    tuning, trials = read_search(bank_search.workdir, "xgboost-bank-tune-more")
    assert [t["status"]["trainingJobStatus"] for t in trials] == ["Completed", "Completed"]
    assert all(0.05 <= float(tuned(t, manifest)["eta"]) <= 0.3 for t in trials)
    parent, _ = read_search(bank_search.workdir)
    parent_best = parent["status"]["bestTrainingJob"]
    overall = tuning["status"]["overallBestTrainingJob"]
    value = overall["finalHyperParameterTuningJobObjectiveMetric"]["value"]
    assert value >= parent_best["finalHyperParameterTuningJobObjectiveMetric"]["value"]
    assert overall["trainingJobName"].startswith("xgboost-bank-tune-")

    # Without the parent's local run in the workdir: refused, naming the parent.
    done = local_tune(path, tmp_path / "elsewhere")
    assert done.returncode == 2, output(done)
    assert (
        "spec.warmStartConfig.parentHyperParameterTuningJobs[0]: no local tune of "
        "'xgboost-bank-tune'"
    ) in done.stderr
    assert not (tmp_path / "elsewhere").exists()


# --- Hyperband ------------------------------------------------------------------------------


def test_hyperband_stops_trials_early(bank_data: Path, tmp_path: Path) -> None:
    """150 rounds without early stopping; Hyperband judges trials at steps 3, 9, 27, 81."""
    rounds = 150
    manifest = tune_manifest(
        bank_data,
        (tmp_path / "output").as_uri(),
        name="bank-hyperband",
        strategy="Hyperband",
        strategyConfig={"hyperbandStrategyConfig": {"minResource": 3, "maxResource": rounds}},
        resourceLimits={"maxNumberOfTrainingJobs": 12, "maxParallelTrainingJobs": 2},
        tuningJobCompletionCriteria=None,
        static={"num_round": str(rounds), "early_stopping_rounds": None},
    )
    done = local_tune(write_manifest(tmp_path / "hyperband.yaml", manifest), tmp_path / "work")
    assert done.returncode == 0, output(done)

    tuning, trials = read_search(tmp_path / "work", "bank-hyperband")
    assert tuning["status"]["hyperParameterTuningJobStatus"] == "Completed"
    assert len(trials) == 12
    early = [
        t for t in trials if "kubemaker.io/stopped-early" in t["metadata"].get("annotations", {})
    ]
    completed = [t for t in trials if t["status"]["trainingJobStatus"] == "Completed"]
    assert early, output(done)
    assert completed, output(done)
    assert tuning["status"]["trainingJobStatusCounters"]["stopped"] == len(early)
    for t in early:
        name = t["metadata"]["name"]
        assert t["status"]["trainingJobStatus"] == "Stopped", name
        assert f"{name}: stopping early: " in done.stderr
        assert f"{name}  Stopped" in done.stdout  # the table marks it
        record = json.loads(
            (tmp_path / "work" / "bank-hyperband" / name / "trainingjob.json").read_text()
        )
        assert record["status"]["trainingJobStatus"] == "Stopped"
    # The stopped ones consumed fewer rounds than the completed ones. A trial may log a
    # few more values between the decision and the stop, so it is the decision's step
    # that is below the end, and the rounds on average.
    assert all(len(series(t)) == rounds for t in completed)
    for t in early:
        reason = t["metadata"]["annotations"]["kubemaker.io/stopped-early"]
        step = int(reason.removeprefix("Hyperband stopped it at step ").split()[0])
        assert step < rounds, reason
    assert sum(len(series(t)) for t in early) / len(early) < rounds
    print(
        f"Hyperband: {len(early)} of 12 stopped early after "
        f"{sorted(len(series(t)) for t in early)} of {rounds} rounds"
    )


# --- Ctrl-C and errors -----------------------------------------------------------------------


def test_ctrl_c_stops_every_trial_and_the_search(bank_data: Path, tmp_path: Path) -> None:
    manifest = tune_manifest(
        bank_data,
        (tmp_path / "output").as_uri(),
        static={"num_round": "100000", "eta": "0.001", "early_stopping_rounds": None},
        parameterRanges={"integerParameterRanges": [{"name": "max_depth", "minValue": 3,
                                                     "maxValue": 10}]},
    )  # fmt: skip
    path = write_manifest(tmp_path / "long.yaml", manifest)
    log = tmp_path / "tune.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "kubemaker", "local", "tune", "-f", str(path),
             "--workdir", str(tmp_path / "work")],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    record = tmp_path / "work" / TUNING / "tuning.json"

    def both_training() -> bool:
        if not record.is_file():
            return False
        _, trials = read_search(tmp_path / "work")
        return len(trials) == 2 and all(len(series(t)) >= 3 for t in trials)

    try:
        wait_for(both_training, 120, "two trials training", process)
        process.send_signal(signal.SIGINT)
        code = process.wait(120)
    finally:
        stop(process)
    text = log.read_text()
    assert code == 130, text
    assert "kubemaker: stopping the search" in text
    assert f"TuningJob {TUNING}: Stopped in" in text
    tuning, trials = read_search(tmp_path / "work")
    assert tuning["status"]["hyperParameterTuningJobStatus"] == "Stopped"
    assert len(trials) == 2
    for t in trials:
        assert t["status"]["trainingJobStatus"] == "Stopped"
        assert "kubemaker.io/stopped-early" not in t["metadata"].get("annotations", {})
        assert (
            "SIGTERM: stopping after the current round"
            in (tmp_path / "work" / TUNING / f"{t['metadata']['name']}.log").read_text()
        )


def test_a_training_job_manifest_is_refused(tmp_path: Path) -> None:
    done = kubemaker("local", "tune", "-f", str(EXAMPLE / "trainingjob.yaml"),
                     "--workdir", str(tmp_path))  # fmt: skip
    assert done.returncode == 2, output(done)
    assert "no TuningJob in it (found kind TrainingJob)" in done.stderr
    assert "Traceback" not in done.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"resourceLimits": {"maxNumberOfTrainingJobs": 2, "maxParallelTrainingJobs": 3}},
            "spec.hyperParameterTuningJobConfig.resourceLimits: Value error, "
            "maxParallelTrainingJobs must be <= maxNumberOfTrainingJobs",
        ),
        (
            {"hyperParameterTuningJobObjective": {"type": "Maximize", "metricName": "test:f1"}},
            "ClientError: spec.hyperParameterTuningJobConfig.hyperParameterTuningJobObjective"
            ".metricName: no metric definition produces 'test:f1'",
        ),
        (
            {"parameterRanges": {"continuousParameterRanges": [
                {"name": "eta", "minValue": 0.1, "maxValue": 3}]}},
            "ClientError: spec.hyperParameterTuningJobConfig.parameterRanges"
            ".continuousParameterRanges[0]: eta range [0.1, 3] is outside what xgboost accepts",
        ),
    ],
)  # fmt: skip
def test_a_bad_spec_is_refused_naming_the_field(
    change: dict[str, Any], message: str, bank_data: Path, tmp_path: Path
) -> None:
    manifest = tune_manifest(bank_data, (tmp_path / "output").as_uri(), **change)
    done = local_tune(write_manifest(tmp_path / "bad.yaml", manifest), tmp_path / "work")
    assert done.returncode == 2, output(done)
    assert message in done.stderr, output(done)
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "work").exists()


def test_a_channel_this_machine_cannot_read_is_refused(bank_data: Path, tmp_path: Path) -> None:
    manifest = tune_manifest(bank_data, (tmp_path / "output").as_uri())
    manifest["spec"]["trainingJobDefinition"]["inputDataConfig"][0]["uri"] = "pvc://data/train"
    done = local_tune(write_manifest(tmp_path / "pvc.yaml", manifest), tmp_path / "work")
    assert done.returncode == 2, output(done)
    assert "spec.trainingJobDefinition.inputDataConfig.0: pvc://data/train" in done.stderr
    assert "Traceback" not in done.stderr
