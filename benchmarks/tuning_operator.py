#!/usr/bin/env python3
"""Run M TuningJobs of N trials at once and time the operator: from a trial's end to the
next trial's creation, and its memory.

    .venv/bin/python benchmarks/tuning_operator.py            # 20 TuningJobs x 50 trials
    .venv/bin/python benchmarks/tuning_operator.py --tuning-jobs 2 --trials 6 --parallel 3

Starts (or reuses) the local control plane of tests/cluster/localcluster.py, installs
the chart (ServiceAccount, RBAC, config) and runs a fresh operator (``python -m
kubemaker operator``, as in the cluster tests: the chart's ServiceAccount, one new
namespace). M TuningJobs (Random strategy, seeded) are created at once, each with a
budget of N trials, ``--parallel`` at a time. Every trial is a TrainingJob whose pod
KWOK plays (tests/cluster/kwok/stages/pod.yaml): it runs ``--duration`` and its agent
reports the objective, so the trial completes and the search goes on.

A watch on the namespace's trials (TrainingJobs labelled ``kubemaker.io/tuning-job``)
notes, with ``time.monotonic()`` as the watch delivers it, each trial's ADDED event and
its first terminal ``status.trainingJobStatus`` (Completed, Failed, Stopped). Per
TuningJob, each trial created after the first ``--parallel`` is paired with the latest
end of a trial of the same TuningJob before it: that is the **gap** "end -> next
creation" (both seen through the same watch, so the watch's own delay cancels out).
The **slot gap** pairs the (parallel+k)-th creation with the k-th end instead (the end
that freed its slot): never shorter than the gap, it also counts a creation that a busy
reconcile held back while another trial ended. Also reported: the wall time until all
M TuningJobs are Completed, the trials created (exactly M x N, none twice, none
deleted), the most trials of one TuningJob running at once (at most ``--parallel``),
each trial's time from creation to end, and the operator's peak (VmHWM of
/proc/<pid>/status) and final resident memory; for diagnosis, its reconciles and API
requests from its /metrics (on KWOK every ``pods/log`` read of the trials' metrics
fails with a 500: no kubelet) and the warnings and errors of its log.

Targets (the project's choice): p99 gap at most 5 s, peak RSS at most 250 MB (as for
benchmarks/apply_trainingjobs.py); every TuningJob Completed with exactly N distinct
trials. Exit code 0 when all are met, 1 when one is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "cluster"))

import localcluster  # noqa: E402
from operator_harness import BUCKET, GROUP, KWOK, VERSION, OperatorProcess, installed_chart  # noqa: E402

TARGET_P99_GAP_SECONDS = 5.0
TARGET_RSS_MB = 250.0
LABEL_TUNING_JOB = "kubemaker.io/tuning-job"
TERMINAL = frozenset({"Completed", "Failed", "Stopped"})
OBJECTIVE = "validation:auc"


def tuning_job(
    name: str, *, trials: int, parallel: int, duration: str, seed: int
) -> dict[str, Any]:
    """A Random search whose trials KWOK plays: ``duration``, then the agent's report."""
    report = {
        "version": 2,
        "outcome": "Completed",
        "modelArtifacts": f"{BUCKET}/models/trial/output/model.tar.gz",
        "finalMetrics": {OBJECTIVE: 0.9},
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TuningJob",
        "metadata": {"name": name},
        "spec": {
            "hyperParameterTuningJobConfig": {
                "strategy": "Random",
                "randomSeed": seed,
                "hyperParameterTuningJobObjective": {"type": "Maximize", "metricName": OBJECTIVE},
                "resourceLimits": {
                    "maxNumberOfTrainingJobs": trials,
                    "maxParallelTrainingJobs": parallel,
                },
                "parameterRanges": {
                    "continuousParameterRanges": [
                        {"name": "eta", "minValue": 0.1, "maxValue": 0.5}
                    ],
                    "integerParameterRanges": [{"name": "max_depth", "minValue": 3, "maxValue": 9}],
                },
            },
            "trainingJobDefinition": {
                "algorithmSpecification": {"algorithmName": "xgboost"},
                "staticHyperParameters": {"num_round": "10", "objective": "binary:logistic"},
                "inputDataConfig": [{"channelName": "train", "uri": f"{BUCKET}/data/train"}],
                "outputDataConfig": {"s3OutputPath": f"{BUCKET}/models"},
                "resourceConfig": {"instanceType": "ml.m5.large", "instanceCount": 1},
                "podOverrides": {
                    "annotations": {
                        KWOK + "duration": duration,
                        KWOK + "agent-report": json.dumps(report),
                    }
                },
            },
        },
    }


@dataclass
class Trials:
    """What the watch saw of the trials, with time.monotonic() at delivery."""

    added: dict[str, float] = field(default_factory=dict)  # trial -> first ADDED
    owner: dict[str, str] = field(default_factory=dict)  # trial -> its TuningJob
    ended: dict[str, float] = field(default_factory=dict)  # trial -> first terminal status
    outcome: dict[str, str] = field(default_factory=dict)  # trial -> that status
    added_again: Counter[str] = field(default_factory=Counter)  # ADDED more than once
    deleted: Counter[str] = field(default_factory=Counter)
    resyncs: int = 0  # watches restarted by a relist (410 Gone): times there are late
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, kind: str, obj: dict[str, Any], now: float) -> None:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name"))
        owner = (meta.get("labels") or {}).get(LABEL_TUNING_JOB)
        state = (obj.get("status") or {}).get("trainingJobStatus")
        with self.lock:
            if kind == "DELETED":
                self.deleted[name] += 1
                return
            if name not in self.added:
                self.added[name] = now
                self.owner[name] = str(owner)
            elif kind == "ADDED":
                self.added_again[name] += 1
            if state in TERMINAL and name not in self.ended:
                self.ended[name] = now
                self.outcome[name] = str(state)


@dataclass
class Result:
    tuning_jobs: int
    trials: int
    parallel: int
    duration: str
    wall_seconds: float | None  # all TuningJobs Completed (None: not within the timeout)
    completed: int  # TuningJobs Completed
    states: Counter[str]  # TuningJobs by their last status
    created: int  # distinct trials seen
    expected_names: bool  # exactly {tj}-001..{tj}-N for every TuningJob
    added_again: int
    deleted: int
    outcomes: Counter[str]
    gaps: list[float]
    slot_gaps: list[float]
    no_end_before: int  # creations past the first `parallel` with no end before them
    most_running: int
    first_trial: list[float]  # TuningJob created -> its first trial
    lifetimes: list[float]  # a trial's ADDED -> its end
    resyncs: int
    baseline_rss_mb: float
    peak_rss_mb: float
    final_rss_mb: float
    operator_metrics: dict[str, float]
    log_warnings: int
    log_errors: int

    @property
    def p99_gap(self) -> float:
        return percentile(self.gaps, 99) if self.gaps else math.inf

    def met(self) -> bool:
        return (
            self.wall_seconds is not None
            and self.completed == self.tuning_jobs
            and self.created == self.tuning_jobs * self.trials
            and self.expected_names
            and not self.added_again
            and not self.deleted
            and self.most_running <= self.parallel
            and self.p99_gap <= TARGET_P99_GAP_SECONDS
            and self.peak_rss_mb <= TARGET_RSS_MB
        )


def percentile(values: list[float], p: float) -> float:
    """Nearest rank: the smallest value with at least p % of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def pair(trials: Trials, parallel: int) -> tuple[list[float], list[float], int, int]:
    """(gaps, slot gaps, creations with no end before them, most trials running at once)."""
    gaps: list[float] = []
    slot_gaps: list[float] = []
    no_end = most = 0
    by_owner: dict[str, list[str]] = defaultdict(list)
    for name, owner in trials.owner.items():
        by_owner[owner].append(name)
    for names in by_owner.values():
        creations = sorted(trials.added[n] for n in names)
        ends = sorted(trials.ended[n] for n in names if n in trials.ended)
        for i, created in enumerate(creations):
            if i < parallel:
                continue
            before = [e for e in ends if e <= created]
            if before:
                gaps.append(created - before[-1])
            else:
                no_end += 1
            k = i - parallel
            if k < len(ends):
                slot_gaps.append(created - ends[k])
        # A trial runs from its ADDED to its end; an end sorts before a creation at the
        # same instant (a slot freed, then filled).
        timeline = sorted([(t, 1) for t in creations] + [(t, -1) for t in ends])
        running = 0
        for _, step in timeline:
            running += step
            most = max(most, running)
    return gaps, slot_gaps, no_end, most


def operator_metrics(operator: OperatorProcess) -> dict[str, float]:
    """A few of the operator's own counters (/metrics), for the report."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, float] = defaultdict(float)
    try:
        text = operator.metrics()
    except OSError:
        return {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            kind = s.labels.get("kind", "")
            if s.name == "kubemaker_reconciles_total":
                found[f"reconciles {kind}"] += s.value
            elif s.name == "kubemaker_reconcile_errors_total":
                found[f"reconcile errors {kind}"] += s.value
            elif s.name == "kubemaker_reconcile_duration_seconds_sum":
                found[f"reconcile seconds {kind}"] += s.value
            elif s.name == "kubemaker_api_requests_total":
                found[f"api {s.labels.get('verb')} {s.labels.get('code')}"] += s.value
    return dict(found)


def run(args: argparse.Namespace, *, api: Any, chart: Any) -> Result:
    from kubernetes import client, watch

    namespace = f"bench-tuning-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    operator = OperatorProcess(
        chart.operator_kubeconfig,
        config_file=chart.config_file,
        namespaces=[namespace],
        workers=args.workers,
    )
    trials = Trials()
    stop_watch = threading.Event()
    names = [f"tune-{i:02d}" for i in range(args.tuning_jobs)]
    log_kept = False
    try:
        operator.start()
        time.sleep(2.0)  # let the operator's watches settle before the baseline
        baseline_rss, _ = operator.memory()

        def watch_trials() -> None:
            # From "now": every trial arrives as ADDED, each status change as MODIFIED.
            listing: Any = custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, "trainingjobs", limit=1
            )
            version = listing["metadata"]["resourceVersion"]
            while not stop_watch.is_set():
                w = watch.Watch()
                try:
                    for event in w.stream(
                        custom.list_namespaced_custom_object,
                        GROUP,
                        VERSION,
                        namespace,
                        "trainingjobs",
                        label_selector=LABEL_TUNING_JOB,
                        resource_version=version,
                        allow_watch_bookmarks=True,
                        timeout_seconds=30,
                        _request_timeout=60,
                    ):
                        now = time.monotonic()
                        obj = event["object"]
                        version = obj["metadata"]["resourceVersion"]
                        if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                            trials.note(event["type"], obj, now)
                        if stop_watch.is_set():
                            w.stop()
                            break
                except client.exceptions.ApiException as exc:
                    if exc.status != 410:
                        raise
                    # Too old to resume: relist, noting what is new as of now (late).
                    listing = custom.list_namespaced_custom_object(
                        GROUP, VERSION, namespace, "trainingjobs", label_selector=LABEL_TUNING_JOB
                    )
                    now = time.monotonic()
                    with trials.lock:
                        trials.resyncs += 1
                    for obj in listing["items"]:
                        trials.note("MODIFIED", obj, now)
                    version = listing["metadata"]["resourceVersion"]

        watch_error: list[BaseException] = []

        def watch_guarded() -> None:
            try:
                watch_trials()
            except BaseException as exc:  # reported by the main thread
                watch_error.append(exc)

        watcher = threading.Thread(target=watch_guarded, daemon=True)
        watcher.start()
        time.sleep(0.5)  # let the watch connect before the first trial can appear

        created_at: dict[str, float] = {}

        def create(i: int) -> None:
            body = tuning_job(
                names[i],
                trials=args.trials,
                parallel=args.parallel,
                duration=args.duration,
                seed=args.seed + i,
            )
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "tuningjobs", body)
            created_at[names[i]] = time.monotonic()

        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=min(16, args.tuning_jobs)) as pool:
            list(pool.map(create, range(args.tuning_jobs)))
        states: Counter[str] = Counter()
        wall = None
        deadline = start + args.timeout
        last_progress = start
        while time.monotonic() < deadline:
            if watch_error:
                raise RuntimeError("the watch of the trials failed") from watch_error[0]
            listed: Any = custom.list_namespaced_custom_object(
                GROUP, VERSION, namespace, "tuningjobs"
            )
            items = listed["items"]
            states = Counter(
                str((i.get("status") or {}).get("hyperParameterTuningJobStatus")) for i in items
            )
            now = time.monotonic()
            if states["Completed"] >= args.tuning_jobs:
                wall = now - start
                break
            if sum(states[s] for s in ("Failed", "Stopped")):
                break  # one will never complete: report what there is
            if now - last_progress >= 15:
                last_progress = now
                rss, _ = operator.memory()
                with trials.lock:
                    seen, ended = len(trials.added), len(trials.ended)
                print(
                    f"[bench] {now - start:6.0f}s: trials {seen} created, {ended} ended; "
                    f"TuningJobs {dict(states)}; RSS {rss / 2**20:.0f} MB",
                    file=sys.stderr,
                    flush=True,
                )
            time.sleep(1.0)
        time.sleep(1.0)  # the last events of the watch
        rss, hwm = operator.memory()
        found = operator_metrics(operator)
        stop_watch.set()
        with trials.lock:
            gaps, slot_gaps, no_end, most = pair(trials, args.parallel)
            by_owner: dict[str, set[str]] = defaultdict(set)
            for trial, owner in trials.owner.items():
                by_owner[owner].add(trial)
            expected = all(
                by_owner.get(tj) == {f"{tj}-{k:03d}" for k in range(1, args.trials + 1)}
                for tj in names
            ) and set(by_owner) <= set(names)
            first_trial = [
                min(trials.added[t] for t in by_owner[tj]) - created_at[tj]
                for tj in names
                if by_owner.get(tj) and tj in created_at
            ]
            lifetimes = [end - trials.added[t] for t, end in trials.ended.items()]
            created = len(trials.added)
            added_again = sum(trials.added_again.values())
            deleted = sum(trials.deleted.values())
            outcomes = Counter(trials.outcome.values())
            resyncs = trials.resyncs
        log = operator.log_text()
        warnings = sum(" WARNING " in line or "[WARNING" in line for line in log.splitlines())
        errors = sum(
            " ERROR " in line or "[ERROR" in line or "Traceback" in line
            for line in log.splitlines()
        )
        result = Result(
            tuning_jobs=args.tuning_jobs,
            trials=args.trials,
            parallel=args.parallel,
            duration=args.duration,
            wall_seconds=wall,
            completed=states["Completed"],
            states=states,
            created=created,
            expected_names=expected,
            added_again=added_again,
            deleted=deleted,
            outcomes=outcomes,
            gaps=gaps,
            slot_gaps=slot_gaps,
            no_end_before=no_end,
            most_running=most,
            first_trial=first_trial,
            lifetimes=lifetimes,
            resyncs=resyncs,
            baseline_rss_mb=baseline_rss / 2**20,
            peak_rss_mb=hwm / 2**20,
            final_rss_mb=rss / 2**20,
            operator_metrics=found,
            log_warnings=warnings,
            log_errors=errors,
        )
        if args.keep_log or not result.met():
            log_kept = True
            print(f"[bench] operator log kept: {operator.log_path}", file=sys.stderr)
        return result
    finally:
        stop_watch.set()
        operator.stop()
        if not log_kept:
            operator.log_path.unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            core.delete_namespace(namespace)
        # Let garbage collection empty the namespace (trials, their Jobs and pods).
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                core.read_namespace(namespace)
            except client.exceptions.ApiException:
                break
            time.sleep(2)


def report(r: Result) -> None:
    def stats(values: list[float]) -> str:
        if not values:
            return f"{0:>5}  {'-':>6}  {'-':>6}  {'-':>6}  {'-':>6}"
        return (
            f"{len(values):>5}  {percentile(values, 50):>5.2f}s  {percentile(values, 90):>5.2f}s  "
            f"{percentile(values, 99):>5.2f}s  {max(values):>5.2f}s"
        )

    wall = f"{r.wall_seconds:.1f} s" if r.wall_seconds is not None else "not within the timeout"
    expected = r.tuning_jobs * r.trials
    print()
    print(
        f"{r.tuning_jobs} TuningJobs x {r.trials} trials, {r.parallel} at a time, "
        f"trials of {r.duration}"
    )
    print(f"  all TuningJobs Completed      {wall}  (TuningJobs: {dict(r.states)})")
    print(
        f"  trials created               {r.created} of {expected}"
        f"{'' if r.expected_names else '  (NOT the expected names)'}; "
        f"ADDED twice: {r.added_again}; deleted: {r.deleted}; ended: {dict(r.outcomes)}"
    )
    print(f"  most running of one search   {r.most_running} (parallel {r.parallel})")
    print()
    print(f"  {'seconds':<36}  {'n':>5}  {'p50':>6}  {'p90':>6}  {'p99':>6}  {'max':>6}  target")
    print(
        f"  {'gap: end -> next creation':<36}  {stats(r.gaps)}  "
        f"p99 <= {TARGET_P99_GAP_SECONDS:.0f} s"
    )
    print(f"  {'slot gap: k-th end -> creation p+k':<36}  {stats(r.slot_gaps)}  -")
    print(f"  {'TuningJob created -> first trial':<36}  {stats(r.first_trial)}  -")
    print(f"  {'trial: created -> end':<36}  {stats(r.lifetimes)}  -")
    if r.no_end_before:
        print(f"  creations past the first {r.parallel} with no end before: {r.no_end_before}")
    if r.resyncs:
        print(f"  the watch relisted {r.resyncs} times (times noted late)")
    print()
    print(
        f"  operator RSS: baseline {r.baseline_rss_mb:.0f} MB, peak {r.peak_rss_mb:.0f} MB, "
        f"final {r.final_rss_mb:.0f} MB (target peak <= {TARGET_RSS_MB:.0f} MB, "
        f"ratio {r.peak_rss_mb / TARGET_RSS_MB:.2f})"
    )
    m = r.operator_metrics
    if m:
        kinds = sorted(k.split(" ", 1)[1] for k in m if k.startswith("reconciles "))
        for kind in kinds:
            n = m.get(f"reconciles {kind}", 0.0)
            seconds = m.get(f"reconcile seconds {kind}", 0.0)
            print(
                f"  operator reconciles {kind:<12} {n:>7.0f}, mean {seconds / n if n else 0:.3f} s,"
                f" errors {m.get(f'reconcile errors {kind}', 0.0):.0f}"
            )
        api = ", ".join(f"{k[4:]}: {v:.0f}" for k, v in sorted(m.items()) if k.startswith("api "))
        print(f"  operator API requests        {api}")
    print(f"  operator log                 {r.log_warnings} warnings, {r.log_errors} errors")
    print(
        f"\ntargets {'met' if r.met() else 'MISSED'} (all Completed with exactly "
        f"{expected} trials, p99 gap <= {TARGET_P99_GAP_SECONDS:.0f} s, "
        f"peak RSS <= {TARGET_RSS_MB:.0f} MB)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tuning-jobs", type=int, default=20, help="TuningJobs at once")
    parser.add_argument("--trials", type=int, default=50, help="maxNumberOfTrainingJobs")
    parser.add_argument("--parallel", type=int, default=5, help="maxParallelTrainingJobs")
    parser.add_argument("--duration", default="1s", help="how long each trial's pod runs")
    parser.add_argument("--seed", type=int, default=7, help="randomSeed of the first search")
    parser.add_argument("--workers", type=int, default=16, help="operator --workers")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds, in all")
    parser.add_argument("--keep-log", action="store_true", help="keep the operator's log")
    args = parser.parse_args(argv)
    if args.parallel < 1 or args.trials < 1 or args.tuning_jobs < 1:
        parser.error("--tuning-jobs, --trials and --parallel must be at least 1")

    localcluster.register_session()
    try:
        localcluster.up(owner="benchmark")
        kubeconfig = Path(localcluster.KUBECONFIG)
        kubectl = Path(localcluster.binary("kubectl"))
        helm = Path(localcluster.binary("helm"))
        from kubernetes.config import new_client_from_config

        api = new_client_from_config(config_file=str(kubeconfig))
        api.configuration.connection_pool_maxsize = 32
        with installed_chart(kubectl, helm, kubeconfig) as chart:
            print(
                f"[bench] {args.tuning_jobs} TuningJobs x {args.trials} trials "
                f"({args.parallel} at a time, {args.duration} each) ...",
                file=sys.stderr,
                flush=True,
            )
            result = run(args, api=api, chart=chart)
    finally:
        localcluster.release_session()
    report(result)
    return 0 if result.met() else 1


if __name__ == "__main__":
    sys.exit(main())
