"""Benchmark: ``kubemaker local tune`` of the bank example against the same search run
in one process.

The search is examples/xgboost-bank/tuningjob.yaml (XGBoost, Bayesian, randomSeed 42,
2 trials at a time) over the data of its prepare.py, written into a temporary
directory, with its completion criterion removed so that the whole budget runs
(``--trials``, default 20, as the example; ``--parallel``, default 2).

- **local tune**: ``python -m kubemaker local tune -f <that manifest>`` with a workdir of
  its own: every trial is a ``kubemaker local train`` process running the built-in
  XGBoost algorithm, driven by the operator's planner. Per trial: its duration from
  tuning.json (the trial's creationTimestamp, when local tune started its process, to
  its trainingEndTime, from its trainingjob.json) and its validation:auc.
- **in-process**: the same search in this process. The hyperparameters come from the
  very ``suggest()`` calls the planner makes (kubemaker.planners.tuning_search, with the
  config, the seed and the trials so far), one call per free slot as trials end, and
  each trial is ``xgboost.train`` on the same CSV files, read once with the built-in's
  own CSV reader (label in the first column) into one pair of DMatrix per slot: the
  params the built-in builds from the trial's hyperparameters (static + tuned, the
  thread count that local tune's trials logged), ``num_round`` rounds, early stopping
  after ``early_stopping_rounds`` on the validation channel, both channels evaluated
  every round, the model cut at its best round and its validation AUC evaluated, as
  the built-in does. The trials run in ``--parallel`` threads (XGBoost releases the
  GIL): the same concurrency on the same cores as local tune's trials, and the planner's
  view of the search (which trials are running when the next ones are suggested).
  Per trial: the seconds its thread spent on it.

Same seed, so the first trials get the same hyperparameters on both sides (and then
the same AUC: a check that the in-process side trains what the built-in trains). TPE
adapts to the results and to which trials are still running when it is asked, so the
later trials may differ: the searches are compared by their best AUC.

Printed: each trial of both sides, then N, the wall time of each side (local tune: the
whole command; in-process: the search, after the data is loaded), the median seconds
per trial of each side, the per-trial overhead (median local tune - median in-process)
and the wall-time ratio, and the best validation:auc of each side and their
difference. Targets (the project's choice):

- per-trial overhead (difference of the medians) <= 5 s
- best validation:auc of local tune >= the in-process search's - 0.01

Exit code 0 when both are met, 1 when one is missed, 2 when the benchmark could not
run.

    .venv/bin/python benchmarks/local_tune.py [--trials 20] [--parallel 2] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import xgboost as xgb
import yaml

from kubemaker.api import TuningJob
from kubemaker.builders import tuning as tb
from kubemaker.local.manifest import parse_resource
from kubemaker.planners import tuning_search as search
from kubemaker_runtime import processors
from kubemaker_runtime.algorithms.xgboost import data
from kubemaker_runtime.algorithms.xgboost import hyperparameters as hp
from kubemaker_runtime.algorithms.xgboost.metrics import parse_eval_line
from kubemaker_runtime.algorithms.xgboost.train import build_params

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "xgboost-bank"
METRIC = "validation:auc"
TARGET_OVERHEAD_SECONDS = 5.0
TARGET_AUC_MARGIN = 0.01
SEARCH_TIMEOUT = 1800
PARAMS_LINE = re.compile(r"training \d+ rounds(?: \([^)]*\))? with (\{.*\})")


@dataclass
class Result:
    """One trial of either side."""

    index: int
    tuned: dict[str, str]
    seconds: float
    auc: float | None


def manifest_for(data_dir: Path, output: Path, trials: int, parallel: int) -> dict[str, Any]:
    """The example's TuningJob over ``data_dir``, every trial of the budget run."""
    manifest: dict[str, Any] = yaml.safe_load((EXAMPLE / "tuningjob.yaml").read_text())
    spec = manifest["spec"]
    config = spec["hyperParameterTuningJobConfig"]
    config.pop("tuningJobCompletionCriteria", None)
    config["resourceLimits"] = {
        "maxNumberOfTrainingJobs": trials,
        "maxParallelTrainingJobs": parallel,
    }
    definition = spec["trainingJobDefinition"]
    for channel in definition["inputDataConfig"]:
        channel["uri"] = (data_dir / channel["channelName"]).as_uri()
    definition["outputDataConfig"]["s3OutputPath"] = output.as_uri()
    return manifest


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def final_auc(status: dict[str, Any]) -> float | None:
    for item in status.get("finalMetricDataList") or ():
        if item.get("metricName") == METRIC:
            return float(item["value"])
    return None


# --- local tune ----------------------------------------------------------------------------


def run_local_tune(
    manifest: Path, workdir: Path, name: str, tuned_names: set[str], log: Path
) -> tuple[float, list[Result], dict[str, Any]]:
    """Wall seconds, the trials, and the params the first trial's algorithm trained with."""
    started = time.perf_counter()
    with log.open("wb") as out:
        done = subprocess.run(
            [sys.executable, "-m", "kubemaker", "local", "tune", "-f", str(manifest),
             "--workdir", str(workdir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=SEARCH_TIMEOUT,
            check=False,
        )  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise RuntimeError(f"local tune exited {done.returncode}:\n" + "\n".join(tail))
    items = json.loads((workdir / name / "tuning.json").read_text())["items"]
    results = []
    for trial in items[1:]:
        trial_name = trial["metadata"]["name"]
        status = trial["status"]
        if status.get("trainingJobStatus") != "Completed":
            raise RuntimeError(f"{trial_name} ended {status.get('trainingJobStatus')}")
        created = parse_time(trial["metadata"]["creationTimestamp"])
        ended = parse_time(status["trainingEndTime"])
        values = trial["spec"]["hyperParameters"]
        index = tb.trial_index(name, trial_name)
        assert index is not None
        results.append(
            Result(
                index=index,
                tuned={k: str(v) for k, v in values.items() if k in tuned_names},
                seconds=(ended - created).total_seconds(),
                auc=final_auc(status),
            )
        )
    first = workdir / name / f"{tb.trial_name(name, 0)}.log"
    match = PARAMS_LINE.search(first.read_text(errors="replace"))
    params = json.loads(match.group(1)) if match else {}
    return wall, sorted(results, key=lambda r: r.index), params


# --- in-process ----------------------------------------------------------------------------


def load(channel_dir: Path) -> data.Dataset:
    """A CSV channel as the built-in reads it (label first, no header)."""
    blobs = [p.read_bytes() for p in sorted(channel_dir.iterdir()) if p.is_file()]
    return data.read_blobs(blobs, data.CSV)


class InProcess:
    """The search with ``suggest()`` and ``xgboost.train``, ``parallel`` trials at a time."""

    def __init__(self, job: TuningJob, data_dir: Path, parallel: int, nthread: int) -> None:
        spec = job.spec
        self.config = spec.hyper_parameter_tuning_job_config
        self.budget = self.config.resource_limits.max_number_of_training_jobs
        self.parallel = parallel
        # As the planner: its seed (randomSeed here), its space (one definition).
        assert self.config.random_seed is not None
        self.seed = self.config.random_seed
        self.space = search.Space.of({d.name: d.ranges for d in tb.definitions(spec)})
        assert spec.training_job_definition is not None
        self.static = dict(spec.training_job_definition.static_hyper_parameters or {})
        self.nthread = nthread
        train, validation = load(data_dir / "train"), load(data_dir / "validation")
        # One pair per slot: two boosters never share a DMatrix (its caches).
        self.slots: queue.Queue[tuple[xgb.DMatrix, xgb.DMatrix]] = queue.Queue()
        for _ in range(parallel):
            self.slots.put(
                (
                    xgb.DMatrix(train.features, label=train.labels),
                    xgb.DMatrix(validation.features, label=validation.labels),
                )
            )

    def train(self, index: int, tuned: dict[str, str]) -> tuple[Result, search.Trial]:
        dtrain, dvalidation = self.slots.get()
        try:
            started = time.perf_counter()
            values = hp.validate({**self.static, **tuned})
            params, _ = build_params(values, gpu=False, cpus=self.nthread)
            evals = [(dtrain, data.TRAIN_CHANNEL), (dvalidation, data.VALIDATION_CHANNEL)]
            callbacks: list[xgb.callback.TrainingCallback] = []
            rounds = values.get("early_stopping_rounds")
            if rounds:
                callbacks.append(
                    xgb.callback.EarlyStopping(
                        rounds=int(rounds), data_name=data.VALIDATION_CHANNEL, save_best=False
                    )
                )
            history: dict[str, Any] = {}
            booster = xgb.train(
                params,
                dtrain,
                num_boost_round=int(values["num_round"]),
                evals=evals,
                callbacks=callbacks,
                evals_result=history,
                verbose_eval=False,
            )
            if rounds and booster.attr("best_iteration") is not None:
                best = int(booster.attr("best_iteration") or 0)
                if best + 1 < booster.num_boosted_rounds():
                    booster = booster[: best + 1]
            auc = parse_eval_line(booster.eval_set(evals)).get(METRIC)
            seconds = time.perf_counter() - started
        finally:
            self.slots.put((dtrain, dvalidation))
        series = [float(v) for v in history.get(data.VALIDATION_CHANNEL, {}).get("auc", [])]
        done = search.Trial(
            index=index,
            hyperparameters=tuned,
            state="completed" if auc is not None else "failed",
            objective=auc,
            intermediate=tuple(enumerate(series, start=1)),
        )
        return Result(index, tuned, seconds, auc), done

    def run(self) -> tuple[float, list[Result]]:
        """Wall seconds and the trials: the planner's loop, with threads for processes."""
        trials: dict[int, search.Trial] = {}
        results: list[Result] = []
        running: dict[Future[tuple[Result, search.Trial]], int] = {}
        started = time.perf_counter()
        with ThreadPoolExecutor(self.parallel, thread_name_prefix="trial") as pool:
            while len(trials) < self.budget or running:
                count = min(self.parallel - len(running), self.budget - len(trials))
                if count > 0:
                    known = [trials[i] for i in sorted(trials)]
                    first = len(trials)
                    for offset, tuned in enumerate(
                        search.suggest(self.config, known, count, seed=self.seed, space=self.space)
                    ):
                        index = first + offset
                        trials[index] = search.Trial(index, tuned, "running")
                        running[pool.submit(self.train, index, tuned)] = index
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    index = running.pop(future)
                    result, trials[index] = future.result()
                    results.append(result)
        return time.perf_counter() - started, sorted(results, key=lambda r: r.index)


# --- report --------------------------------------------------------------------------------


def best_auc(results: list[Result]) -> float:
    return max(r.auc for r in results if r.auc is not None)


def short(tuned: dict[str, str]) -> str:
    def number(text: str) -> str:
        value = float(text)
        return text if value.is_integer() and "." not in text else f"{value:.3g}"

    return " ".join(f"{k}={number(v)}" for k, v in sorted(tuned.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="the search's budget")
    parser.add_argument("--parallel", type=int, default=2, help="trials at a time")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if args.trials < 1 or args.parallel < 1:
        parser.error("--trials and --parallel must be at least 1")

    workdir = Path(tempfile.mkdtemp(prefix="kubemaker-bench-tune-"))
    try:
        data_dir = workdir / "data"
        prepared = subprocess.run(
            [sys.executable, str(EXAMPLE / "prepare.py"), "--out", str(data_dir)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if prepared.returncode != 0:
            print(f"prepare.py failed:\n{prepared.stdout}{prepared.stderr}", file=sys.stderr)
            return 2
        body = manifest_for(data_dir, workdir / "output", args.trials, args.parallel)
        manifest = workdir / "tuningjob.yaml"
        manifest.write_text(yaml.safe_dump(body, sort_keys=False))
        job = parse_resource(body, TuningJob, str(manifest))
        name = job.metadata.name
        tuned_names = {n for d in tb.definitions(job.spec) for n in d.ranges.names()}
        print(
            f"search: {EXAMPLE.name}/tuningjob.yaml without its completion criterion, "
            f"{args.trials} trials, {args.parallel} at a time, seed "
            f"{job.spec.hyper_parameter_tuning_job_config.random_seed}; cores: {os.cpu_count()}",
            flush=True,
        )

        print("local tune ...", flush=True)
        try:
            wall_a, side_a, params_a = run_local_tune(
                manifest, workdir / "work", name, tuned_names, workdir / "local-tune.log"
            )
        except (RuntimeError, OSError, ValueError, KeyError, subprocess.TimeoutExpired) as exc:
            print(f"local tune did not complete: {exc}", file=sys.stderr)
            return 2
        nthread = int(params_a.get("nthread") or processors.algorithm_cpus())
        print(f"in-process ({args.parallel} threads, nthread {nthread}) ...", flush=True)
        loading = time.perf_counter()
        in_process = InProcess(job, data_dir, args.parallel, nthread)
        loading = time.perf_counter() - loading
        wall_b, side_b = in_process.run()
    finally:
        if args.keep:
            print(f"kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    if len(side_a) != args.trials or len(side_b) != args.trials:
        print(f"trials: local tune {len(side_a)}, in-process {len(side_b)}", file=sys.stderr)
        return 2
    same = [a.tuned == b.tuned for a, b in zip(side_a, side_b, strict=True)]
    leading = next((i for i, s in enumerate(same) if not s), len(same))
    print(f"\n{'':3} {'local tune':>20}  {'in-process':>20}")
    print(f"{'#':>3} {'s':>7} {'AUC':>12}  {'s':>7} {'AUC':>12}  hyperparameters")
    for a, b, identical in zip(side_a, side_b, same, strict=True):
        shown = "same" if identical else f"local: {short(a.tuned)} | in-process: {short(b.tuned)}"
        print(
            f"{a.index + 1:3} {a.seconds:7.2f} {a.auc or float('nan'):12.6f}  "
            f"{b.seconds:7.2f} {b.auc or float('nan'):12.6f}  {shown}"
        )
    pairs = [
        abs(a.auc - b.auc)
        for a, b, identical in zip(side_a, side_b, same, strict=True)
        if identical and a.auc is not None and b.auc is not None
    ]
    median_a = statistics.median(r.seconds for r in side_a)
    median_b = statistics.median(r.seconds for r in side_b)
    best_a, best_b = best_auc(side_a), best_auc(side_b)
    overhead = median_a - median_b
    print(
        f"\nsame hyperparameters: {sum(same)} of {args.trials} trials (the first {leading}); "
        + (f"largest AUC difference on those: {max(pairs):.2g}" if pairs else "")
    )
    print(
        f"in-process: data read once in {loading:.2f} s (not in its wall time); "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"\n{'':34} {'local tune':>12} {'in-process':>12}")
    print(f"{'trials':34} {len(side_a):12d} {len(side_b):12d}")
    print(f"{'wall seconds':34} {wall_a:12.1f} {wall_b:12.1f}")
    print(f"{'median seconds per trial':34} {median_a:12.2f} {median_b:12.2f}")
    print(f"{'best ' + METRIC:34} {best_a:12.6f} {best_b:12.6f}")
    print(f"\nwall ratio (local tune / in-process): {wall_a / wall_b:.1f}x")
    print(f"best {METRIC} difference (local tune - in-process): {best_a - best_b:+.6f}")
    print()
    checks = [
        (
            "per-trial overhead (median A - median B, s)",
            f"{overhead:.2f}",
            overhead <= TARGET_OVERHEAD_SECONDS,
            f"<= {TARGET_OVERHEAD_SECONDS:g}",
        ),
        (
            f"best {METRIC}, local tune - in-process",
            f"{best_a - best_b:+.4f}",
            best_a >= best_b - TARGET_AUC_MARGIN,
            f">= -{TARGET_AUC_MARGIN:g}",
        ),
    ]
    failed = False
    for label, shown, met, goal in checks:
        failed |= not met
        print(f"{label:46} {shown:>7}  target {goal:>6}  {'met' if met else 'MISSED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
